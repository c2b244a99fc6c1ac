"""Common image corruptions of ImageNet-C / CIFAR-10-C as batched, device-agnostic torch ops.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019 (https://arxiv.org/abs/1903.12261).

``corrupt(images, name, severity, scale, seed)`` applies one of the 15 benchmark corruptions or the
4 extra ones to a batch ``[B, C, H, W]`` of float images in [0, 1], RGB (C=3) or grey (C=1), of any
size, on the images' device. Two parameter sets, copied from the dataset generation scripts in
https://github.com/hendrycks/robustness (``ImageNet-C/create_c/``):

* ``scale="cifar"``: ``make_cifar_c.py`` (CIFAR-10-C, 32x32 images);
* ``scale="imagenet"``: ``make_imagenet_c.py`` (ImageNet-C, 224x224 images).

Lengths in those scripts are pixels and are used as such on any image size (a 64-px image with
``scale="cifar"`` gets the blur radii of a 32-px one); the plasma-fractal map of ``fog`` is at least
the scripts' 32 (CIFAR) or 256 (ImageNet) pixels.

Noise, blurs (gaussian, defocus, motion, zoom, glass), brightness, contrast, saturate, pixelate,
elastic, fog, snow and frost are torch ops on the whole batch. JPEG goes through Pillow per image,
as in the scripts; the water drops of ``spatter`` (severities 1-3) use OpenCV's Canny, distance
transform and histogram equalisation per image on the CPU. On the CPU, three hot spots run in small
C kernels where a C compiler is found (``timm_pushpull.native``, ``csrc/``): large random draws,
the shot-noise Poisson look-up and the frost blend. Eager torch ops cost a pass over memory each
and bound these corruptions on the CPU; the torch forms stay for GPUs and as the fallback.

Why not ``imagecorruptions``: version 1.1.2 fails to import without ``pkg_resources``, and on
current NumPy / scikit-image glass blur and gaussian blur raise (``multichannel``) and fog raises
(``np.float_``); it is also per-image NumPy. ImageMagick's motion blur (Wand, used by the original
scripts) is reimplemented here after its ``MotionBlurImage`` source.

Faithfulness notes:

* Frost blends the scripts' photos frost1-frost5 by default (``frost="photos"``) and generated
  textures only when asked or when no photo can be had; see :mod:`timm_pushpull.robustness.frost`.
* Spatter turns the water layer into 8 bits with the scripts' wrap-around by default
  (``spatter="wrap"``, as in the released data; ``"clip"`` saturates); see :func:`water_spatter`.
* Glass blur reproduces what the scripts actually do on RGB arrays: the tuple "swap" of NumPy
  views copies the neighbour pixel, ``x[h, w] = x[h + dy, w + dx]``, scanning from the bottom-right.
* Outputs are stored like the released data sets by default (``output="released"``: truncated to
  8 bits as CIFAR-10-C, then a quality-85 JPEG as ImageNet-C); ``output="float"`` skips that.
* Shot noise on CPU images on the 8-bit grid draws Poisson by table inversion (exact up to float32
  resolution; torch.poisson elsewhere). The uniforms come from torch; the look-up runs in a small C
  kernel where a C compiler is found (``timm_pushpull.native``), else as torch ops, with the same
  results.
* On grey images, colours (spatter, frost) become their luma; ``saturate`` is the identity and
  ``snow`` uses the image itself as its grey version.

Randomness comes from one ``torch.Generator`` seeded with ``seed`` on the images' device: the same
seed on the same device gives identical outputs. Large CPU draws (over 2^18 values) come in fixed
chunks from generators seeded by it, filled on all threads, so the thread count does not change
them; they come from the C kernel of ``csrc/random.c`` where a C compiler is found and from torch
generators where not, so those two set-ups draw different (equally distributed) noise for a seed.
Draws depend on an image's position in the batch, so pass a different seed per batch (e.g.
``seed + batch_index``) when corrupting a data set.
"""

from __future__ import annotations

import ctypes
import functools
import io
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import native
from .frost import FROST_SOURCES, FrostSource, frost_textures, resolve_frost_source

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SCALES",
    "OUTPUTS",
    "RELEASED_JPEG_QUALITY",
    "SEVERITY_PARAMS",
    "SPATTER_MODES",
    "add_snow",
    "adjust_value",
    "check_images",
    "clipped_zoom",
    "corrupt",
    "filter2d",
    "gaussian_blur2d",
    "liquid_layer",
    "motion_blur2d",
    "pad2d",
    "plasma_fractal",
    "quantise_like_released",
    "snow_layer",
    "water_spatter",
]

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS
SCALES: tuple[str, ...] = ("cifar", "imagenet")
SPATTER_MODES: tuple[str, ...] = ("wrap", "clip")
# "released": stored like the released data sets, see quantise_like_released; "float": as computed
OUTPUTS: tuple[str, ...] = ("released", "float")
# ImageNet-C's images are JPEGs of this quality (make_imagenet_c.py's save(quality=85))
RELEASED_JPEG_QUALITY = 85

