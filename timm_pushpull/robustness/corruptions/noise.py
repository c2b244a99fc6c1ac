"""Noise corruptions, and the noise arithmetic the -P sequences and the noise sweeps share.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019: Gaussian, shot (Poisson), impulse (salt-and-pepper) and speckle noise.
The -P sequences (:mod:`~timm_pushpull.robustness.perturbations`) and the noise sweeps of
:mod:`~timm_pushpull.robustness.evaluate` add their own draws with the same
:func:`gaussian_noise`, :func:`speckle_noise` and :func:`poisson_noise`.

Shot noise of CPU images on the 8-bit grid draws Poisson by table inversion (exact up to float32
resolution) from torch uniforms; elsewhere it is ``torch.poisson``. The two steps are the
``torch.library`` ops ``timm_pushpull::quantise_8bit`` (:func:`quantise_8bit`: the levels and
whether the image is on the grid, as tensors; the choice of sampler stays outside the op) and
``timm_pushpull::poisson_8bit`` (:func:`poisson_8bit`), with fake implementations and vmap
rules, so ``torch.compile``, ``torch.export``, FX and ``torch.vmap`` take one op each. They run the C kernels of
``csrc/shot_noise.c`` where a C compiler is found (:mod:`timm_pushpull.native`), else torch ops,
with the same results. Neither has a derivative (integer levels; draws are a step function of u).
"""

from __future__ import annotations

import ctypes
import functools
import math

import torch

from .params import GRID_TOLERANCE, CorruptionFn
from .random import c_kernel, random_normal, random_uniform, vmap_by_loop

__all__ = [
    "add_gaussian_noise",
    "add_speckle_noise",
    "contrast_poisson_noise",
    "gaussian_noise",
    "poisson_8bit",
    "poisson_noise",
    "quantise_8bit",
    "speckle_noise",
]

# ctypes signatures of quantise_8bit and poisson_8bit in csrc/shot_noise.c
_QUANTISE_SIGNATURE = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_double]
_QUANTISE_SIGNATURE += [ctypes.c_int]
_POISSON_SIGNATURE = [ctypes.c_void_p] * 3 + [ctypes.c_long, ctypes.c_void_p, ctypes.c_int]
_POISSON_SIGNATURE += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_int]
_GUIDE_BUCKETS = 1024
# photon count of a full-scale pixel in the noise sweep: Poisson noise of an 8-bit sensor, as
# scikit-image's random_noise(mode="poisson") gives for 8-bit images
_POISSON_PEAK = 255.0


