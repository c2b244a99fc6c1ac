"""Params, MACs and step times of every push-pull entrypoint next to its baseline.

Section ``models`` of ``timm-pushpull bench`` (and the ``*_pp_b1`` rows of section ``pull``).
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .. import models as _models  # noqa: F401  (registers the models)
from .timing import (
    eval_fn,
    interleaved_medians,
    load_average,
    markdown_table,
    median_range,
    train_fn,
)


def _macs(model: nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def bench_models(rounds: int = 3, pattern: str = "*_pp*", baselines: tuple[str, ...] = ()) -> str:
    """Params, MACs and step times of every push-pull entrypoint next to its baseline.

    Each pair is timed side by side, so a baseline appears once per push-pull variant.
    ``baselines``: only the variants of these baselines (all when empty).
    """
    rows = []
    for name in timm.list_models(pattern):
        if not timm.get_pretrained_cfg(name) or "_pp" not in name:
            continue
        baseline = name.split("_pp")[0]
        if baselines and baseline not in baselines:
            continue
        cfg = timm.get_pretrained_cfg(name).to_dict()
        size = cfg["input_size"]
        batch = 2 if size[-1] >= 224 else 8
        x = torch.randn(batch, *size)
        models = {n: timm.create_model(n) for n in (baseline, name) if n in timm.list_models()}
        stats = {
            n: (sum(p.numel() for p in m.parameters()), _macs(m.eval(), x[:1]))
            for n, m in models.items()
        }
        evals = interleaved_medians({n: eval_fn(m, x) for n, m in models.items()}, rounds, warmup=1)
        trains = interleaved_medians(
            {n: train_fn(m, x) for n, m in models.items()}, rounds, warmup=1
        )
        base = baseline if baseline in models else name
        for n in models:
            params, macs = stats[n]
            rows.append(
                [
                    n, f"{params / 1e6:.3f}", f"{macs / 1e6:.1f}", f"{batch}x{size[-1]}",
                    f"{evals[n] * 1e3:.1f}", f"{evals[n] / evals[base]:.2f}x",
                    f"{trains[n] * 1e3:.1f}", f"{trains[n] / trains[base]:.2f}x",
                ]
            )  # fmt: skip
    header = [
        "model",
        "params (M)",
        "MACs/img (M)",
        "batch",
        "eval ms",
        "eval vs base",
        "train ms",
        "train vs base",
    ]
    return markdown_table("Model zoo: push-pull variants vs baselines", header, rows)


def bench_pair_runs(
    baselines: tuple[str, ...] = ("resnet20", "resnet50"), runs: int = 7, rounds: int = 21
) -> str:
    """Each ``<baseline>_pp_b1`` against its baseline in ``runs`` separate runs of ``rounds``
    interleaved rounds, with the load average at each: the median and range of the ratio, for a
    number that holds on a machine shared with other work, where one short run moves too much
    (BENCHMARKS.md, "Exact pull, run 11")."""
    ratios: dict[tuple[str, str], list[float]] = {}
    rows = []
    for run in range(runs):
        load = load_average()
        row = [str(run + 1), f"{load:.2f}"]
        for baseline in baselines:
            size = timm.get_pretrained_cfg(baseline + "_pp_b1").to_dict()["input_size"]
            x = torch.randn(2 if size[-1] >= 224 else 8, *size)
            models = {n: timm.create_model(n) for n in (baseline, baseline + "_pp_b1")}
            for mode, make in (("eval", eval_fn), ("train", train_fn)):
                fns = {n: make(m, x) for n, m in models.items()}
                times = interleaved_medians(fns, rounds, warmup=1)
                ratio = times[baseline + "_pp_b1"] / times[baseline]
                ratios.setdefault((baseline, mode), []).append(ratio)
                row.append(f"{ratio:.2f}x")
        rows.append(row)
    header = ["run", "load"] + [f"{b}_pp_b1 {m}" for b in baselines for m in ("eval", "train")]
    summary = ["median (range)", ""] + [median_range(v) for v in ratios.values()]
    return markdown_table(
        f"`_pp_b1` vs baseline: {runs} runs of {rounds} interleaved rounds",
        header,
        rows + [summary],
    )


def bench_gpu_models(quick: bool = False, device: torch.device | None = None) -> str:
    """Each ``<baseline>_pp_b1`` against its baseline on a CUDA device (``device``: another one,
    for a smoke run), bfloat16 autocast and channels-last (eval, and a training step with SGD), in
    interleaved rounds; the training step checks that the loss and the gradients are finite."""
    from .layers import cuda_device, device_name

    device = cuda_device(device)
    rounds = 2 if quick else 10
    rows = []
    for baseline, batch in (("resnet20", 128), ("resnet50", 32)):
        size = timm.get_pretrained_cfg(baseline + "_pp_b1").to_dict()["input_size"]
        x = torch.randn(2 if quick else batch, *size, device=device)
        x = x.contiguous(memory_format=torch.channels_last)
        models = {n: timm.create_model(n).to(device, memory_format=torch.channels_last)
                  for n in (baseline, baseline + "_pp_b1")}  # fmt: skip
        calls = {
            "eval": {n: _autocast(eval_fn(m, x), device) for n, m in models.items()},
            "train step": {n: _autocast(_training_step(m, x), device) for n, m in models.items()},
        }
        for mode, fns in calls.items():
            times = interleaved_medians(fns, rounds, warmup=2)
            ratio = times[baseline + "_pp_b1"] / times[baseline]
            rows.append([baseline + "_pp_b1", f"{x.shape[0]}x{size[-1]}", mode,
                         f"{times[baseline] * 1e3:.1f}", f"{ratio:.2f}x"])  # fmt: skip
    return markdown_table(
        f"`_pp_b1` vs baseline on {device_name(device)}, bf16 autocast, channels-last",
        ["model", "batch", "mode", "baseline ms", "_pp_b1 vs baseline"],
        rows,
    )


def _autocast(fn, device: torch.device):
    """``fn`` under bfloat16 autocast, waiting for the device to finish."""

    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def _training_step(model: nn.Module, x: torch.Tensor):
    """One SGD step on ``x`` with random labels; raises where the loss or a gradient is not
    finite."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    labels = torch.randint(0, model.num_classes, (x.shape[0],), device=x.device)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x).float(), labels)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not torch.isfinite(loss) or not all(torch.isfinite(g).all() for g in grads):
            raise RuntimeError(f"non-finite loss or gradient in a training step of {model}")
        optimizer.step()

    return step


