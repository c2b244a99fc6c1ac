"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019; the operations of ``make_cifar_c.py`` / ``make_imagenet_c.py`` in
https://github.com/hendrycks/robustness, batched.

Glass blur reproduces what the scripts actually do on RGB arrays: the tuple "swap" of NumPy views
copies the neighbour pixel, ``x[h, w] = x[h + dy, w + dx]``, scanning from the bottom-right.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from .filters import clipped_zoom, filter2d, gaussian_blur2d, motion_blur2d
from .params import CorruptionFn
from .random import random_uniform

__all__: list[str] = []


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
    return filter2d(x, _disk_kernel(radius, alias_blur), pad_mode="reflect")


def _motion_blur(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    radius, sigma = params
    angles = random_uniform((x.shape[0],), -45, 45, x, g)
    return motion_blur2d(x, radius, sigma, angles)


def _zoom_blur(x: torch.Tensor, arange: tuple, g: torch.Generator) -> torch.Tensor:
    factors = np.arange(*arange)  # np.arange exactly as the scripts (float end points included)
    out = x.clone()
    for factor in factors:
        out += clipped_zoom(x, float(factor))
    return out / (len(factors) + 1)


CORRUPTION_FNS: dict[str, CorruptionFn] = {
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "gaussian_blur": _gaussian_blur,
}