def gaussian_noise(
    images: torch.Tensor, std: float, noise: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Additive noise ``images + std * noise`` for standard normal draws ``noise``, in one op
    (``out`` may be ``noise``)."""
    return torch.add(images, noise, alpha=std, out=out)


def speckle_noise(
    images: torch.Tensor, std: float, noise: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Multiplicative noise ``images + std * images * noise`` (scikit-image's ``speckle``) for
    standard normal draws ``noise``, in one op (``out`` may be ``noise``)."""
    return torch.addcmul(images, images, noise, value=std, out=out)


def poisson_noise(
    images: torch.Tensor, photons: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shot noise: a Poisson count of mean ``photons * images`` per value, over ``photons``."""
    return torch.poisson(images * photons, generator=generator) / photons


def add_gaussian_noise(images: torch.Tensor, variance: float, noise: torch.Tensor) -> torch.Tensor:
    """``clip(I + sqrt(variance) * n)`` for a standard normal draw ``n`` (reused across levels)."""
    return gaussian_noise(images, math.sqrt(variance), noise).clamp_(0, 1)


def add_speckle_noise(images: torch.Tensor, variance: float, noise: torch.Tensor) -> torch.Tensor:
    """``clip(I + I * sqrt(variance) * n)``: multiplicative noise, as scikit-image's ``speckle``."""
    return speckle_noise(images, math.sqrt(variance), noise).clamp_(0, 1)


def contrast_poisson_noise(
    images: torch.Tensor, contrast: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Contrast change ``I_C = (I - 0.5) * C + 0.5`` (clipped to [0, 1]), then Poisson noise."""
    contrasted = ((images - 0.5) * contrast + 0.5).clamp_(0, 1)
    return poisson_noise(contrasted, _POISSON_PEAK, generator).clamp_(0, 1)


@functools.lru_cache(maxsize=32)
def _poisson_tables(
    photons: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse-CDF tables of Poisson(photons * level / 255) for the 256 8-bit levels.

    Returns the CDF ``[256, K]``; a guide (Chen & Asau's indexed search) ``[256 * B]`` whose entry
    for bucket b of a level is the answer k when the CDF crosses no multiple-of-1/B inside the
    bucket's u range [b / B, (b + 1) / B), else ``-1 - j``; and row j of ``bounds [J, 2]`` is then
    the k range to bisect.
    """
    rate = torch.arange(256, dtype=torch.float64).mul_(photons / 255).unsqueeze(1)
    k = torch.arange(int(photons + 12 * math.sqrt(photons) + 20), dtype=torch.float64)
    log_pmf = k * torch.log(rate) - rate - torch.lgamma(k + 1)
    pmf = torch.where(rate > 0, log_pmf.exp(), (k == 0).double())  # rate 0: all mass at 0
    cdf = pmf.cumsum(1).float()
    cdf[:, -1] = 1.0  # the tail beyond the table (far below float32 resolution) goes last
    quantiles = torch.arange(_GUIDE_BUCKETS + 1, dtype=torch.float32) / _GUIDE_BUCKETS
    edges = torch.searchsorted(cdf, quantiles.expand(256, -1).contiguous()).int()
    first, last = edges[:, :-1].flatten(), edges[:, 1:].flatten()
    wide = (last > first).nonzero().squeeze(1)
    guide = first.clone()
    guide[wide] = -1 - torch.arange(len(wide), dtype=torch.int32)
    bounds = torch.stack([first[wide], last[wide]], 1)
    return cdf.to(device), guide.to(device), bounds.to(device)


@torch.library.custom_op("timm_pushpull::quantise_8bit", mutates_args=())
def quantise_8bit(x: torch.Tensor, tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(levels, on_grid)``: ``round(255 x)`` as uint8 and a 0-d bool tensor, true where every
    value of ``x`` is within ``tolerance`` of a level in 0..255 (``levels`` is then exact, else
    unspecified). By the C kernel of ``csrc/shot_noise.c`` for float32 CPU tensors where a compiler
    is found, else by torch ops, with the same results. Integer outputs: not differentiable."""
    kernel = c_kernel("shot_noise", "quantise_8bit", _QUANTISE_SIGNATURE, x, restype=ctypes.c_int)
    if kernel is not None and x.dtype == torch.float32:
        levels = torch.empty(x.shape, dtype=torch.uint8)
        return levels, torch.tensor(bool(kernel(x, levels, x.numel(), tolerance)))
    if x.numel() == 0:  # aminmax refuses empty tensors
        return x.new_empty(x.shape, dtype=torch.uint8), torch.tensor(True, device=x.device)
    levels = x * 255
    rounded = levels.round()
    low, high = torch.aminmax(levels.sub_(rounded))
    lowest, highest = torch.aminmax(rounded)
    # compared as Python floats (doubles, like the C kernel) and written this way round, so that a
    # NaN is off the grid too
    errors_ok = -float(low) <= tolerance and float(high) <= tolerance
    on_grid = errors_ok and float(lowest) >= 0 and float(highest) <= 255
    levels = rounded.to(torch.uint8) if on_grid else torch.zeros_like(x, dtype=torch.uint8)
    return levels, torch.tensor(on_grid, device=x.device)


@quantise_8bit.register_fake
def _(x, tolerance):
    return x.new_empty(x.shape, dtype=torch.uint8), x.new_empty((), dtype=torch.bool)


quantise_8bit.register_vmap(vmap_by_loop(quantise_8bit))  # on_grid per vmapped element


def _quantise_8bit(x: torch.Tensor) -> torch.Tensor | None:
    """``round(255 x)`` as uint8 if every value of float32 ``x`` is within ``GRID_TOLERANCE`` of
    a level in 0..255, else None."""
    levels, on_grid = quantise_8bit(x, GRID_TOLERANCE)
    return levels if bool(on_grid) else None


@torch.library.custom_op("timm_pushpull::poisson_8bit", mutates_args=())
def poisson_8bit(levels: torch.Tensor, u_scaled: torch.Tensor, photons: float) -> torch.Tensor:
    """Poisson(photons * levels / 255) draws divided by ``photons``, float32, for uint8 ``levels``,
    by inversion, k = min{k : F(k) > u}, from float32 ``u_scaled`` = u * B uniform in [0, B].

    The guide bucket of u settles k for most pixels; the rest (a few per cent, BENCHMARKS.md,
    "Corruptions: batched torch vs per-image NumPy reference") bisect the k range their bucket spans. Exact up to the float32 resolution of u and F. By the C kernel of
    ``csrc/shot_noise.c`` on the CPU where a compiler is found, else by torch ops, with the same
    results. Not differentiable: the draws are a step function of ``u_scaled``.
    """
    if u_scaled.shape != levels.shape:  # the C kernel reads one u per level
        raise ValueError(
            f"poisson_8bit: u_scaled must have the levels' shape {list(levels.shape)}, got "
            f"{list(u_scaled.shape)}"
        )
    cdf, guide, bounds = _poisson_tables(photons, levels.device)
    kernel = c_kernel("shot_noise", "poisson_8bit", _POISSON_SIGNATURE, levels, u_scaled)
    if kernel is not None and levels.dtype == torch.uint8 and u_scaled.dtype == torch.float32:
        out = torch.empty(levels.shape, dtype=torch.float32)
        kernel(
            levels, u_scaled, out, levels.numel(), cdf, cdf.shape[1], guide, bounds,
            _GUIDE_BUCKETS, photons,
        )  # fmt: skip
        return out
    u_scaled = u_scaled.reshape(-1)
    # uniform_(0, B) rounds its largest draws up to B itself: they belong to the last bucket
    buckets = u_scaled.int().clamp_(max=_GUIDE_BUCKETS - 1)
    counts = guide.index_select(0, torch.add(buckets, levels.reshape(-1), alpha=_GUIDE_BUCKETS))
    index = (counts < 0).nonzero().squeeze(1)
    if index.numel():
        lo, hi = bounds[(-1 - counts[index]).long()].long().unbind(1)
        u = u_scaled[index] / _GUIDE_BUCKETS
        row = levels.reshape(-1)[index].long() * cdf.shape[1]
        cdf = cdf.view(-1)
        for step in range(64):  # a bisection halves the widest range each step
            mid = (lo + hi) // 2
            above = cdf[row + mid] > u
            hi = torch.where(above, mid, hi)
            # minimum: ranges already closed stay closed (u = 1 is above every F, even F(hi))
            lo = torch.where(above, lo, torch.minimum(mid + 1, hi))
            if step == 0:  # most ranges hold one crossing and are done now: set them aside
                done = lo == hi
                counts[index[done]] = lo[done].int()
                keep = (~done).nonzero().squeeze(1)
                index, lo, hi, u, row = (t[keep] for t in (index, lo, hi, u, row))
            if not index.numel() or bool((lo == hi).all()):
                break
        counts[index] = lo.int()
    return torch.div(counts, photons).view(levels.shape)


@poisson_8bit.register_fake
def _(levels, u_scaled, photons):
    return levels.new_empty(levels.shape, dtype=torch.float32)


poisson_8bit.register_vmap(vmap_by_loop(poisson_8bit))


def _gaussian_noise(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    noise = random_normal(x, g)
    return gaussian_noise(x, std, noise, out=noise)


def _shot_noise(x: torch.Tensor, photons: float, g: torch.Generator) -> torch.Tensor:
    # torch.poisson is a per-element rejection sampler on the CPU, no faster than NumPy's; images
    # on the 8-bit grid (all decoded data sets) take table inversion instead, in C where a
    # compiler is found (timm_pushpull.native), else in torch ops (BENCHMARKS.md,
    # "Corruptions: batched torch vs per-image NumPy reference")
    if x.device.type == "cpu":
        levels = _quantise_8bit(x)
        if levels is not None:
            return poisson_8bit(levels, random_uniform(x.shape, 0, _GUIDE_BUCKETS, x, g), photons)
    return poisson_noise(x, photons, g)


def _impulse_noise(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    # skimage.util.random_noise(mode="s&p"): each value flips with p=amount, half of the flips to
    # 1 (salt), half to 0; one uniform draw decides both (u < amount/2 is salt).
    u = random_uniform(x.shape, 0, 1, x, g)
    return torch.where(u < amount, (u < amount / 2).to(x.dtype), x)


def _speckle_noise(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    noise = random_normal(x, g)
    return speckle_noise(x, std, noise, out=noise)


CORRUPTION_FNS: dict[str, CorruptionFn] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
}
