"""CIFAR-10-P style perturbation sequences for any image batch.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. Parameters from ``ImageNet-P/create_p/make_cifar_p.py`` in
https://github.com/hendrycks/robustness (the first difficulty level of each noise sequence):

* noise (``gaussian_noise`` std 0.02, ``shot_noise`` 700 photons, ``speckle_noise`` std 0.05):
  frame 0 is the clean image, every later frame an independent noise draw on the clean image
  (flip probability compares each frame with frame 0);
* ``motion_blur`` radius 6, sigma 1.8, angle -180..0 degrees (21 frames); ``zoom_blur`` running
  mean of zooms 1..1.12; ``gaussian_blur`` sigma 0.3..0.75; ``snow`` one flake layer blurred along
  -150..-30 degrees; ``spatter`` water drops dripping down one pixel-smear per frame;
  ``brightness`` HSV value -0.225..+0.225;
* geometric: ``translate`` horizontal shift -7..+8 px (16 frames, zero fill), ``rotate`` -15..15
  degrees, ``tilt`` -11.25..11.25 degrees about both axes, ``scale`` 0.7..1.3, ``shear`` -15..15
  degrees (bilinear, zero fill cut off sharply as Pillow does). Other sequences compare
  consecutive frames.

Lengths in pixels (blur radii and sigmas, the spatter blur) scale with ``min(H, W) / 32``, so
32-px images get exactly the CIFAR-10-P values; translation steps are whole pixels,
``max(1, round(min(H, W) / 32))`` of them (-14..+16 px on 64-px images, -7..+8 px on 28-px ones).
``num_frames`` other than the default sweeps the same parameter range with that many frames
(noise: that many frames, the first clean).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .corruptions import (
    add_snow,
    adjust_value,
    check_images,
    gaussian_blur2d,
    liquid_layer,
    motion_blur2d,
    snow_layer,
    water_spatter,
)

__all__ = [
    "DEFAULT_NUM_FRAMES",
    "NOISE_PERTURBATIONS",
    "PERTURBATIONS",
    "perturbation_sequence",
    "tilt_homography",
]

PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "speckle_noise",
    "motion_blur",
    "zoom_blur",
    "gaussian_blur",
    "snow",
    "spatter",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
    "shear",
)
NOISE_PERTURBATIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "speckle_noise")
DEFAULT_NUM_FRAMES: dict[str, int] = {
    name: {"translate": 16, "motion_blur": 21}.get(name, 31) for name in PERTURBATIONS
}

Frames = list[torch.Tensor]
SequenceFn = Callable[[torch.Tensor, int, torch.Generator, float], Frames]


def _sweep(start: float, stop: float, num_frames: int) -> list[float]:
    return np.linspace(start, stop, num_frames).tolist()


def _noise_frames(draw: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> SequenceFn:
    def frames(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
        return [x] + [draw(x, g) for _ in range(num_frames - 1)]

    return frames


def _gaussian(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + 0.02 * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def _shot(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.poisson(x * 700, generator=g) / 700


def _speckle(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + x * 0.05 * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def _motion_blur(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    angles = torch.tensor(_sweep(-180, 0, num_frames))
    return [motion_blur2d(x, 6 * pixels, 1.8 * pixels, angle.view(1)) for angle in angles]


def _affine(
    x: torch.Tensor, angle: float = 0.0, scale: float = 1.0, shear: float = 0.0
) -> torch.Tensor:
    """make_cifar_p.py's ``torchvision.transforms.functional.affine`` of a PIL image (about the
    centre, bilinear): Pillow's transform samples inside the source image, repeating its edge
    pixels for the outer half pixel, and puts zeros outside with a sharp cut. (torchvision's tensor
    path blends into the zeros over the last pixel instead.)"""
    height, width = x.shape[-2:]
    # torchvision's _get_inverse_affine_matrix with shear (shear, 0), no translation: output
    # offsets from the centre -> input offsets
    rot, shear_x = math.radians(angle), math.radians(shear)
    a, c = math.cos(rot), math.sin(rot)
    b = -math.cos(rot) * math.tan(shear_x) - math.sin(rot)
    d = -math.sin(rot) * math.tan(shear_x) + math.cos(rot)
    ys = torch.arange(height, dtype=torch.float64, device=x.device) + 0.5 - height / 2
    xs = torch.arange(width, dtype=torch.float64, device=x.device) + 0.5 - width / 2
    ys, xs = torch.meshgrid(ys, xs, indexing="ij")
    src_x, src_y = (d * xs - b * ys) / scale, (-c * xs + a * ys) / scale
    grid = torch.stack([2 * src_x / width, 2 * src_y / height], -1)  # align_corners=False units
    inside = ((grid >= -1) & (grid < 1)).all(-1)  # Pillow: 0 <= x_in < width, 0 <= y_in < height
    out = F.grid_sample(
        x, grid.to(x.dtype).expand(x.shape[0], -1, -1, -1), mode="bilinear",
        padding_mode="border", align_corners=False,
    )  # fmt: skip
    return out * inside.to(x.dtype)


def _zoom_blur(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    total, frames = torch.zeros_like(x), []
    for i, zoom in enumerate(_sweep(1.0, 1.12, num_frames)):
        total = total + (x if i == 0 else _affine(x, scale=zoom))
        frames.append(total / (i + 1))
    return frames


def _gaussian_blur(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    sigmas = _sweep(0.3, 0.75, num_frames)
    return [gaussian_blur2d(x, sigma * pixels, truncate=7.0) for sigma in sigmas]


def _snow(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    flakes = snow_layer(x, loc=0.05, scale=0.3, zoom=2, threshold=0.5, generator=g)
    angles = torch.tensor(_sweep(-150, -30, num_frames))
    return [
        add_snow(x, motion_blur2d(flakes, 10 * pixels, 2 * pixels, angle.view(1)), mix=0.85)
        for angle in angles
    ]


def _spatter(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    liquid = liquid_layer(x, loc=0.6, scale=0.265, sigma=1.75 * pixels, threshold=0.7, generator=g)
    frames = []
    for _ in range(num_frames):
        frames.append(water_spatter(x, liquid, strength=0.6))
        # np.convolve(column, [0.2, 0.8], mode="same"): the drops run one pixel down
        liquid = 0.2 * liquid + 0.8 * F.pad(liquid, (0, 0, 1, 0))[..., :-1, :]
    return frames


def _brightness(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    return [adjust_value(x, delta) for delta in _sweep(-0.225, 0.225, num_frames)]


def _translate(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    step = max(round(pixels), 1)  # whole pixels: sub-pixel shifts would repeat frames
    frames = []
    for shift in _sweep(-7, 8, num_frames):
        shift = round(shift) * step
        # the content moves right by `shift` pixels, zeros come in
        padded = F.pad(x, (max(shift, 0), max(-shift, 0)))
        frames.append(padded[..., max(-shift, 0) : padded.shape[-1] - max(shift, 0)])
    return frames


def _rotate(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    return [_affine(x, angle=angle) for angle in _sweep(-15, 15, num_frames)]


def _scale(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    return [_affine(x, scale=scale) for scale in _sweep(0.7, 1.3, num_frames)]


def _shear(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    return [_affine(x, shear=shear) for shear in _sweep(-15, 15, num_frames)]


def tilt_homography(height: int, width: int, degrees: float) -> np.ndarray:
    """make_cifar_p.py's tilt: rotate the image plane by ``degrees`` about both the x and the y
    axis at focal length ``hypot(w, h)`` and project back; a 3x3 matrix mapping source pixel
    coordinates to output ones (``cv2.warpPerspective`` convention)."""
    phi = theta = np.deg2rad(degrees)
    w, h = width, height
    f = np.sqrt(w**2 + h**2)
    to_3d = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rot_x = np.array(
        [
            [1, 0, 0, 0],
            [0, np.cos(theta), -np.sin(theta), 0],
            [0, np.sin(theta), np.cos(theta), 0],
            [0, 0, 0, 1],
        ]
    )
    rot_y = np.array(
        [
            [np.cos(phi), 0, -np.sin(phi), 0],
            [0, 1, 0, 0],
            [np.sin(phi), 0, np.cos(phi), 0],
            [0, 0, 0, 1],
        ]
    )
    move = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    to_2d = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return to_2d @ move @ rot_x @ rot_y @ to_3d


def _warp_perspective(x: torch.Tensor, homography: np.ndarray) -> torch.Tensor:
    """``cv2.warpPerspective(x, homography, (w, h))``: bilinear, zeros outside, batched."""
    height, width = x.shape[-2:]
    inverse = torch.from_numpy(np.linalg.inv(homography)).to(x.device)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=x.device),
        torch.arange(width, dtype=torch.float64, device=x.device),
        indexing="ij",
    )
    src = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ inverse.T
    src = src[..., :2] / src[..., 2:]
    scale = torch.tensor([max(width - 1, 1), max(height - 1, 1)], device=x.device)
    grid = (2 * src / scale - 1).to(x.dtype).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _tilt(x: torch.Tensor, num_frames: int, g: torch.Generator, pixels: float) -> Frames:
    height, width = x.shape[-2:]
    return [
        _warp_perspective(x, tilt_homography(height, width, degrees))
        for degrees in _sweep(-11.25, 11.25, num_frames)
    ]


_SEQUENCE_FNS: dict[str, SequenceFn] = {
    "gaussian_noise": _noise_frames(_gaussian),
    "shot_noise": _noise_frames(_shot),
    "speckle_noise": _noise_frames(_speckle),
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "gaussian_blur": _gaussian_blur,
    "snow": _snow,
    "spatter": _spatter,
    "brightness": _brightness,
    "translate": _translate,
    "rotate": _rotate,
    "tilt": _tilt,
    "scale": _scale,
    "shear": _shear,
}


def perturbation_sequence(
    images: torch.Tensor, name: str, seed: int = 0, num_frames: int | None = None
) -> torch.Tensor:
    """A CIFAR-10-P style sequence of ``images [B, C, H, W]`` (float in [0, 1]).

    Args:
        images: float tensor, RGB or grey, any size and device.
        name: one of :data:`PERTURBATIONS`.
        seed: seeds the random draws (noise, snow, spatter); same seed and device -> same output.
        num_frames: frames per sequence (>= 2); default :data:`DEFAULT_NUM_FRAMES` (31; 16 for
            ``translate``, 21 for ``motion_blur``).

    Returns:
        ``[B, T, C, H, W]`` in [0, 1], same dtype and device as ``images``.
    """
    if name not in PERTURBATIONS:
        raise ValueError(
            f"unknown perturbation {name!r}; expected one of: {', '.join(PERTURBATIONS)}"
        )
    if num_frames is None:
        num_frames = DEFAULT_NUM_FRAMES[name]
    elif isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames must be an int >= 2 (or None), got {num_frames!r}")
    check_images(images)
    batch, channels, height, width = images.shape
    if images.numel() == 0:
        return images.new_empty(batch, num_frames, channels, height, width)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    pixels = min(height, width) / 32
    frames = _SEQUENCE_FNS[name](images.float(), num_frames, generator, pixels)
    return torch.stack(frames, 1).clamp(0, 1).to(images.dtype)
