"""Corruption speed benchmark: batched torch ``corrupt`` vs per-image NumPy references.

The references follow Hendrycks' ``make_cifar_c.py`` / ``make_imagenet_c.py`` one image at a time
(NumPy, scikit-image, SciPy, OpenCV, Pillow), with the same parameters and textures, except that
ImageMagick's motion blur is the NumPy shift-and-add of ``imagecorruptions`` (Wand is not
installed) and scikit-image's removed ``multichannel=True`` is ``channel_axis=-1``. Random draws
come from NumPy's legacy ``RandomState`` samplers, as ``np.random.normal`` / ``np.random.poisson``
in the scripts and in ``imagecorruptions``; seeding one makes the reference repeatable.

    python -m timm_pushpull.robustness.bench --num-images 1000
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import skimage.color
import skimage.util
import torch
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.filters import gaussian

from .. import native
from .corruptions import _RANDOM_CHUNK, ALL_CORRUPTIONS, SEVERITY_PARAMS, corrupt
from .frost import frost_textures

__all__ = ["format_table", "main", "run"]

# How each corruption runs in ``corrupt``, for the table.
_IMPLEMENTATION = dict.fromkeys(ALL_CORRUPTIONS, "torch, batched")
_IMPLEMENTATION["jpeg_compression"] = "Pillow per image"
_IMPLEMENTATION["spatter"] = "torch + OpenCV per image"


# Corruptions whose large CPU draws come from the C kernel of csrc/random.c where it builds.
_C_DRAWS = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "elastic_transform")


def _implementation(name: str, images: torch.Tensor) -> str:
    if name == "frost" and images.device.type == "cpu" and native.load("frost") is not None:
        return "C kernel, batched"
    if images.device.type != "cpu" or name not in _C_DRAWS or native.load("random") is None:
        return _IMPLEMENTATION[name]
    if images.numel() <= _RANDOM_CHUNK:  # small draws stay with torch's generator
        return _IMPLEMENTATION[name]
    if name == "shot_noise" and native.load("shot_noise") is not None:
        return "C draws + C kernel, batched"
    return "C draws + torch, batched"


# --------------------------------------------------------------------------------------------
# Per-image NumPy references: f(image HxWx3 float64 in [0, 1], params, RandomState) -> image


def _gaussian_noise(x, c, rng):
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def _shot_noise(x, c, rng):
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def _impulse_noise(x, c, rng):
    return np.clip(skimage.util.random_noise(x, mode="s&p", amount=c, rng=rng.randint(2**31)), 0, 1)


def _speckle_noise(x, c, rng):
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1)


def _gaussian_blur(x, c, rng):
    return np.clip(gaussian(x, sigma=c, channel_axis=-1), 0, 1)


def _glass_blur(x, c, rng):
    sigma, delta, iterations = c
    x = np.uint8(gaussian(x, sigma=sigma, channel_axis=-1) * 255)
    height, width = x.shape[:2]
    positions = [
        (h, w) for h in range(height - delta, delta, -1) for w in range(width - delta, delta, -1)
    ]
    for _ in range(iterations):
        # one draw per sweep instead of the scripts' randint per pixel: same loop, less overhead
        offsets = rng.randint(-delta, delta, size=(len(positions), 2)).tolist()
        for (h, w), (dx, dy) in zip(positions, offsets, strict=True):
            h_prime, w_prime = h + dy, w + dx
            x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1)


def _disk(radius, alias_blur):
    if radius <= 8:
        coords, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        coords, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _defocus_blur(x, c, rng):
    kernel = _disk(*c)
    channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
    return np.clip(np.array(channels).transpose((1, 2, 0)), 0, 1)


def _shift(image, dx, dy):
    if dx < 0:
        shifted = np.roll(image, shift=image.shape[1] + dx, axis=1)
        shifted[:, dx:] = shifted[:, dx - 1 : dx]
    elif dx > 0:
        shifted = np.roll(image, shift=dx, axis=1)
        shifted[:, :dx] = shifted[:, dx : dx + 1]
    else:
        shifted = image
    if dy < 0:
        shifted = np.roll(shifted, shift=image.shape[0] + dy, axis=0)
        shifted[dy:, :] = shifted[dy - 1 : dy, :]
    elif dy > 0:
        shifted = np.roll(shifted, shift=dy, axis=0)
        shifted[:dy, :] = shifted[dy : dy + 1, :]
    return shifted


def _numpy_motion_blur(x, radius, sigma, angle):
    width = 2 * math.ceil(radius) + 1
    kernel = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(*point)
    blurred = np.zeros_like(x, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        blurred = blurred + kernel[i] * _shift(x, dx, dy)
    return blurred


def _motion_blur(x, c, rng):
    return np.clip(_numpy_motion_blur(x, c[0], c[1], rng.uniform(-45, 45)), 0, 1)


def _clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scipy_zoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


def _zoom_blur(x, c, rng):
    factors = np.arange(*c)
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in factors:
        out += _clipped_zoom(x, zoom_factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1)


def _snow(x, c, rng):
    x = x.astype(np.float32)
    size = x.shape[0]
    snow_layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    snow_layer = _clipped_zoom(snow_layer[..., np.newaxis], c[2])
    snow_layer[snow_layer < c[3]] = 0
    snow_layer = np.uint8(np.clip(snow_layer.squeeze(), 0, 1) * 255) / 255.0
    snow_layer = _numpy_motion_blur(snow_layer, c[4], c[5], rng.uniform(-135, -45))
    snow_layer = (np.round(snow_layer * 255) / 255.0)[..., np.newaxis]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(size, size, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + snow_layer + np.rot90(snow_layer, k=2), 0, 1)


def _frost(x, c, rng):
    size = x.shape[0]
    textures = frost_textures(size, c[2])
    frost = textures[rng.randint(len(textures))]
    x_start = rng.randint(0, frost.shape[0] - size)
    y_start = rng.randint(0, frost.shape[1] - size)
    frost = frost[x_start : x_start + size, y_start : y_start + size]
    return np.clip(c[0] * x + c[1] * frost, 0, 1)


def _plasma_fractal(mapsize, wibbledecay, rng):
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(squareaccum)
        drgrid = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=0) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def _fog(x, c, rng):
    size = x.shape[0]
    max_val = x.max()
    x = x + c[0] * _plasma_fractal(c[2], c[1], rng)[:size, :size][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1)


def _brightness(x, c, rng):
    x = skimage.color.rgb2hsv(x)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1)


def _saturate(x, c, rng):
    x = skimage.color.rgb2hsv(x)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1)


def _contrast(x, c, rng):
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def _elastic_transform(x, c, rng):
    image = x.astype(np.float32)
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32(
        [
            center_square + square_size,
            [center_square[0] + square_size, center_square[1] - square_size],
            center_square - square_size,
        ]
    )
    pts2 = pts1 + rng.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, matrix, shape_size[::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = gaussian(rng.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]
    dy = gaussian(rng.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]
    dx, dy = dx.astype(np.float32)[..., np.newaxis], dy.astype(np.float32)[..., np.newaxis]
    xx, yy, zz = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = (
        np.reshape(yy + dy, (-1, 1)),
        np.reshape(xx + dx, (-1, 1)),
        np.reshape(zz, (-1, 1)),
    )
    out = map_coordinates(image, indices, order=1, mode="reflect").reshape(shape)
    return np.clip(out, 0, 1)


def _pixelate(x, c, rng):
    size = x.shape[0]
    image = Image.fromarray(np.uint8(np.round(x * 255)))
    image = image.resize((int(size * c), int(size * c)), Image.BOX)
    return np.asarray(image.resize((size, size), Image.BOX)) / 255.0


def _jpeg_compression(x, c, rng):
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.round(x * 255))).save(buffer, "JPEG", quality=c)
    return np.asarray(Image.open(buffer)) / 255.0


def _spatter(x, c, rng):
    x = x.astype(np.float32)
    liquid_layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    liquid_layer = gaussian(liquid_layer, sigma=c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
        liquid_layer = (np.clip(liquid_layer, 0, 1) * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(liquid_layer, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
        dist = cv2.filter2D(dist, cv2.CV_8U, ker)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = cv2.cvtColor(liquid_layer * dist, cv2.COLOR_GRAY2BGRA)
        m /= np.maximum(np.max(m, axis=(0, 1)), 1e-12)
        m *= c[4]
        ones = np.ones_like(m[..., :1])
        color = np.concatenate((175 / 255.0 * ones, 238 / 255.0 * ones, 238 / 255.0 * ones), axis=2)
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR)
    m = np.where(liquid_layer > c[3], 1, 0)
    m = gaussian(m.astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    ones = np.ones_like(x[..., :1])
    color = np.concatenate((63 / 255.0 * ones, 42 / 255.0 * ones, 20 / 255.0 * ones), axis=2)
    color *= m[..., np.newaxis]
    x *= 1 - m[..., np.newaxis]
    return np.clip(x + color, 0, 1)


REFERENCES: dict[str, Callable[[np.ndarray, object, np.random.RandomState], np.ndarray]] = {
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


# --------------------------------------------------------------------------------------------


def _time_torch(images: torch.Tensor, name: str, scale: str, seed: int) -> float:
    start = time.perf_counter()
    for severity in range(1, 6):
        corrupt(images, name, severity, scale=scale, seed=seed + severity, output="float")
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _time_reference(images: np.ndarray, name: str, scale: str, seed: int) -> float:
    reference = REFERENCES[name]
    rng = np.random.RandomState(seed)
    start = time.perf_counter()
    for severity in range(1, 6):
        params = SEVERITY_PARAMS[name][scale][severity - 1]
        for image in images:
            reference(image / 255.0, params, rng)
    return time.perf_counter() - start


def run(
    num_images: int = 1000,
    *,
    image_size: int | None = None,
    scale: str = "cifar",
    names: Sequence[str] = ALL_CORRUPTIONS,
    device: str = "cpu",
    seed: int = 0,
    repeats: int = 3,
    verbose: bool = True,
) -> list[dict]:
    """Time all 5 severities of each corruption on ``num_images`` random RGB images, batched
    torch vs the per-image NumPy reference, and print a markdown table (``verbose``).

    ``image_size`` defaults to 32 (``scale="cifar"``) or 224. Returns one dict per corruption
    (``name``, ``implementation``, ``torch_s``, ``numpy_s``, ``speedup``).
    """
    unknown = [name for name in names if name not in ALL_CORRUPTIONS]
    if unknown:
        raise ValueError(
            f"unknown corruptions {unknown}; expected some of: {', '.join(ALL_CORRUPTIONS)}"
        )
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    size = image_size or (32 if scale == "cifar" else 224)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
    # contiguous NCHW, as a DataLoader delivers batches
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().float().div(255).to(device)
    rows = []
    for name in names:
        # warm-up (frost textures, kernel caches, oneDNN primitives) outside the timings
        corrupt(images[:2], name, 1, scale=scale, output="float")
        _time_reference(pixels[:1], name, scale, seed)
        # interleaved rounds, median of each side: load on a shared machine hits both alike
        rounds = [
            (_time_torch(images, name, scale, seed), _time_reference(pixels, name, scale, seed))
            for _ in range(repeats)
        ]
        torch_s = statistics.median(t for t, _ in rounds)
        numpy_s = statistics.median(n for _, n in rounds)
        row = {
            "name": name,
            "implementation": _implementation(name, images),
            "torch_s": torch_s,
            "numpy_s": numpy_s,
            "speedup": numpy_s / torch_s,
        }
        rows.append(row)
        if verbose:
            print(f"{name}: torch {torch_s:.3f} s, NumPy {numpy_s:.3f} s", flush=True)
    if verbose:
        print()
        print(format_table(rows, num_images=num_images, size=size, scale=scale, device=device))
    return rows


def format_table(rows: list[dict], *, num_images: int, size: int, scale: str, device: str) -> str:
    """Markdown table of ``run``'s rows with a total line."""
    lines = [
        f"{num_images} random {size}x{size} RGB images, severities 1-5, {scale} parameters, "
        f"torch on {device} ({torch.get_num_threads()} threads) vs per-image NumPy reference",
        "",
        "| corruption | implementation | torch (s) | NumPy per image (s) | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['implementation']} | {row['torch_s']:.3f} | "
            f"{row['numpy_s']:.3f} | {row['speedup']:.1f}x |"
        )
    torch_total = sum(row["torch_s"] for row in rows)
    numpy_total = sum(row["numpy_s"] for row in rows)
    lines.append(
        f"| **total** | | {torch_total:.3f} | {numpy_total:.3f} | "
        f"{numpy_total / torch_total:.1f}x |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument(
        "--image-size", type=int, default=None, help="default: 32 cifar, 224 imagenet"
    )
    parser.add_argument("--scale", choices=("cifar", "imagenet"), default="cifar")
    parser.add_argument("--corruptions", nargs="+", default=list(ALL_CORRUPTIONS), metavar="NAME")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds; the median is reported"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(
        args.num_images,
        image_size=args.image_size,
        scale=args.scale,
        names=args.corruptions,
        device=args.device,
        seed=args.seed,
        repeats=args.repeats,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