# Severity 1..5 parameters, verbatim from hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py
# ("cifar") and make_imagenet_c.py ("imagenet"); the names of the tuple fields are in the functions.
# zoom_blur holds np.arange(start, stop, step) arguments; elastic keeps the scripts' IMSIZE * k
# products (IMSIZE=32, and 244 in the ImageNet script); fog and frost get the scripts' plasma map
# size (32 / 256) and frost resize factor (0.2 / 1) appended.
SEVERITY_PARAMS: dict[str, dict[str, tuple]] = {
    "gaussian_noise": {
        "cifar": (0.04, 0.06, 0.08, 0.09, 0.10),
        "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38),
    },
    "shot_noise": {"cifar": (500, 250, 100, 75, 50), "imagenet": (60, 25, 12, 5, 3)},
    "impulse_noise": {
        "cifar": (0.01, 0.02, 0.03, 0.05, 0.07),
        "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27),
    },
    "defocus_blur": {
        "cifar": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "imagenet": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    },
    "glass_blur": {
        "cifar": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "imagenet": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    },
    "motion_blur": {
        "cifar": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    },
    "zoom_blur": {
        "cifar": (
            (1, 1.06, 0.01),
            (1, 1.11, 0.01),
            (1, 1.16, 0.01),
            (1, 1.21, 0.01),
            (1, 1.26, 0.01),
        ),
        "imagenet": (
            (1, 1.11, 0.01),
            (1, 1.16, 0.01),
            (1, 1.21, 0.02),
            (1, 1.26, 0.02),
            (1, 1.31, 0.03),
        ),
    },
    "snow": {
        "cifar": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "imagenet": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
    },
    "frost": {
        "cifar": (
            (1, 0.2, 0.2),
            (1, 0.3, 0.2),
            (0.9, 0.4, 0.2),
            (0.85, 0.4, 0.2),
            (0.75, 0.45, 0.2),
        ),
        "imagenet": ((1, 0.4, 1), (0.8, 0.6, 1), (0.7, 0.7, 1), (0.65, 0.7, 1), (0.6, 0.75, 1)),
    },
    "fog": {
        "cifar": ((0.2, 3, 32), (0.5, 3, 32), (0.75, 2.5, 32), (1, 2, 32), (1.5, 1.75, 32)),
        "imagenet": ((1.5, 2, 256), (2, 2, 256), (2.5, 1.7, 256), (2.5, 1.5, 256), (3, 1.4, 256)),
    },
    "brightness": {
        "cifar": (0.05, 0.1, 0.15, 0.2, 0.3),
        "imagenet": (0.1, 0.2, 0.3, 0.4, 0.5),
    },
    "contrast": {
        "cifar": (0.75, 0.5, 0.4, 0.3, 0.15),
        "imagenet": (0.4, 0.3, 0.2, 0.1, 0.05),
    },
    "elastic_transform": {
        "cifar": (
            (32 * 0, 32 * 0, 32 * 0.08),
            (32 * 0.05, 32 * 0.2, 32 * 0.07),
            (32 * 0.08, 32 * 0.06, 32 * 0.06),
            (32 * 0.1, 32 * 0.04, 32 * 0.05),
            (32 * 0.1, 32 * 0.03, 32 * 0.03),
        ),
        "imagenet": (
            (244 * 2, 244 * 0.7, 244 * 0.1),
            (244 * 2, 244 * 0.08, 244 * 0.2),
            (244 * 0.05, 244 * 0.01, 244 * 0.02),
            (244 * 0.07, 244 * 0.01, 244 * 0.02),
            (244 * 0.12, 244 * 0.01, 244 * 0.02),
        ),
    },
    "pixelate": {
        "cifar": (0.95, 0.9, 0.85, 0.75, 0.65),
        "imagenet": (0.6, 0.5, 0.4, 0.3, 0.25),
    },
    "jpeg_compression": {"cifar": (80, 65, 58, 50, 40), "imagenet": (25, 18, 15, 10, 7)},
    "speckle_noise": {
        "cifar": (0.06, 0.1, 0.12, 0.16, 0.2),
        "imagenet": (0.15, 0.2, 0.35, 0.45, 0.6),
    },
    "gaussian_blur": {"cifar": (0.4, 0.6, 0.7, 0.8, 1), "imagenet": (1, 2, 3, 4, 6)},
    "spatter": {
        "cifar": (
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        "imagenet": (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
    },
    "saturate": {
        "cifar": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        "imagenet": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    },
}

# ITU-R BT.601 luma, as OpenCV's COLOR_RGB2GRAY used by the snow corruption.
_LUMA = (0.299, 0.587, 0.114)
_WATER_RGB = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise, as added to channels 0, 1, 2
_MUD_RGB = (63 / 255, 42 / 255, 20 / 255)


# --------------------------------------------------------------------------------------------
# Input checks


def check_images(images: torch.Tensor, arg: str = "images") -> None:
    """Raise unless ``images`` is a float ``[B, C, H, W]`` tensor, C in (1, 3), values in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{arg} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{arg} must have shape [B, C, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"{arg} must be a floating-point tensor with values in [0, 1], got dtype "
            f"{images.dtype} (convert uint8 images with images.float() / 255)"
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{arg} must have 1 (grey) or 3 (RGB) channels, got {images.shape[1]}")
    if images.numel() == 0:
        return
    low, high = torch.aminmax(images)
    low, high = float(low), float(high)
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise ValueError(f"{arg} must have values in [0, 1], got min {low:.4g} and max {high:.4g}")


def _check_choice(value: str, arg: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {arg} {value!r}; expected one of: {', '.join(allowed)}")


def _check_severity(severity: int) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be in 1..5, got {severity}")


# --------------------------------------------------------------------------------------------
# Filtering building blocks (also used by the perturbation sequences)


def _border_index(n: int, pad_before: int, pad_after: int, mode: str) -> torch.Tensor:
    i = torch.arange(-pad_before, n + pad_after)
    if mode == "replicate":  # OpenCV BORDER_REPLICATE, scipy 'nearest'
        return i.clamp(0, n - 1)
    if mode == "reflect101":  # OpenCV BORDER_REFLECT_101 (its default), torch 'reflect'
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    if mode == "symmetric":  # scipy/skimage 'reflect', NumPy 'symmetric'
        period = 2 * n
        i = i.remainder(period)
        return torch.where(i >= n, period - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}; expected replicate, reflect101 or symmetric")


def pad2d(x: torch.Tensor, pad: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """Pad the last two dims by ``(top, bottom, left, right)``, any width (``F.pad``'s reflect
    needs pads smaller than the input). ``mode``: ``"replicate"``, ``"reflect101"``,
    ``"symmetric"`` or ``"constant"`` (zeros)."""
    top, bottom, left, right = pad
    height, width = x.shape[-2:]
    if mode in ("constant", "replicate"):
        return F.pad(x, (left, right, top, bottom), mode=mode)
    if mode == "reflect101" and max(top, bottom) < height and max(left, right) < width:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    if top or bottom:
        x = x.index_select(-2, _border_index(height, top, bottom, mode).to(x.device))
    if left or right:
        x = x.index_select(-1, _border_index(width, left, right, mode).to(x.device))
    return x


def filter2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    border: str = "reflect101",
    anchor: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Correlate every channel of ``x [B, C, H, W]`` with ``kernel`` (``[kh, kw]`` shared or
    ``[B, kh, kw]`` per image), like ``cv2.filter2D``:
    ``out[y, x] = sum k[u, v] in[y + u - ay, x + v - ax]``, anchor ``(ay, ax)`` by default the
    kernel centre."""
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape[-2:]
    ay, ax = anchor if anchor is not None else (kh // 2, kw // 2)
    padded = pad2d(x, (ay, kh - 1 - ay, ax, kw - 1 - ax), border)
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    if kernel.ndim == 2:
        kernel = kernel.expand(batch, kh, kw)
    # One depthwise convolution over B*C maps: much faster on CPU than a [B*C, 1, H, W] batch.
    weight = kernel.repeat_interleave(channels, dim=0).unsqueeze(1)
    out = F.conv2d(
        padded.reshape(1, batch * channels, *padded.shape[-2:]), weight, groups=batch * channels
    )
    return out.view(batch, channels, height, width)


def _gaussian_kernel1d(sigma: float, truncate: float) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage.gaussian_filter's kernel radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur2d(
    x: torch.Tensor, sigma: float, truncate: float = 4.0, border: str = "replicate"
) -> torch.Tensor:
    """Separable Gaussian blur matching ``scipy.ndimage.gaussian_filter`` (and so
    ``skimage.filters.gaussian``, whose default border is ``mode='nearest'`` = replicate)."""
    if sigma <= 1e-15:  # scipy leaves axes with sigma ~ 0 untouched
        return x
    kernel = _gaussian_kernel1d(sigma, truncate)
    x = filter2d(x, kernel.view(1, -1), border)
    return filter2d(x, kernel.view(-1, 1), border)


# Images blurred together share one kernel box: grouping them by angle keeps the box thin.
_MOTION_ANGLE_BUCKET = 5.0  # degrees


def motion_blur2d(
    x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor
) -> torch.Tensor:
    """ImageMagick's ``MotionBlurImage`` (used through Wand by Hendrycks' scripts).

    A one-sided Gaussian of ``2 * ceil(radius) + 1`` taps along ``angles`` (degrees; ``[B]`` one
    per image or ``[1]`` for all): ``out(p) = sum_i k_i in(p + round(i * (cos a, sin a)))`` with
    edge pixels replicated.
    """
    width = 2 * math.ceil(radius) + 1
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2.0 * max(sigma, 1e-12) ** 2))
    weights = weights / weights.sum()
    angles = angles.detach().to("cpu", torch.float64)
    # ImageMagick's tap offsets, in its double arithmetic (libm's sin and cos, as Python's math):
    # offset = ceil(i * width * (cos, sin) / hypot(...) - 0.5); exact halves (angles such as
    # -150 degrees) fall on the side this rounding puts them
    directions = []
    for angle in angles.tolist():
        radians = math.pi * angle / 180.0
        point_x, point_y = width * math.sin(radians), width * math.cos(radians)
        directions.append((point_y, point_x, math.hypot(point_x, point_y)))
    point_y, point_x, norm = torch.tensor(directions, dtype=torch.float64).unbind(1)
    off_x = torch.ceil(taps * point_y.view(-1, 1) / norm.view(-1, 1) - 0.5).long()
    off_y = torch.ceil(taps * point_x.view(-1, 1) / norm.view(-1, 1) - 0.5).long()
    if len(angles) == 1:
        return _blur_along_offsets(x, weights, off_x, off_y)
    buckets = torch.floor(angles / _MOTION_ANGLE_BUCKET)
    out = torch.empty_like(x)
    for bucket in buckets.unique():
        group = (buckets == bucket).nonzero().flatten()
        index = group.to(x.device)
        out[index] = _blur_along_offsets(x[index], weights, off_x[group], off_y[group])
    return out


