"""Params, MACs and step times of every push-pull entrypoint next to its baseline.

Section ``models`` of ``timm-pushpull bench`` (and the ``*_pp_b1`` rows of section ``pull``).
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .. import models as _models  # noqa: F401  (registers the models)
from .timing import eval_fn, interleaved_medians, markdown_table, train_fn


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
