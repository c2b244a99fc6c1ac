"""Image filters shared by the corruptions and the perturbation sequences, as batched torch ops.

Each reproduces the library call of Hendrycks' generation scripts it replaces (OpenCV's
``filter2D``, SciPy's ``gaussian_filter`` and ``zoom``, ImageMagick's motion blur) on
``[B, C, H, W]`` tensors on any device.

Padding modes (:data:`PAD_MODES`) are named as the blur-pool layer
(:data:`timm_pushpull.layers.blur_pool.PAD_MODES`) and PyTorch's ``F.pad`` name them, whatever
library a filter reproduces:

* ``"reflect"``: mirror without repeating the edge pixel, ``dcb|abcd|cba``: torch's ``reflect``,
  OpenCV's ``BORDER_REFLECT_101`` (its default), NumPy's ``reflect``, SciPy's ``mirror``;
* ``"symmetric"``: mirror repeating the edge pixel, ``cba|abcd|dcb``: NumPy's ``symmetric``,
  OpenCV's ``BORDER_REFLECT``, and what SciPy and scikit-image call ``reflect``;
* ``"replicate"``: repeat the edge pixel, ``aaa|abcd|ddd``: OpenCV's ``BORDER_REPLICATE``, SciPy's
  ``nearest``;
* ``"zero"``: zeros, ``000|abcd|000``: torch's ``constant``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .params import check_choice

__all__ = [
    "PAD_MODES",
    "clipped_zoom",
    "filter2d",
    "gaussian_blur2d",
    "motion_blur2d",
    "pad2d",
]

PAD_MODES: tuple[str, ...] = ("reflect", "replicate", "symmetric", "zero")


def _border_index(n: int, pad_before: int, pad_after: int, pad_mode: str) -> torch.Tensor:
    i = torch.arange(-pad_before, n + pad_after)
    if pad_mode == "replicate":
        return i.clamp(0, n - 1)
    if pad_mode == "reflect":
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    period = 2 * n  # symmetric
    i = i.remainder(period)
    return torch.where(i >= n, period - 1 - i, i)


def pad2d(x: torch.Tensor, pad: tuple[int, int, int, int], pad_mode: str) -> torch.Tensor:
    """Pad the last two dims by ``(top, bottom, left, right)``, any width (``F.pad``'s reflect
    needs pads smaller than the input); ``pad_mode`` one of :data:`PAD_MODES`."""
    check_choice(pad_mode, "pad_mode", PAD_MODES)
    top, bottom, left, right = pad
    height, width = x.shape[-2:]
    if pad_mode in ("zero", "replicate"):
        mode = "constant" if pad_mode == "zero" else pad_mode
        return F.pad(x, (left, right, top, bottom), mode=mode)
    if pad_mode == "reflect" and max(top, bottom) < height and max(left, right) < width:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    if top or bottom:
        x = x.index_select(-2, _border_index(height, top, bottom, pad_mode).to(x.device))
    if left or right:
        x = x.index_select(-1, _border_index(width, left, right, pad_mode).to(x.device))
    return x


def filter2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    pad_mode: str = "reflect",
    anchor: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Correlate every channel of ``x [B, C, H, W]`` with ``kernel`` (``[kh, kw]`` shared or
    ``[B, kh, kw]`` per image), like ``cv2.filter2D``:
    ``out[y, x] = sum k[u, v] in[y + u - ay, x + v - ax]``, anchor ``(ay, ax)`` by default the
    kernel centre; the border padded by ``pad_mode`` (:data:`PAD_MODES`, OpenCV's default is
    ``"reflect"``)."""
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape[-2:]
    ay, ax = anchor if anchor is not None else (kh // 2, kw // 2)
    padded = pad2d(x, (ay, kh - 1 - ay, ax, kw - 1 - ax), pad_mode)
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    if kernel.ndim == 2:
        kernel = kernel.expand(batch, kh, kw)
    # One depthwise convolution over the B*C maps (groups=B*C): every image's own kernel applied
    # to each of its channels in a single call.
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
    x: torch.Tensor, sigma: float, truncate: float = 4.0, pad_mode: str = "replicate"
) -> torch.Tensor:
    """Separable Gaussian blur matching ``scipy.ndimage.gaussian_filter`` (and so
    ``skimage.filters.gaussian``, whose default border is ``mode='nearest'`` = replicate)."""
    if sigma <= 1e-15:  # scipy leaves axes with sigma ~ 0 untouched
        return x
    kernel = _gaussian_kernel1d(sigma, truncate)
    x = filter2d(x, kernel.view(1, -1), pad_mode)
    return filter2d(x, kernel.view(-1, 1), pad_mode)


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
