"""Speed benchmarks: ``timm-pushpull bench [--section ...]``.

Every table is measured side by side in one run (:mod:`.timing`): ratios are what to compare
across machines, absolute times are for this machine only. One module per subject: the layers
(:mod:`.layers`), the model zoo (:mod:`.models`), the corruptions against NumPy references
(:mod:`.corruptions`, :mod:`.corruption_references`), training throughput (:mod:`.training`) and
evaluation throughput (:mod:`.evaluate`). Each section imports its module only when it runs, so a
section whose references need the ``bench`` extra fails alone, saying how to install it.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path


def _layers(quick: bool) -> str:
    from .layers import bench_layers

    return bench_layers(5 if quick else 15)


def _pull(quick: bool) -> str:
    from .layers import bench_pull
    from .models import bench_models

    pull = bench_pull(2 if quick else 9, quick)
    return pull + "\n" + bench_models(1 if quick else 3, "resnet*_pp_b1", ("resnet20", "resnet50"))


def _gemm(quick: bool) -> str:
    from .layers import bench_gemm

    return bench_gemm(quick=quick)


def _resnet50(quick: bool) -> str:
    from .layers import bench_resnet50

    return bench_resnet50(2 if quick else 7)


def _blurpool(quick: bool) -> str:
    from .layers import bench_blurpool

    return bench_blurpool(5 if quick else 30)


def _pairs(quick: bool) -> str:
    from .layers import bench_layer_runs
    from .models import bench_pair_runs

    runs, rounds = (1, 2) if quick else (7, 21)
    return (
        bench_layer_runs(runs=runs, rounds=rounds, quick=quick)
        + "\n"
        + bench_pair_runs(runs=runs, rounds=rounds)
    )


def _lane(quick: bool) -> str:
    from .models import bench_eager_lane

    return bench_eager_lane(quick=quick)


def _models(quick: bool) -> str:
    from .models import bench_models

    return bench_models(1 if quick else 3)


def _corruptions(quick: bool) -> str:
    """Batched torch corruptions vs the per-image NumPy references on CIFAR-sized images."""
    from .corruptions import format_table, run

    num_images, repeats = (100, 1) if quick else (1000, 3)
    size, scale, device = 32, "cifar", "cpu"
    rows = run(
        num_images, image_size=size, scale=scale, device=device, repeats=repeats, verbose=False
    )
    return format_table(rows, num_images=num_images, size=size, scale=scale, device=device)


def _training(quick: bool) -> str:
    from .training import format_table, run

    batch_size = 128
    return format_table(run(batch_size=batch_size, steps=3 if quick else 10), batch_size)


def _evaluate(quick: bool) -> str:
    """``evaluate`` images/s on 1 and 2 CPU processes (and 1..N GPUs when there are any)."""
    import torch

    from .evaluate import format_table, run

    cifar_per_severity, imagenet_images = (100, 16) if quick else (1000, 32)
    rows = run((1, 2), cifar_per_severity, imagenet_images, "cpu")
    if torch.cuda.is_available():
        gpus = tuple(range(1, torch.cuda.device_count() + 1))
        rows += run(gpus, cifar_per_severity, imagenet_images, "cuda")
    return format_table(rows)


# section -> markdown tables of that section (``quick``: fewer rounds, smaller inputs)
_SECTIONS: dict[str, Callable[[bool], str]] = {
    "layers": _layers,
    "pull": _pull,
    "gemm": _gemm,
    "resnet50": _resnet50,
    "blurpool": _blurpool,
    "models": _models,
    "pairs": _pairs,
    "lane": _lane,
    "corruptions": _corruptions,
    "training": _training,
    "evaluate": _evaluate,
}
SECTIONS = tuple(_SECTIONS)


def run(sections: tuple[str, ...] = SECTIONS, quick: bool = False) -> str:
    """Run ``sections`` in order, printing each table as it is done; returns all of them."""
    import torch

    unknown = [s for s in sections if s not in _SECTIONS]
    if unknown:
        raise ValueError(f"unknown sections {unknown}; expected some of: {', '.join(SECTIONS)}")
    from .timing import steady_allocator

    torch.manual_seed(0)
    steady = "steady" if steady_allocator() else "the C library's default (not glibc)"
    header = (
        f"Machine: {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, allocator {steady}\n"
    )
    out = [header]
    for section in sections:
        out.append(_SECTIONS[section](quick))
        print(out[-1], flush=True)
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--section",
        action="append",
        choices=SECTIONS,
        help="section to run (repeatable); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument(
        "--output", help="also write the markdown tables to this file (must not exist)"
    )


def main(args: argparse.Namespace) -> int:
    if args.output and Path(args.output).exists():
        raise SystemExit(f"--output {args.output} exists; refusing to overwrite it")
    text = run(tuple(args.section or SECTIONS), quick=args.quick)
    if args.output:
        Path(args.output).write_text(text)
    return 0
