"""This checkout's C kernels against another checkout's, side by side in one process
(``scripts/ab_native.py``).

Timing the two builds in alternating processes compares the machine's minutes as much as the
kernels: on the 2-core VM of BENCHMARKS.md the same code measured 1.29x a conv in one process and
0.9x in the next (run 16). Here both libraries are loaded at once, each timed call runs with one
of them, in interleaved rounds next to the reference (a conv, or the model without push-pull),
with the allocator kept steady as in every benchmark. The other checkout's library is built in a
temporary cache by that checkout's own ``native.py``; the two must export the same signatures.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

from .. import models as _models  # noqa: F401  (registers the models)
from .. import native
from ..layers import PushPull2d
from .timing import (
    eval_fn,
    interleaved_medians,
    load_average,
    markdown_table,
    median_range,
    steady_allocator,
    train_fn,
)

# the libraries whose functions the layers look up on every call, so that a swap reaches them
# (kernel_gemm keeps the GEMM's address from its first call)
SWAPPABLE = ("push_pull_taps", "pull_maps")


def build_other(checkout: str, name: str, cache: str) -> ctypes.CDLL:
    """``csrc/<name>.c`` of ``checkout`` built into ``cache`` by that checkout's ``native.py``
    (standard library only: loaded here under another name, without its package)."""
    path = Path(checkout) / "timm_pushpull" / "native.py"
    if not path.is_file():
        raise SystemExit(f"{checkout}: no timm_pushpull package with C kernels there")
    spec = importlib.util.spec_from_file_location("timm_pushpull_other_native", path)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    if other.prototypes(name) != native.prototypes(name):
        raise SystemExit(
            f"{name}: the two checkouts export different signatures; one process cannot call both"
        )
    previous = os.environ.get(other.ENV_CACHE)
    os.environ[other.ENV_CACHE] = cache
    try:
        library = other.load(name)
    finally:
        if previous is None:
            del os.environ[other.ENV_CACHE]
        else:
            os.environ[other.ENV_CACHE] = previous
    if library is None:
        raise SystemExit(f"{checkout}: building {name} failed (no C compiler, or see the warning)")
    return library


def with_library(name: str, library: ctypes.CDLL, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with ``library`` as the kernels of ``name``."""

    def run():
        with native.library_override(name, library):
            return fn()

    return run


def layer_outputs(module: nn.Module, x: torch.Tensor, name: str, library) -> list[torch.Tensor]:
    """The outputs of every push-pull layer of ``module`` (eval) on ``x`` with ``library``: a
    model's own output can hide them (timm zero-initialises the last norm of each block)."""
    layers = [m for m in module.modules() if isinstance(m, PushPull2d)]
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in layers]
    try:
        with torch.no_grad():
            with_library(name, library, lambda: module.eval()(x))()
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def cases() -> list[tuple[str, nn.Module, nn.Module, torch.Tensor]]:
    """``(what, push-pull module, reference, input)``: issue 25's layers and models."""
    found = []
    for channels, size in ((64, 56), (16, 32)):
        layer = PushPull2d(channels, channels, 3, padding=1)
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        found.append((f"{channels}->{channels} 3x3, h=2", layer, conv,
                      torch.randn(8, channels, size, size)))  # fmt: skip
    for baseline in ("resnet20", "resnet50"):
        size = timm.get_pretrained_cfg(baseline + "_pp_b1").to_dict()["input_size"]
        x = torch.randn(2 if size[-1] >= 224 else 8, *size)
        found.append((f"{baseline}_pp_b1", timm.create_model(baseline + "_pp_b1"),
                      timm.create_model(baseline), x))  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/ab_native.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("checkout", help="the other checkout (its repository root)")
    parser.add_argument("--library", default="push_pull_taps", choices=SWAPPABLE,
                        help="csrc/<library>.c")  # fmt: skip
    parser.add_argument("--groups", type=int, default=3, help="groups of interleaved rounds")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per group")
    parser.add_argument("--only", default="", help="the cases whose name holds this text")
    parser.add_argument("--modes", nargs="+", choices=("eval", "train"), default=["eval", "train"])
    args = parser.parse_args(argv)
    if args.groups < 1 or args.rounds < 1:
        parser.error("--groups and --rounds must be at least 1")
    chosen = [case for case in cases() if args.only in case[0]]
    if not chosen:
        parser.error(f"--only {args.only!r}: no case has it in its name")
    steady_allocator()
    this = native.load(args.library)
    if this is None:
        raise SystemExit(f"no {args.library} library here (C kernels off or no compiler)")
    with tempfile.TemporaryDirectory() as cache:
        other = build_other(os.path.abspath(args.checkout), args.library, cache)
        rows = []
        for what, module, reference, x in chosen:
            difference = max(
                (a - b).abs().max().item()
                for a, b in zip(
                    *(layer_outputs(module, x, args.library, lib) for lib in (other, this))
                )
            )
            for mode, make in (("eval", eval_fn), ("train", train_fn)):
                if mode not in args.modes:
                    continue
                ratios: dict[str, list[float]] = {"other": [], "this": [], "this/other": []}
                for _ in range(args.groups):
                    fns = {"reference": make(reference, x)}
                    fns.update({n: with_library(args.library, lib, make(module, x))
                                for n, lib in (("other", other), ("this", this))})  # fmt: skip
                    times = interleaved_medians(fns, args.rounds)
                    ratios["other"].append(times["other"] / times["reference"])
                    ratios["this"].append(times["this"] / times["reference"])
                    ratios["this/other"].append(times["this"] / times["other"])
                rows.append([what, str(list(x.shape)), mode, f"{load_average():.2f}",
                             *(median_range(v) for v in ratios.values()), f"{difference:.1e}"])  # fmt: skip
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(markdown_table(
        f"{args.library}: this checkout's kernels vs {args.checkout}'s, {args.groups} groups of "
        f"{args.rounds} interleaved rounds (median and range of the groups)",
        ["what", "input", "mode", "load", "other vs reference", "this vs reference",
         "this / other", "largest difference of a push-pull layer's output (eval)"],
        rows,
    ))  # fmt: skip
    return 0