def bench_eager_lane(runs: int = 7, rounds: int = 21, quick: bool = False) -> str:
    """Eager calls through the lane of ``exact_path.eager_shared`` against the full way
    (``exact_path.eager_lane(False)``), side by side: one inference call of a 16->16 layer on a
    tiny input, where the Python around the kernel is most of the time, next to ``nn.Conv2d``'s;
    then ``resnet20_pp_b1`` against ``resnet20`` in eval and in training, ``runs`` groups of
    ``rounds`` interleaved rounds each."""
    from ..layers import PushPull2d
    from ..layers.exact_path import eager_lane

    for name, value in (("runs", runs), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")

    def through(fn, lane: bool):
        def run():
            with eager_lane(lane):
                return fn()

        return run

    x = torch.randn(1, 16, 4, 4)
    layer = PushPull2d(16, 16, 3, padding=1)
    calls = {
        "conv": eval_fn(nn.Conv2d(16, 16, 3, padding=1, bias=False), x),
        "lane": through(eval_fn(layer, x), True),
        "full": through(eval_fn(layer, x), False),
    }
    times = interleaved_medians(calls, 5 if quick else 2001, warmup=2 if quick else 200)
    out = markdown_table(
        "One eval call on 1x16x4x4 (us): the lane or the full way, and nn.Conv2d",
        ["layer", "conv", "lane", "full way"],
        [["16->16 3x3, h=2"] + [f"{times[n] * 1e6:.1f}" for n in ("conv", "lane", "full")]],
    )
    x = torch.randn(8, 3, 32, 32)
    models = {n: timm.create_model(n) for n in ("resnet20", "resnet20_pp_b1")}
    runs, rounds = (1, 2) if quick else (runs, rounds)
    for mode, make in (("eval", eval_fn), ("train", train_fn)):
        fns = {
            "base": make(models["resnet20"], x),
            "lane": through(make(models["resnet20_pp_b1"], x), True),
            "full": through(make(models["resnet20_pp_b1"], x), False),
        }
        rows, ratios = [], {"lane": [], "full": [], "lane / full": []}
        for run in range(runs):
            load = load_average()
            times = interleaved_medians(fns, rounds, warmup=1)
            ratios["lane"].append(times["lane"] / times["base"])
            ratios["full"].append(times["full"] / times["base"])
            ratios["lane / full"].append(times["lane"] / times["full"])
            rows.append([str(run + 1), f"{load:.2f}", f"{times['base'] * 1e3:.2f}"]
                        + [f"{v[-1]:.3f}" for v in ratios.values()])  # fmt: skip
        rows.append(["median (range)", "", ""] + [median_range(v) for v in ratios.values()])
        out += "\n" + markdown_table(
            f"`resnet20_pp_b1` vs `resnet20` in {mode} (8x3x32x32): the lane or the full way, "
            f"{runs} runs of {rounds} interleaved rounds",
            ["run", "load", "resnet20 ms", "lane", "full way", "lane / full way"],
            rows,
        )
    return out
