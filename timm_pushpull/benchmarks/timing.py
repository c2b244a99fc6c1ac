"""Side-by-side timing shared by every benchmark: interleaved medians and markdown tables.

The variants of a row are timed in interleaved rounds and the median is reported, so load on the
machine hits all of them alike. Ratios are what to compare across machines; absolute times are
for this machine only.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

BENCH_EXTRA_INSTALL = "pip install 'timm-pushpull[bench]'"
# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator() -> bool:
    """Keep the memory of freed tensors in glibc malloc's heap (up to its 32 MiB cap per block)
    instead of mapping it anew and returning it to the system, for the whole process. Without
    this, whether a call's output of a few MiB is page-faulted in on every call depends on the
    allocator's history, and a convolution ran at two speeds in different processes
    (BENCHMARKS.md, run 14): ratios would compare page faults, not kernels. False where the C
    library has no ``mallopt`` (not glibc) or refuses."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def interleaved_medians(
    fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds, each round starting
    one function later: a function timed right after another ran at another speed than the same
    function elsewhere in the round (BENCHMARKS.md, run 17)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_index in range(rounds if names else 0):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def load_average() -> float:
    """The one-minute load average (NaN where the system has none), printed next to repeated
    runs: other work on the machine moves timings."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def median_range(ratios: list[float]) -> str:
    """``"1.36x (1.34-1.39)"``: the median of repeated runs' ratios and their range."""
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def eval_fn(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One inference call of ``module`` on ``x`` (eval mode, no autograd)."""
    module.eval()

    def run():
        with torch.no_grad():
            return module(x)

    return run


def train_fn(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One forward and backward pass of ``module`` on ``x`` (train mode)."""
    module.train()

    def run():
        module.zero_grad(set_to_none=True)
        out = module(x)
        (out[0] if isinstance(out, tuple) else out).float().mean().backward()

    return run


def eval_and_train_rows(
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    rounds: int,
    baseline: str,
    ms_format: str = ".1f",
    ratio_format: str = ".2f",
) -> list[list[str]]:
    """Rows ``[name, mode, ms, time / baseline's]``, eval then train, each mode one interleaved group."""
    rows = []
    for mode, make in (("eval", eval_fn), ("train", train_fn)):
        times = interleaved_medians({n: make(m, x) for n, m in modules.items()}, rounds)
        base = times[baseline]
        rows += [
            [n, mode, f"{t * 1e3:{ms_format}}", f"{t / base:{ratio_format}}x"]
            for n, t in times.items()
        ]
    return rows


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@contextmanager
def bench_extra(section: str) -> Iterator[None]:
    """Imports of the references the ``bench`` extra installs: a missing one says how to get it."""
    try:
        yield
    except ModuleNotFoundError as error:
        missing = error.name.partition(".")[0]  # skimage, not skimage.color
        raise ModuleNotFoundError(
            f"the {section} benchmark needs {missing}, which is not installed: {BENCH_EXTRA_INSTALL}"
        ) from error
