"""Digital corruptions (contrast, elastic, pixelate, JPEG, saturate) and the released storage.

``quantise_like_released`` stores images as the released data sets did (8 bits, then JPEG).

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019; the operations of ``make_cifar_c.py`` / ``make_imagenet_c.py`` in
https://github.com/hendrycks/robustness, batched, except JPEG, which goes through Pillow per image
as in the scripts. ``saturate`` is the identity on grey images.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .filters import gaussian_blur2d
from .params import GRID_TOLERANCE, RELEASED_JPEG_QUALITY, SCALES, CorruptionFn, check_choice
from .random import random_uniform

__all__ = ["quantise_like_released"]


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
    dst_pts = src_pts + random_uniform((batch, 3, 2), -affine_jitter, affine_jitter, x, g).double()
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
    noise = random_uniform((batch, 2, height, width), -1, 1, x, g)
    shift = gaussian_blur2d(noise, sigma, truncate=3.0, pad_mode="symmetric") * alpha
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


def quantise_like_released(images: torch.Tensor, scale: str) -> torch.Tensor:
    """Store float images in [0, 1] as the released data sets were stored, and read them back.

    ``"cifar"``: ``np.uint8(x * 255)`` of make_cifar_c.py, which truncates (CIFAR-10-C ``.npy``);
    ``"imagenet"``: the same, then a JPEG of quality :data:`RELEASED_JPEG_QUALITY` (ImageNet-C).
    Values within 1e-3 levels below a level (float error) count as on it.
    """
    check_choice(scale, "scale", SCALES)
    levels = torch.floor(images.float() * 255 + GRID_TOLERANCE).clamp_(0, 255)
    if scale == "imagenet":
        return _jpeg_roundtrip(levels.to(torch.uint8), RELEASED_JPEG_QUALITY).to(images.device)
    return levels / 255


CORRUPTION_FNS: dict[str, CorruptionFn] = {
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "saturate": _saturate,
}
