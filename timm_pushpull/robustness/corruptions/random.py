"""Random draws of the corruptions: large CPU tensors filled in fixed chunks, in C where it builds.

Large CPU draws are the ``torch.library`` op ``timm_pushpull::random_fill``
(:func:`random_fill`): standard normals or uniforms from one seed per chunk, by the C kernel of
``csrc/random.c`` (xoshiro256** and a ziggurat), compiled on first use by
:mod:`timm_pushpull.native`, or, where no C compiler is found, by torch generators on a thread
pool. The two set-ups draw different (equally distributed) numbers for a seed, each the same on any
number of threads.

The op takes the chunks' seeds, not a generator, and returns a new tensor: it is a pure function of
its inputs, so ``torch.compile``, ``torch.export`` and FX record it as one node that they may move,
deduplicate or run again without changing a draw (and ``torch.vmap`` over seeds draws per row). (An op filling a given tensor in place would be
wrapped in a copy by their functionalisation, and a generator cannot enter a graph.) It has no
derivative: its only tensor input is the integer seeds.

:func:`c_kernel` and :func:`vmap_by_loop` are the glue all the corruptions' ops share: calling
their C kernels, and their ``torch.vmap`` rule.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from ... import native

__all__ = [
    "RANDOM_CHUNK",
    "c_kernel",
    "contiguous_on_cpu",
    "random_fill",
    "random_normal",
    "random_uniform",
    "vmap_by_loop",
]

RANDOM_CHUNK = 1 << 18  # elements per generator when filling large CPU tensors
# ctypes signature of fill_random in csrc/random.c
_RANDOM_SIGNATURE = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_int]
_RANDOM_SIGNATURE += [ctypes.c_double, ctypes.c_double, ctypes.c_int]


def contiguous_on_cpu(*tensors: torch.Tensor) -> bool:
    """Whether the C kernels can read every tensor as one block of CPU memory."""
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def c_kernel(
    library: str, symbol: str, signature: list, *tensors: torch.Tensor, restype: type | None = None
) -> Callable | None:
    """``symbol`` of ``csrc/<library>.c`` (:func:`timm_pushpull.native.function`) for the ops' CPU
    paths, or None where it does not apply: no C compiler (or the kernels turned off), or one of
    ``tensors`` not one block of CPU memory. It takes tensors (passed as data pointers) and
    numbers, and gets torch's thread count as its last argument."""
    if not contiguous_on_cpu(*tensors):
        return None
    kernel = native.function(library, symbol, signature, restype)
    if kernel is None:
        return None

    def call(*args):
        args = [arg.data_ptr() if isinstance(arg, torch.Tensor) else arg for arg in args]
        return kernel(*args, torch.get_num_threads())

    return call


def vmap_by_loop(op: Callable) -> Callable:
    """A ``register_vmap`` rule that runs ``op`` once per element of the vmapped dimension and
    stacks the results: the corruptions' ops work per call (one set of seeds, one quantisation
    decision, one crop per image), so a vmapped dimension does not in general fold into their
    own batch."""

    def rule(info, in_dims, *args):
        def element(index):
            # in_dims holds an int for each vmapped tensor, None (or Nones) for the rest
            picked = [
                a.select(d, index) if isinstance(d, int) else a for a, d in zip(args, in_dims)
            ]
            return op(*picked)

        outs = [element(index) for index in range(info.batch_size)]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outs)), (0,) * len(outs[0])
        return torch.stack(outs), 0

    return rule


@functools.cache
def _random_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    # keyed by process: a forked child (a DataLoader worker) inherits the pool without its threads
    return ThreadPoolExecutor(workers, thread_name_prefix="timm_pushpull_rng")


def _fill(
    target: torch.Tensor, generator: torch.Generator, normal: bool, low: float, high: float
) -> torch.Tensor:
    if normal:
        return target.normal_(generator=generator)
    return target.uniform_(low, high, generator=generator)


@torch.library.custom_op("timm_pushpull::random_fill", mutates_args=())
def random_fill(
    seeds: torch.Tensor,
    shape: list[int],
    chunk: int,
    normal: bool,
    low: float,
    high: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """A new tensor on ``seeds``' device of standard normal (``normal``) or uniform [low, high)
    draws, filled in chunks of ``chunk`` elements, chunk c from the int64 ``seeds[c]``: by the C
    kernel of ``csrc/random.c`` (faster: BENCHMARKS.md, "Corruptions: batched torch vs per-image NumPy reference") for float32 on the CPU where a
    compiler is found, else by torch generators on a thread pool (other numbers). Random: not differentiable.
    """
    numel = math.prod(shape)
    num_chunks = -(-numel // chunk) if chunk > 0 else None
    # the C kernel reads seeds[c] for every chunk c: never past the end
    if num_chunks is None or seeds.dtype != torch.int64 or tuple(seeds.shape) != (num_chunks,):
        raise ValueError(
            f"random_fill: seeds must be int64 [{num_chunks}], one per chunk of chunk={chunk} "
            f"(> 0) of the {numel} elements; got {seeds.dtype} {list(seeds.shape)}"
        )
    out = seeds.new_empty(shape, dtype=dtype)
    kernel = c_kernel("random", "fill_random", _RANDOM_SIGNATURE, seeds)
    if kernel is not None and dtype == torch.float32:
        kernel(out, numel, chunk, seeds, normal, low, high)
        return out
    generators = [torch.Generator(out.device).manual_seed(seed) for seed in seeds.tolist()]
    chunks = out.view(-1).split(chunk)
    fill = functools.partial(_fill, normal=normal, low=low, high=high)
    list(_random_pool(torch.get_num_threads(), os.getpid()).map(fill, chunks, generators))
    return out


@random_fill.register_fake
def _(seeds, shape, chunk, normal, low, high, dtype):
    return seeds.new_empty(shape, dtype=dtype)


random_fill.register_vmap(vmap_by_loop(random_fill))


def _draws(
    shape: tuple[int, ...],
    normal: bool,
    g: torch.Generator,
    like: torch.Tensor,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Draws of ``shape`` on ``like``'s dtype and device.

    torch's CPU samplers run on one thread, which bounds the noise corruptions. Large CPU tensors
    are filled in fixed chunks of ``RANDOM_CHUNK`` elements, each from its own generator seeded
    by ``g`` (:func:`random_fill`), so the draws do not depend on the number of threads.
    """
    numel = math.prod(shape)
    if like.device.type != "cpu" or numel <= RANDOM_CHUNK:
        out = torch.empty(shape, device=like.device, dtype=like.dtype)
        return _fill(out, g, normal, low, high)
    seeds = torch.randint(2**62, (-(-numel // RANDOM_CHUNK),), generator=g)
    return random_fill(seeds, list(shape), RANDOM_CHUNK, normal, low, high, like.dtype)


def random_normal(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Standard normal draws of ``x``'s shape, dtype and device."""
    return _draws(tuple(x.shape), True, g, x)


def random_uniform(
    shape: tuple[int, ...], low: float, high: float, x: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Uniform [low, high) draws of ``shape`` on ``x``'s dtype and device."""
    return _draws(tuple(shape), False, g, x, low, high)
