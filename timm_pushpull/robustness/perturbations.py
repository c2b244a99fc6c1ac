"""CIFAR-10-P and ImageNet-P style perturbation sequences for any image batch.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. Values from ``ImageNet-P/create_p/make_cifar_p.py`` (``scale="cifar"``)
and ``make_imagenet_p.py`` (``scale="imagenet"``) in https://github.com/hendrycks/robustness (the
first difficulty level of each noise sequence), in :data:`SEQUENCE_PARAMS`:

* noise (``gaussian_noise`` std 0.02 / 0.03, ``shot_noise`` 700 / 300 photons, ``speckle_noise``
  std 0.05): frame 0 is the clean image, every later frame an independent noise draw on the clean
  image (flip probability compares each frame with frame 0);
* ``motion_blur`` radius 6, sigma 1.8, -180..0 degrees in 21 frames (ImageNet: radius 10, sigma 3,
  -120..0 degrees in 31); ``zoom_blur`` running mean of zooms 1..1.12; ``gaussian_blur`` sigma
  0.3..0.75, truncate 7 (0.25..1.30, truncate 6); ``snow`` one flake layer (zoom 2 / 3) blurred
  (radius 10 / 14) along -150..-30 degrees; ``spatter`` water drops dripping down each frame;
  ``brightness`` HSV value +-0.225 (+-0.30);
* geometric: ``translate`` horizontal shift -7..+8 px in 16 frames (-20..+20 in 41; zero fill),
  ``rotate`` -15..15 degrees, ``tilt`` +-11.25 (+-15) degrees about both axes, ``scale`` 0.7..1.3
  (0.40..1.15), ``shear`` -15..15 degrees (bilinear, zero fill cut off sharply as Pillow does).
  Other sequences compare consecutive frames.

ImageNet-P warps the 256-px resized image and centre-crops 224 px, so no black border shows in
the geometric sequences; the others perturb the 224-px crop. ``scale="imagenet"`` does the same on
the images given (resized to 256 px, square to batch them): frames are ``224 / 256`` of their side.

Lengths in pixels (blur radii and sigmas, the spatter blur) scale with ``min(H, W) / 32`` (CIFAR)
or ``/ 256`` (ImageNet), so 32-px / 256-px images get exactly the scripts' values; translation
steps are whole pixels, ``max(1, round(that ratio))`` of them. ``num_frames`` other than the
default sweeps the same parameter range with that many frames (noise: that many frames, the first
clean). Released data sets read (:mod:`~timm_pushpull.robustness.datasets`): CIFAR-10-P's
``.npy`` files; ImageNet-P's ``.mp4`` videos are not read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .corruptions.filters import gaussian_blur2d, motion_blur2d
from .corruptions.noise import gaussian_noise, poisson_noise, speckle_noise
from .corruptions.params import check_images, on_images_device
from .corruptions.weather import add_snow, adjust_value, liquid_layer, snow_layer, water_spatter

__all__ = [
    "DEFAULT_NUM_FRAMES",
    "IMAGENET_P_CROP",
    "IMAGENET_P_RESIZE",
    "SCALES",
    "SEQUENCE_PARAMS",
    "SequenceParams",
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

SCALES: tuple[str, ...] = ("cifar", "imagenet")
# ImageNet-P frames are 224-px centre crops of the 256-px resized image (make_imagenet_p.py)
IMAGENET_P_RESIZE, IMAGENET_P_CROP = 256, 224


@dataclasses.dataclass(frozen=True)
class SequenceParams:
    """One scale's sequence values, verbatim from make_cifar_p.py / make_imagenet_p.py (lengths in
    pixels of a 32-px CIFAR image / a 256-px resized ImageNet image)."""

    gaussian_std: float
    shot_photons: float
    speckle_std: float
    motion: tuple[float, float, float, float]  # radius, sigma, first and last angle
    zoom: tuple[float, float]  # first and last zoom
    blur: tuple[float, float, float]  # first and last sigma, truncate
    snow: tuple[float, ...]  # loc, scale, zoom, threshold, radius, sigma, first and last angle
    spatter: tuple[float, float, float, float]  # loc, scale, sigma, threshold
    drip: tuple[float, ...]  # np.convolve kernel that runs the drops down each frame
    brightness: float  # largest |HSV value shift|
    translate: tuple[int, int]  # first and last shift
    rotate: float
    tilt: float
    scale: tuple[float, float]
    shear: float
    base_size: int  # image size the lengths refer to
    num_frames: dict[str, int]


SEQUENCE_PARAMS: dict[str, SequenceParams] = {
    "cifar": SequenceParams(
        gaussian_std=0.02, shot_photons=700, speckle_std=0.05, motion=(6, 1.8, -180, 0),
        zoom=(1.0, 1.12), blur=(0.3, 0.75, 7.0),
        snow=(0.05, 0.3, 2, 0.5, 10, 2, -150, -30), spatter=(0.6, 0.265, 1.75, 0.7),
        drip=(0.2, 0.8), brightness=0.225, translate=(-7, 8), rotate=15, tilt=11.25,
        scale=(0.7, 1.3), shear=15, base_size=32,
        num_frames={name: {"translate": 16, "motion_blur": 21}.get(name, 31)
                    for name in PERTURBATIONS},
    ),
    "imagenet": SequenceParams(
        gaussian_std=0.03, shot_photons=300, speckle_std=0.05, motion=(10, 3, -120, 0),
        zoom=(1.0, 1.12), blur=(0.25, 1.30, 6.0),
        snow=(0.05, 0.3, 3, 0.5, 14, 4, -150, -30), spatter=(0.65, 0.27, 3.7, 0.69),
        drip=(0.05, 0.1, 0.15, 0.7), brightness=0.30, translate=(-20, 20), rotate=15, tilt=15,
        scale=(0.40, 1.15), shear=15, base_size=IMAGENET_P_RESIZE,
        num_frames={name: {"translate": 41}.get(name, 31) for name in PERTURBATIONS},
    ),
}  # fmt: skip
DEFAULT_NUM_FRAMES: dict[str, int] = SEQUENCE_PARAMS["cifar"].num_frames
# Sequences that warp the whole (resized) image before ImageNet-P's centre crop; the others
# perturb the crop.
GEOMETRIC: tuple[str, ...] = ("zoom_blur", "translate", "rotate", "tilt", "scale", "shear")

Frames = list[torch.Tensor]
SequenceFn = Callable[[torch.Tensor, int, torch.Generator, SequenceParams, float], Frames]


def _sweep(start: float, stop: float, num_frames: int) -> list[float]:
    return np.linspace(start, stop, num_frames).tolist()


def _noise_frames(
    draw: Callable[[torch.Tensor, torch.Generator, SequenceParams], torch.Tensor],
) -> SequenceFn:
    def frames(
        x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
    ) -> Frames:
        return [x] + [draw(x, g, p) for _ in range(num_frames - 1)]

    return frames


def _normal(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def _gaussian(x: torch.Tensor, g: torch.Generator, p: SequenceParams) -> torch.Tensor:
    return gaussian_noise(x, p.gaussian_std, _normal(x, g))


def _shot(x: torch.Tensor, g: torch.Generator, p: SequenceParams) -> torch.Tensor:
    return poisson_noise(x, p.shot_photons, g)


def _speckle(x: torch.Tensor, g: torch.Generator, p: SequenceParams) -> torch.Tensor:
    return speckle_noise(x, p.speckle_std, _normal(x, g))


def _motion_blur(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    radius, sigma, first, last = p.motion
    angles = torch.tensor(_sweep(first, last, num_frames))
    return [motion_blur2d(x, radius * pixels, sigma * pixels, angle.view(1)) for angle in angles]


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


def _zoom_blur(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    total, frames = torch.zeros_like(x), []
    for i, zoom in enumerate(_sweep(*p.zoom, num_frames)):
        total = total + (x if i == 0 else _affine(x, scale=zoom))
        frames.append(total / (i + 1))
    return frames


def _gaussian_blur(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    first, last, truncate = p.blur
    sigmas = _sweep(first, last, num_frames)
    return [gaussian_blur2d(x, sigma * pixels, truncate=truncate) for sigma in sigmas]


def _snow(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    loc, scale, zoom, threshold, radius, sigma, first, last = p.snow
    flakes = snow_layer(x, loc=loc, scale=scale, zoom=zoom, threshold=threshold, generator=g)
    angles = torch.tensor(_sweep(first, last, num_frames))
    return [
        add_snow(x, motion_blur2d(flakes, radius * pixels, sigma * pixels, angle.view(1)), 0.85)
        for angle in angles
    ]


def _spatter(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    loc, scale, sigma, threshold = p.spatter
    liquid = liquid_layer(x, loc, scale, sigma * pixels, threshold, generator=g)
    # np.convolve(column, kernel, mode="same") down every column: the drops run down each frame
    kernel = torch.tensor(p.drip, dtype=liquid.dtype, device=liquid.device)
    before = (len(kernel) - 1) // 2
    weight = kernel.view(1, 1, -1, 1)  # conv2d correlates: same[k] = sum_j v[j] a[k + before - j]
    frames = []
    for _ in range(num_frames):
        frames.append(water_spatter(x, liquid, strength=0.6))
        padded = F.pad(liquid, (0, 0, len(kernel) - 1 - before, before))
        liquid = F.conv2d(padded, weight.flip(2))
    return frames


def _brightness(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    return [adjust_value(x, delta) for delta in _sweep(-p.brightness, p.brightness, num_frames)]


def _translate(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    step = max(round(pixels), 1)  # whole pixels: sub-pixel shifts would repeat frames
    frames = []
    for shift in _sweep(*p.translate, num_frames):
        shift = round(shift) * step
        # the content moves right by `shift` pixels, zeros come in
        padded = F.pad(x, (max(shift, 0), max(-shift, 0)))
        frames.append(padded[..., max(-shift, 0) : padded.shape[-1] - max(shift, 0)])
    return frames


def _rotate(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    return [_affine(x, angle=angle) for angle in _sweep(-p.rotate, p.rotate, num_frames)]


def _scale(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    return [_affine(x, scale=scale) for scale in _sweep(*p.scale, num_frames)]


def _shear(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    return [_affine(x, shear=shear) for shear in _sweep(-p.shear, p.shear, num_frames)]


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


def _tilt(
    x: torch.Tensor, num_frames: int, g: torch.Generator, p: SequenceParams, pixels: float
) -> Frames:
    height, width = x.shape[-2:]
    return [
        _warp_perspective(x, tilt_homography(height, width, degrees))
        for degrees in _sweep(-p.tilt, p.tilt, num_frames)
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
    images: torch.Tensor,
    name: str,
    seed: int = 0,
    num_frames: int | None = None,
    scale: str = "cifar",
) -> torch.Tensor:
    """A CIFAR-10-P or ImageNet-P style sequence of ``images [B, C, H, W]`` (float in [0, 1]).

    Args:
        images: float tensor, RGB or grey, any size and device. For ``scale="imagenet"``, the
            images resized to a short side of 256 (ImageNet-P's ``trn.Resize(256)``), square
            (e.g. their 256-px centre crops) to batch them.
        name: one of :data:`PERTURBATIONS`.
        seed: seeds the random draws (noise, snow, spatter); same seed and device -> same output.
        num_frames: frames per sequence (>= 2); default the scale's (``SEQUENCE_PARAMS[scale]``:
            31; 16 (CIFAR) or 41 (ImageNet) for ``translate``, 21 for CIFAR ``motion_blur``).
        scale: ``"cifar"`` (make_cifar_p.py) or ``"imagenet"`` (make_imagenet_p.py: geometric
            sequences warp the whole image, then every frame is centre-cropped to 224/256 of its
            side, 224 px for 256-px input, so no black border shows; the others perturb the crop).

    Returns:
        ``[B, T, C, H', W']`` in [0, 1], same dtype and device as ``images``; ``H' = H`` for CIFAR.
    """
    if name not in PERTURBATIONS:
        raise ValueError(
            f"unknown perturbation {name!r}; expected one of: {', '.join(PERTURBATIONS)}"
        )
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of: {', '.join(SCALES)}")
    params = SEQUENCE_PARAMS[scale]
    if num_frames is None:
        num_frames = params.num_frames[name]
    elif isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames must be an int >= 2 (or None), got {num_frames!r}")
    check_images(images)
    batch, channels, height, width = images.shape
    crop = None
    if scale == "imagenet":
        crop = (round(height * IMAGENET_P_CROP / IMAGENET_P_RESIZE),
                round(width * IMAGENET_P_CROP / IMAGENET_P_RESIZE))  # fmt: skip
    out_h, out_w = crop or (height, width)
    if images.numel() == 0:
        return images.new_empty(batch, num_frames, channels, out_h, out_w)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    pixels = min(height, width) / params.base_size
    x = images.float()
    if crop is not None and name not in GEOMETRIC:
        x = _centre_crop(x, crop)
    with on_images_device(images):
        frames = _SEQUENCE_FNS[name](x, num_frames, generator, params, pixels)
    if crop is not None and name in GEOMETRIC:
        frames = [_centre_crop(frame, crop) for frame in frames]
    return torch.stack(frames, 1).clamp(0, 1).to(images.dtype)


def _centre_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``CenterCrop``: offsets rounded from (side - size) / 2."""
    top = int(round((x.shape[-2] - size[0]) / 2.0))
    left = int(round((x.shape[-1] - size[1]) / 2.0))
    return x[..., top : top + size[0], left : left + size[1]]