def _blur_along_offsets(
    x: torch.Tensor, weights: torch.Tensor, off_x: torch.Tensor, off_y: torch.Tensor
) -> torch.Tensor:
    """Sum of ``weights[i] * in(p + (off_x[:, i], off_y[:, i]))`` as one kernel per row of
    offsets (or one shared kernel), replicating the edges."""
    y0, y1 = min(int(off_y.min()), 0), max(int(off_y.max()), 0)
    x0, x1 = min(int(off_x.min()), 0), max(int(off_x.max()), 0)
    kernels = torch.zeros(len(off_x), y1 - y0 + 1, x1 - x0 + 1, dtype=torch.float64)
    rows = torch.arange(len(off_x)).view(-1, 1).expand_as(off_x)
    kernels.index_put_((rows, off_y - y0, off_x - x0), weights.expand_as(off_x), accumulate=True)
    kernels = kernels.float()
    return filter2d(x, kernels[0] if len(kernels) == 1 else kernels, "replicate", (-y0, -x0))


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` >= 1, keeping the size (the scripts' ``clipped_zoom``:
    ``scipy.ndimage.zoom(order=1)`` of the centre crop, i.e. bilinear with aligned corners)."""
    height, width = x.shape[-2:]
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    out_h, out_w = round(crop_h * factor), round(crop_w * factor)  # scipy's output shape
    crop = x[..., top : top + crop_h, left : left + crop_w]
    zoomed = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    trim_h, trim_w = (out_h - height) // 2, (out_w - width) // 2
    return zoomed[..., trim_h : trim_h + height, trim_w : trim_w + width]


def adjust_value(x: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """Add ``delta`` to the HSV value (clipped to [0, 1]) keeping hue and saturation; equals
    ``hsv2rgb`` of ``rgb2hsv`` with V shifted, since RGB scales with V at fixed H, S."""
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + delta).clamp(0.0, 1.0)
    scaled = x * (new_value / value.clamp_min(1e-12))
    return torch.where(value > 0, scaled, new_value.expand_as(x))


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _colour(rgb: tuple[float, float, float], channels: int, like: torch.Tensor) -> torch.Tensor:
    values = rgb if channels == 3 else (sum(w * c for w, c in zip(_LUMA, rgb, strict=True)),)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def plasma_fractal(
    batch: int, mapsize: int, decay: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Diamond-square height maps ``[B, mapsize, mapsize]`` in [0, 1] (the scripts' version of
    https://github.com/FLHerne/mapgen/blob/master/diamondsquare.py), batched."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    maps = torch.zeros(batch, mapsize, mapsize, device=device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=total.dtype, device=device)
        return total / 4 + wibble * (2 * noise - 1) * wibble

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        left = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        maps[:, 0::step, half::step] = wibbled_mean(left)
        top = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        maps[:, half::step, 0::step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    flat = maps.view(batch, -1)
    flat = flat - flat.amin(1, keepdim=True)
    return (flat / flat.amax(1, keepdim=True)).view_as(maps)


def snow_layer(
    x: torch.Tensor,
    loc: float,
    scale: float,
    zoom: float,
    threshold: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The scripts' snow flakes before motion blur: thresholded, zoomed noise, ``[B, 1, H, W]``,
    quantised to 8 bits like the PNG they go through."""
    batch, _, height, width = x.shape
    layer = loc + scale * torch.randn(
        batch, 1, height, width, generator=generator, device=x.device, dtype=x.dtype
    )
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    return torch.floor(layer.clamp(0, 1) * 255) / 255


def add_snow(x: torch.Tensor, flakes: torch.Tensor, mix: float) -> torch.Tensor:
    """Whiten the image towards ``1.5 * grey + 0.5`` by ``1 - mix`` and add the (motion-blurred)
    flakes and their 180-degree rotation."""
    # ImageMagick writes the blurred flakes as an 8-bit PNG, truncating (the tolerance absorbs
    # float error on exact levels)
    flakes = torch.floor(flakes * 255 + _GRID_TOLERANCE) / 255
    whitened = torch.maximum(x, _luma(x) * 1.5 + 0.5)
    x = mix * x + (1 - mix) * whitened
    return (x + flakes + flakes.flip(-2, -1)).clamp(0, 1)


def liquid_layer(
    x: torch.Tensor,
    loc: float,
    scale: float,
    sigma: float,
    threshold: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Blurred Gaussian noise with values below ``threshold`` set to 0, ``[B, 1, H, W]``."""
    batch, _, height, width = x.shape
    layer = loc + scale * torch.randn(
        batch, 1, height, width, generator=generator, device=x.device, dtype=x.dtype
    )
    layer = gaussian_blur2d(layer, sigma)
    return torch.where(layer < threshold, torch.zeros_like(layer), layer)


_SPATTER_EDGE_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)


def _water_mask(liquid: np.ndarray, overflow: str) -> np.ndarray:
    # The scripts' (liquid * 255).astype(np.uint8) wraps values above 1 (the layer is >= 0).
    levels = np.floor(liquid * 255)
    levels = np.mod(levels, 256) if overflow == "wrap" else np.clip(levels, 0, 255)
    liquid = levels.astype(np.uint8)
    dist = 255 - cv2.Canny(liquid, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, _SPATTER_EDGE_KERNEL)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    mask = liquid * dist
    peak = mask.max()
    return mask / peak if peak > 0 else mask  # the scripts divide by 0 (NaN) on dry images


def water_spatter(
    x: torch.Tensor, liquid: torch.Tensor, strength: float, overflow: str = "wrap"
) -> torch.Tensor:
    """Add pale-turquoise water drops whose shading comes from the liquid layer's edges (OpenCV,
    per image on the CPU).

    The scripts turn the liquid layer into 8 bits with ``astype(np.uint8)``, which wraps values
    above 1 around (1.1 becomes 0.1): ``overflow="wrap"`` does the same, as in the released
    CIFAR-10-C (severity 3 has such values) and CIFAR-10-P; ``"clip"`` saturates them at 1
    instead, the evident intent.
    """
    _check_choice(overflow, "spatter overflow", SPATTER_MODES)
    liquid_np = liquid[:, 0].detach().double().cpu().numpy()
    masks = np.stack([_water_mask(layer, overflow) for layer in liquid_np])
    mask = torch.from_numpy(masks).to(device=x.device, dtype=x.dtype).unsqueeze(1)
    return (x + strength * mask * _colour(_WATER_RGB, x.shape[1], x)).clamp(0, 1)


# --------------------------------------------------------------------------------------------
# The corruptions: f(x [B, C, H, W] float32, params of one severity, generator) -> images


_RANDOM_CHUNK = 1 << 18  # elements per generator when filling large CPU tensors
# ctypes signatures of the C kernels in csrc/
_POINTER, _LONG, _INT, _FLOAT, _DOUBLE = (
    ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float, ctypes.c_double,
)  # fmt: skip
_RANDOM_SIGNATURE = [_POINTER, _LONG, _LONG, _POINTER, _INT, _DOUBLE, _DOUBLE, _INT]
_QUANTISE_SIGNATURE = [_POINTER, _POINTER, _LONG, _DOUBLE, _INT]
_POISSON_SIGNATURE = [_POINTER] * 3 + [_LONG, _POINTER, _INT, _POINTER, _POINTER]
_POISSON_SIGNATURE += [_INT, _FLOAT, _INT]
_FROST_SIGNATURE = [_POINTER] * 4 + [_LONG, _INT, _INT, _LONG, _FLOAT, _FLOAT, _INT]


@functools.cache
def _random_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    # keyed by process: a forked child (a DataLoader worker) inherits the pool without its threads
    return ThreadPoolExecutor(workers, thread_name_prefix="timm_pushpull_rng")


def _fill_random(
    out: torch.Tensor, distribution: str, g: torch.Generator, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    """Fill ``out`` in place with standard ``"normal"`` or ``"uniform"`` [low, high) draws.

    torch's CPU samplers run on one thread, which bounds the noise corruptions. Large CPU tensors
    are filled in fixed chunks of ``_RANDOM_CHUNK`` elements, each from its own generator seeded
    by ``g``, so the draws do not depend on the number of threads: by the C kernel of
    ``csrc/random.c`` (xoshiro256** and a ziggurat, about 2x faster here) where a compiler is
    found, else by torch generators on a thread pool.
    """

    def fill(target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if distribution == "normal":
            return target.normal_(generator=generator)
        return target.uniform_(low, high, generator=generator)

    if out.device.type != "cpu" or out.numel() <= _RANDOM_CHUNK:
        return fill(out, g)
    num_chunks = -(-out.numel() // _RANDOM_CHUNK)
    seeds = torch.randint(2**62, (num_chunks,), generator=g)
    kernel = native.function("random", "fill_random", _RANDOM_SIGNATURE)
    if kernel is not None and out.dtype == torch.float32 and out.is_contiguous():
        kernel(
            out.data_ptr(), out.numel(), _RANDOM_CHUNK, seeds.data_ptr(),
            distribution == "normal", low, high, torch.get_num_threads(),
        )  # fmt: skip
        return out
    generators = [torch.Generator().manual_seed(seed) for seed in seeds.tolist()]
    chunks = out.view(-1).split(_RANDOM_CHUNK)
    list(_random_pool(torch.get_num_threads(), os.getpid()).map(fill, chunks, generators))
    return out


def _randn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    return _fill_random(out, "normal", g)


def _uniform(
    shape: tuple[int, ...], low: float, high: float, x: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    out = torch.empty(shape, device=x.device, dtype=x.dtype)
    return _fill_random(out, "uniform", g, low, high)


def _gaussian_noise(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    noise = _randn(x, g)
    return torch.add(x, noise, alpha=std, out=noise)


# Images decoded from 8 bits are within this distance (in levels) of k / 255.
_GRID_TOLERANCE = 1e-3
_GUIDE_BUCKETS = 1024


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


def _contiguous_on_cpu(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def _quantise_8bit(x: torch.Tensor) -> torch.Tensor | None:
    """``round(255 x)`` as uint8 if every value of float32 ``x`` is within ``_GRID_TOLERANCE`` of
    a level in 0..255, else None."""
    kernel = native.function("shot_noise", "quantise_8bit", _QUANTISE_SIGNATURE, _INT)
    if kernel is not None and _contiguous_on_cpu(x) and x.dtype == torch.float32:
        levels = torch.empty(x.shape, dtype=torch.uint8)
        on_grid = kernel(
            x.data_ptr(), levels.data_ptr(), x.numel(), _GRID_TOLERANCE, torch.get_num_threads()
        )
        return levels if on_grid else None
    levels = x * 255
    rounded = levels.round()
    low, high = torch.aminmax(levels.sub_(rounded))
    lowest, highest = torch.aminmax(rounded)
    # compared as Python floats (doubles, like the C kernel) and written this way round, so that a
    # NaN is off the grid too
    errors_ok = -float(low) <= _GRID_TOLERANCE and float(high) <= _GRID_TOLERANCE
    if errors_ok and float(lowest) >= 0 and float(highest) <= 255:
        return rounded.to(torch.uint8)
    return None


def _poisson_8bit(levels: torch.Tensor, u_scaled: torch.Tensor, photons: float) -> torch.Tensor:
    """Poisson(photons * levels / 255) draws divided by ``photons``, float32, for uint8 ``levels``,
    by inversion, k = min{k : F(k) > u}, from float32 ``u_scaled`` = u * B uniform in [0, B).

    The guide bucket of u settles k for most pixels; the rest (1-8 %) bisect the k range their
    bucket spans. Exact up to the float32 resolution of u and F.
    """
    cdf, guide, bounds = _poisson_tables(photons, levels.device)
    kernel = native.function("shot_noise", "poisson_8bit", _POISSON_SIGNATURE)
    if kernel is not None and _contiguous_on_cpu(levels, u_scaled):
        out = torch.empty(levels.shape)
        kernel(
            levels.data_ptr(), u_scaled.data_ptr(), out.data_ptr(), levels.numel(),
            cdf.data_ptr(), cdf.shape[1], guide.data_ptr(), bounds.data_ptr(), _GUIDE_BUCKETS,
            photons, torch.get_num_threads(),
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


def _shot_noise(x: torch.Tensor, photons: float, g: torch.Generator) -> torch.Tensor:
    # torch.poisson is a per-element rejection sampler on the CPU, no faster than NumPy's; images
    # on the 8-bit grid (all decoded data sets) take table inversion instead, in C where a
    # compiler is found (timm_pushpull.native), else in torch ops (BENCHMARKS.md)
    if x.device.type == "cpu":
        levels = _quantise_8bit(x)
        if levels is not None:
            return _poisson_8bit(levels, _uniform(x.shape, 0, _GUIDE_BUCKETS, x, g), photons)
    return torch.poisson(x * photons, generator=g) / photons


def _impulse_noise(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    # skimage.util.random_noise(mode="s&p"): each value flips with p=amount, half of the flips to
    # 1 (salt), half to 0; one uniform draw decides both (u < amount/2 is salt).
    u = _uniform(x.shape, 0, 1, x, g)
    return torch.where(u < amount, (u < amount / 2).to(x.dtype), x)


def _speckle_noise(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    noise = _randn(x, g)
    return torch.addcmul(x, x, noise, value=std, out=noise)


def _gaussian_blur(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return gaussian_blur2d(x, sigma)


def _glass_blur(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    sigma, delta, iterations = params
    x = torch.floor(gaussian_blur2d(x, sigma) * 255) / 255  # np.uint8(... * 255)
    batch, channels, height, width = x.shape
    rows = torch.arange(height - delta, delta, -1, device=x.device)
    cols = torch.arange(width - delta, delta, -1, device=x.device)
    num_pixels = height * width
    identity = torch.arange(num_pixels, device=x.device).expand(batch, num_pixels)
    source = identity  # out[p] = x[source[p]]
    if len(rows) and len(cols):
        rows, cols = (t.reshape(-1) for t in torch.meshgrid(rows, cols, indexing="ij"))
        positions = rows * width + cols  # the scan order of the scripts: raster index descending
        for _ in range(iterations):
            # (dy, dx) uniform in [-delta, delta)^2 from one draw per pixel
            draw = torch.randint(
                (2 * delta) ** 2, (batch, len(positions)), generator=g, device=x.device
            )
            src_rows = rows + draw // (2 * delta) - delta
            src_cols = cols + draw % (2 * delta) - delta
            src = src_rows * width + src_cols
            # A source already visited in this sweep (scanned earlier = larger raster index
            # inside the region) holds its new value: follow those links to the end.
            visited = (
                (src > positions)
                & (src_rows > delta)
                & (src_rows <= height - delta)
                & (src_cols > delta)
                & (src_cols <= width - delta)
            )
            link = identity.clone()
            link[:, positions] = torch.where(visited, src, positions)
            read = identity.clone()
            read[:, positions] = src
            for _ in range(max(num_pixels.bit_length(), 1)):  # pointer jumping
                jumped = link.gather(1, link)
                if torch.equal(jumped, link):
                    break
                link = jumped
            source = source.gather(1, read.gather(1, link))
    flat = x.reshape(batch, channels, num_pixels)
    x = flat.gather(2, source.unsqueeze(1).expand(-1, channels, -1)).view_as(x)
    return gaussian_blur2d(x, sigma)


@functools.lru_cache(maxsize=32)
def _disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    # The scripts' disk(): an aliased disk smoothed with OpenCV; zero borders cropped (exact).
    if radius <= 8:
        coords, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        coords, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    kernel = cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)
    used_rows = np.flatnonzero(kernel.any(1))
    used_cols = np.flatnonzero(kernel.any(0))
    half = max(len(coords) // 2 - used_rows[0], len(coords) // 2 - used_cols[0])
    centre = len(coords) // 2
    return torch.from_numpy(
        kernel[centre - half : centre + half + 1, centre - half : centre + half + 1].copy()
    )


def _defocus_blur(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    radius, alias_blur = params
    return filter2d(x, _disk_kernel(radius, alias_blur), border="reflect101")


def _motion_blur(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    radius, sigma = params
    angles = _uniform((x.shape[0],), -45, 45, x, g)
    return motion_blur2d(x, radius, sigma, angles)


def _zoom_blur(x: torch.Tensor, arange: tuple, g: torch.Generator) -> torch.Tensor:
    factors = np.arange(*arange)  # np.arange exactly as the scripts (float end points included)
    out = x.clone()
    for factor in factors:
        out += clipped_zoom(x, float(factor))
    return out / (len(factors) + 1)


def _snow(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    loc, scale, zoom, threshold, radius, sigma, mix = params
    flakes = snow_layer(x, loc, scale, zoom, threshold, g)
    angles = _uniform((x.shape[0],), -135, -45, x, g)
    return add_snow(x, motion_blur2d(flakes, radius, sigma, angles), mix)


@functools.lru_cache(maxsize=8)
def _frost_stack(
    min_size: int, zoom: float, source: FrostSource
) -> tuple[torch.Tensor, torch.Tensor]:
    textures = frost_textures(min_size, zoom, source)
    shapes = torch.tensor([texture.shape[:2] for texture in textures])
    stack = torch.zeros(len(textures), *shapes.amax(0).tolist(), 3)
    for index, texture in enumerate(textures):
        stack[index, : texture.shape[0], : texture.shape[1]] = torch.from_numpy(texture)
    return stack, shapes


def _frost(
    x: torch.Tensor, params: tuple, g: torch.Generator, source: str = "photos"
) -> torch.Tensor:
    image_weight, frost_weight, zoom = params
    batch, channels, height, width = x.shape
    stack, shapes = _frost_stack(max(height, width), zoom, resolve_frost_source(source))
    stack, shapes = stack.to(x.device, x.dtype), shapes.to(x.device)
    choice = torch.randint(len(stack), (batch,), generator=g, device=x.device)
    # like np.random.randint(0, side - size): a start strictly below the free room
    room = (shapes[choice] - torch.tensor([height, width], device=x.device)).clamp_min(1)
    start = (torch.rand(batch, 2, generator=g, device=x.device) * room).long()
    _, stack_h, stack_w, _ = stack.shape
    kernel = native.function("frost", "frost_blend", _FROST_SIGNATURE)
    if kernel is not None and channels == 3 and _contiguous_on_cpu(x) and x.dtype == torch.float32:
        # crop corners as rows of the [N * H_max * W_max, 3] texture table
        origin = (choice * stack_h + start[:, 0]) * stack_w + start[:, 1]
        out = torch.empty_like(x)
        kernel(
            x.data_ptr(), stack.data_ptr(), origin.data_ptr(), out.data_ptr(), batch, height,
            width, stack_w, frost_weight / image_weight, image_weight, torch.get_num_threads(),
        )  # fmt: skip
        return out
    rows = start[:, :1] + torch.arange(height, device=x.device)
    cols = start[:, 1:] + torch.arange(width, device=x.device)
    # crops as rows of a [N * H_max * W_max, 3] table: index_select beats 3-index gathering
    pixel = (choice.view(-1, 1, 1) * stack_h + rows.unsqueeze(2)) * stack_w + cols.unsqueeze(1)
    frost = stack.view(-1, 3).index_select(0, pixel.flatten())
    frost = frost.view(batch, height, width, 3).permute(0, 3, 1, 2)
    if channels == 1:
        frost = _luma(frost)
    out = torch.add(x, frost, alpha=frost_weight / image_weight)  # one pass over the crops
    return out if image_weight == 1 else out.mul_(image_weight)


def _fog(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    strength, decay, base_mapsize = params
    batch, _, height, width = x.shape
    mapsize = max(base_mapsize, 1 << (max(height, width) - 1).bit_length())
    fog = plasma_fractal(batch, mapsize, decay, g, x.device)[:, None, :height, :width]
    max_value = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * fog.to(x.dtype)) * max_value / (max_value + strength)


def _brightness(x: torch.Tensor, delta: float, g: torch.Generator) -> torch.Tensor:
    return adjust_value(x, delta)


def _contrast(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return torch.lerp(means, x, factor)  # (x - means) * factor + means


def _saturate(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    # skimage rgb2hsv -> S' = clip(S * a + b) -> hsv2rgb, solved in closed form: with H and V
    # fixed every channel is V * (1 - S * k_c), so x'_c = V - S'/S * (V - x_c).
    if x.shape[1] == 1:
        return x  # no hue or saturation in a grey image
    factor, offset = params
    value, minimum = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    spread = value - minimum
    saturation = torch.where(spread > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    new_saturation = (saturation * factor + offset).clamp(0, 1)
    coloured = value - new_saturation * value * (value - x) / spread.clamp_min(1e-12)
    # skimage gives grey pixels hue 0 (red): R = V, G = B = V * (1 - S')
    grey = value * torch.cat([torch.ones_like(value), 1 - new_saturation, 1 - new_saturation], 1)
    return torch.where(spread > 0, coloured, grey)


def _elastic_transform(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    alpha, sigma, affine_jitter = params
    batch, _, height, width = x.shape
    # Random affine: jitter three points around the centre (cv2.getAffineTransform/warpAffine
    # with BORDER_REFLECT_101, which grid_sample's reflection with aligned corners matches).
    cx, cy, size = width // 2, height // 2, min(height, width) // 3
    src_pts = torch.tensor(
        [[cx + size, cy + size], [cx + size, cy - size], [cx - size, cy - size]],
        dtype=torch.float64,
        device=x.device,
    )
    dst_pts = src_pts + _uniform((batch, 3, 2), -affine_jitter, affine_jitter, x, g).double()
    ones = torch.ones(batch, 3, 1, dtype=torch.float64, device=x.device)
    # inverse map dst -> src: [x_dst, y_dst, 1] @ inverse = [x_src, y_src]
    inverse = torch.linalg.solve(torch.cat([dst_pts, ones], 2), src_pts.expand(batch, 3, 2))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=x.device),
        torch.arange(width, dtype=torch.float64, device=x.device),
        indexing="ij",
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, -1, 3)
    src = (pixels @ inverse).view(batch, height, width, 2)
    scale = torch.tensor([max(width - 1, 1), max(height - 1, 1)], device=x.device)
    grid = (2 * src / scale - 1).to(x.dtype)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)

    # Smooth random displacement (scipy map_coordinates order=1, mode='reflect' = grid_sample
    # reflection without aligned corners).
    noise = _uniform((batch, 2, height, width), -1, 1, x, g)
    shift = gaussian_blur2d(noise, sigma, truncate=3.0, border="symmetric") * alpha
    coords = torch.stack([xs, ys], -1).to(x.dtype) + shift.permute(0, 2, 3, 1)
    size_xy = torch.tensor([width, height], dtype=x.dtype, device=x.device)
    grid = (2 * coords + 1) / size_xy - 1
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# Pillow resamples 8-bit images in fixed point with this many fraction bits (32 - 8 - 2).
_PIL_PRECISION_BITS = 22


@functools.lru_cache(maxsize=64)
def _pil_box_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's 8-bit ``Image.resize(..., BOX)`` along one axis as an ``[out, in]`` float64
    matrix of its fixed-point weights (``precompute_coeffs``, ``normalize_coeffs_8bpc``): the
    mean of the input pixels whose centre falls in the output pixel's box, times
    ``2**_PIL_PRECISION_BITS``, rounded."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    matrix = np.zeros((out_size, in_size))
    for out in range(out_size):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        stop = min(int(centre + support + 0.5), in_size)
        pos = (np.arange(first, stop) - centre + 0.5) / filter_scale
        matrix[out, first:stop] = (pos > -0.5) & (pos <= 0.5)
        matrix[out] /= matrix[out].sum()
    return torch.from_numpy(np.floor(matrix * 2**_PIL_PRECISION_BITS + 0.5))


def _pixelate(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    """The scripts' two ``PIL.Image.resize(..., BOX)`` calls on the 8-bit image, exactly: Pillow
    resamples horizontally, then vertically, each pass a fixed-point sum rounded half up to 8 bits
    (exact in float64 here). Inputs off the 8-bit grid are rounded to it first."""
    height, width = x.shape[-2:]
    small_h, small_w = max(int(height * factor), 1), max(int(width * factor), 1)
    levels = torch.round(x.double() * 255)
    half, one = 2.0 ** (_PIL_PRECISION_BITS - 1), 2.0**_PIL_PRECISION_BITS
    for (in_h, out_h), (in_w, out_w) in (((height, small_h), (width, small_w)),
                                         ((small_h, height), (small_w, width))):  # fmt: skip
        levels = torch.floor((levels @ _pil_box_matrix(in_w, out_w).to(x.device).T + half) / one)
        levels = torch.floor((_pil_box_matrix(in_h, out_h).to(x.device) @ levels + half) / one)
    return (levels / 255).to(x.dtype)


def _jpeg_roundtrip(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode uint8 ``levels [B, C, H, W]`` as JPEG with Pillow, as the scripts do
    (torchvision.io's libjpeg gives the same bytes but is deprecated); float in [0, 1]."""
    pixels = levels.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    decoded = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            buffer, format="JPEG", quality=quality
        )
        decoded.append(np.asarray(Image.open(buffer)).reshape(image.shape))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return out.to(levels.device, torch.float32) / 255


def _jpeg_compression(x: torch.Tensor, quality: int, g: torch.Generator) -> torch.Tensor:
    return _jpeg_roundtrip((x * 255).round().to(torch.uint8), quality)


def _spatter(
    x: torch.Tensor, params: tuple, g: torch.Generator, overflow: str = "wrap"
) -> torch.Tensor:
    loc, scale, sigma, threshold, strength, mud = params
    liquid = liquid_layer(x, loc, scale, sigma, threshold, g)
    if not mud:
        return water_spatter(x, liquid, strength, overflow)
    mask = gaussian_blur2d((liquid > threshold).to(x.dtype), strength)  # strength = blur sigma
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return x * (1 - mask) + _colour(_MUD_RGB, x.shape[1], x) * mask


_CORRUPTION_FNS: dict[str, Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    scale: str = "cifar",
    seed: int = 0,
    *,
    frost: str = "photos",
    spatter: str = "wrap",
    output: str = "released",
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to ``images [B, C, H, W]`` in [0, 1].

    Args:
        images: float tensor, RGB or grey, any size and device.
        name: one of :data:`ALL_CORRUPTIONS`.
        severity: 1 (mildest) .. 5.
        scale: parameter set, ``"cifar"`` (CIFAR-10-C) or ``"imagenet"`` (ImageNet-C).
        seed: seeds the random draws; same seed and device -> same output.
        frost: frost textures, ``"photos"`` (the reference photos, see
            :mod:`~timm_pushpull.robustness.frost`) or ``"procedural"``.
        spatter: ``"wrap"`` (the reference's 8-bit wrap of the water layer, as in the released
            data) or ``"clip"``; see :func:`water_spatter`.
        output: ``"released"`` stores the result like the released data set of ``scale``
            (:func:`quantise_like_released`), ``"float"`` returns it as computed.

    Returns:
        Corrupted images, same shape, dtype and device, in [0, 1] (computed in float32).
    """
    _check_choice(name, "corruption", ALL_CORRUPTIONS)
    _check_severity(severity)
    _check_choice(scale, "scale", SCALES)
    _check_choice(frost, "frost", FROST_SOURCES)
    _check_choice(spatter, "spatter", SPATTER_MODES)
    _check_choice(output, "output", OUTPUTS)
    check_images(images)
    if images.numel() == 0:
        return images.clone()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    params = SEVERITY_PARAMS[name][scale][severity - 1]
    options = {"frost": {"source": frost}, "spatter": {"overflow": spatter}}.get(name, {})
    x = images.float().contiguous()  # mixed memory formats (channels-last in) slow every op down
    out = _CORRUPTION_FNS[name](x, params, generator, **options)
    if out.data_ptr() == x.data_ptr():  # an identity (saturate on grey): never clamp the input
        out = out.clone()
    out = out.clamp_(0, 1)
    if output == "released":
        out = quantise_like_released(out, scale)
    return out.to(images.dtype)


def quantise_like_released(images: torch.Tensor, scale: str) -> torch.Tensor:
    """Store float images in [0, 1] as the released data sets were stored, and read them back.

    ``"cifar"``: ``np.uint8(x * 255)`` of make_cifar_c.py, which truncates (CIFAR-10-C ``.npy``);
    ``"imagenet"``: the same, then a JPEG of quality :data:`RELEASED_JPEG_QUALITY` (ImageNet-C).
    Values within 1e-3 levels below a level (float error) count as on it.
    """
    _check_choice(scale, "scale", SCALES)
    levels = torch.floor(images.float() * 255 + _GRID_TOLERANCE).clamp_(0, 255)
    if scale == "imagenet":
        return _jpeg_roundtrip(levels.to(torch.uint8), RELEASED_JPEG_QUALITY).to(images.device)
    return levels / 255
