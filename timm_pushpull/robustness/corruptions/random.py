"""Random draws of the corruptions: large CPU tensors filled in fixed chunks, in C where it builds.

The C kernel is ``csrc/random.c`` (xoshiro256** and a ziggurat), compiled on first use by
:mod:`timm_pushpull.native`; where no C compiler is found, torch generators fill the chunks on a
thread pool. The two set-ups draw different (equally distributed) numbers for a seed, each the
same on any number of threads.
"""

from __future__ import annotations

import ctypes
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from ... import native

__all__ = ["RANDOM_CHUNK", "contiguous_on_cpu", "fill_random", "random_normal", "random_uniform"]

RANDOM_CHUNK = 1 << 18  # elements per generator when filling large CPU tensors
# ctypes signature of fill_random in csrc/random.c
_RANDOM_SIGNATURE = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_int]
_RANDOM_SIGNATURE += [ctypes.c_double, ctypes.c_double, ctypes.c_int]


def contiguous_on_cpu(*tensors: torch.Tensor) -> bool:
    """Whether the C kernels can read every tensor as one block of CPU memory."""
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


@functools.cache
def _random_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    # keyed by process: a forked child (a DataLoader worker) inherits the pool without its threads
    return ThreadPoolExecutor(workers, thread_name_prefix="timm_pushpull_rng")


def fill_random(
    out: torch.Tensor, distribution: str, g: torch.Generator, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    """Fill ``out`` in place with standard ``"normal"`` or ``"uniform"`` [low, high) draws.

    torch's CPU samplers run on one thread, which bounds the noise corruptions. Large CPU tensors
    are filled in fixed chunks of ``RANDOM_CHUNK`` elements, each from its own generator seeded
    by ``g``, so the draws do not depend on the number of threads: by the C kernel of
    ``csrc/random.c`` (xoshiro256** and a ziggurat, about 2x faster here) where a compiler is
    found, else by torch generators on a thread pool.
    """

    def fill(target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if distribution == "normal":
            return target.normal_(generator=generator)
        return target.uniform_(low, high, generator=generator)

    if out.device.type != "cpu" or out.numel() <= RANDOM_CHUNK:
        return fill(out, g)
    num_chunks = -(-out.numel() // RANDOM_CHUNK)
    seeds = torch.randint(2**62, (num_chunks,), generator=g)
    kernel = native.function("random", "fill_random", _RANDOM_SIGNATURE)
    if kernel is not None and out.dtype == torch.float32 and out.is_contiguous():
        kernel(
            out.data_ptr(), out.numel(), RANDOM_CHUNK, seeds.data_ptr(),
            distribution == "normal", low, high, torch.get_num_threads(),
        )  # fmt: skip
        return out
    generators = [torch.Generator().manual_seed(seed) for seed in seeds.tolist()]
    chunks = out.view(-1).split(RANDOM_CHUNK)
    list(_random_pool(torch.get_num_threads(), os.getpid()).map(fill, chunks, generators))
    return out


def random_normal(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Standard normal draws of ``x``'s shape, dtype and device."""
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    return fill_random(out, "normal", g)


def random_uniform(
    shape: tuple[int, ...], low: float, high: float, x: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Uniform [low, high) draws of ``shape`` on ``x``'s dtype and device."""
    out = torch.empty(shape, device=x.device, dtype=x.dtype)
    return fill_random(out, "uniform", g, low, high)
