"""Hendrycks' corruptions one image at a time, written from the published scripts: the references
the tests check :func:`~timm_pushpull.robustness.corruptions.corrupt` against, and the NumPy side
of the corruption speed benchmark (:mod:`.corruptions`).

hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` and ``make_imagenet_c.py``, with
their libraries (NumPy, SciPy, scikit-image, OpenCV, Pillow, and ImageMagick through Wand for the
motion blurs). One function per corruption, named like it::

    f(x, c, *draws) -> image

``x`` is an ``[H, W, 3]`` uint8 image, ``c`` the corruption's parameters at one severity in the
scripts' form, and ``draws`` the values the script takes from ``np.random``, in its order: given
explicitly, so that a test can feed the draws of our generator and the benchmark those of NumPy's
``RandomState``. The result is float64 in 0..255, before the scripts store it (``np.uint8``, or a
JPEG for ImageNet-C). Departures from the scripts: scikit-image's removed ``multichannel=True`` is
``channel_axis=-1`` (:func:`gaussian_rgb`), impulse noise reads its two choices off one uniform,
and a dry water layer is not divided by zero (:func:`add_water`).

Needs the ``bench`` extra (scikit-image); :func:`magick_motion_blur` needs Wand and ImageMagick
(the test extra), and the benchmark, which has neither, blurs with :func:`numpy_motion_blur`.
"""

from __future__ import annotations

import ctypes
import functools
import io
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import skimage.color
import skimage.filters
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom

# (image [H, W] or [H, W, 3] uint8, radius, sigma, angle in degrees) -> the blurred image, RGB
MotionBlur = Callable[[np.ndarray, float, float, float], np.ndarray]


# --------------------------------------------------------------------------------------------
# the scripts' helpers


def gaussian_rgb(x: np.ndarray, sigma: float, **kwargs: Any) -> np.ndarray:
    """The scripts' ``gaussian(..., multichannel=True)``, spelt ``channel_axis=-1`` in
    scikit-image >= 0.19."""
    return skimage.filters.gaussian(x, sigma=sigma, channel_axis=-1, **kwargs)


def disk(radius: float, alias_blur: float = 0.1, dtype: type = np.float32) -> np.ndarray:
    """The defocus kernel: an aliased disk, normalised, then blurred."""
    if radius <= 8:
        L, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        L, ksize = np.arange(-radius, radius + 1), (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased_disk = np.array((X**2 + Y**2) <= radius**2, dtype=dtype)
    aliased_disk /= np.sum(aliased_disk)
    return cv2.GaussianBlur(aliased_disk, ksize=ksize, sigmaX=alias_blur)


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """Zoom into the centre of a square ``[H, W, C]`` image, keeping its size."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scipy_zoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


@functools.cache
def _magick_motion_blur_image() -> Callable:
    # the scripts' MotionImage: ImageMagick's MagickMotionBlurImage through Wand
    from wand.api import library

    library.MagickMotionBlurImage.argtypes = (
        ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double,
    )  # fmt: skip
    return library.MagickMotionBlurImage


def magick_motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur of a uint8 image, as the scripts run it (a PNG through Wand)."""
    from wand.image import Image as WandImage

    blur = _magick_motion_blur_image()
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    with WandImage(blob=png.getvalue()) as wand_image:
        blur(wand_image.wand, radius, sigma, angle)
        blob = wand_image.make_blob()
    blurred = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    return blurred[..., [2, 1, 0]] if blurred.ndim == 3 else blurred  # BGR to RGB


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
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


def numpy_motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """``imagecorruptions``' NumPy shift-and-add stand-in for ImageMagick's motion blur (for
    machines without Wand; close to it, not equal)."""
    x = image.astype(np.float64)
    width = 2 * math.ceil(radius) + 1
    kernel = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(*point)
    blurred = np.zeros_like(x)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        blurred = blurred + kernel[i] * _shift(x, dx, dy)
    return blurred


def plasma_fractal(mapsize: int, wibbledecay: float, uniforms: Iterator[np.ndarray]) -> np.ndarray:
    """The scripts' diamond-square map; ``uniforms`` yields the [0, 1) draws of each
    ``np.random.uniform(-wibble, wibble, shape)`` in turn."""
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * (wibble * (2 * next(uniforms) - 1))

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = (
            wibbledmean(squareaccum)
        )

    def filldiamonds():
        drgrid = maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=0) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:mapsize:stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[stepsize // 2 : mapsize : stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def fog_mapsize(size: int) -> int:
    """The side of the fog's plasma map for images of side ``size``: the scripts' 32 (CIFAR) or
    256 (ImageNet)."""
    return 32 if size == 32 else 256


def _dry_guard(peak: np.ndarray) -> np.ndarray:
    """The one departure from the scripts: they divide the water mask by its peak, 0 / 0 = NaN
    once no water is left (the -P drops run off the image), and cast the NaN to a garbage byte;
    here, as in ours, a dry mask stays 0."""
    return np.where(peak > 0, peak, 1.0)


def add_water(x: np.ndarray, liquid_layer: np.ndarray, strength: float) -> np.ndarray:
    """The scripts' water drops on a BGRA float image ``x``, in [0, 1] (same code in the -C and
    -P scripts)."""
    liquid_layer = (liquid_layer * 255).astype(np.uint8)
    dist = 255 - cv2.Canny(liquid_layer, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.filter2D(dist, cv2.CV_8U, ker)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = cv2.cvtColor(liquid_layer * dist, cv2.COLOR_GRAY2BGRA)
    m /= _dry_guard(np.max(m, axis=(0, 1)))
    m *= strength
    color = np.concatenate((175 / 255.0 * np.ones_like(m[..., :1]),
                            238 / 255.0 * np.ones_like(m[..., :1]),
                            238 / 255.0 * np.ones_like(m[..., :1])), axis=2)  # fmt: skip
    color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR)


# --------------------------------------------------------------------------------------------
# noise


def gaussian_noise(x: np.ndarray, c: float, normal: np.ndarray) -> np.ndarray:
    """``normal``: standard normals of the image's shape (``np.random.normal(scale=c)`` / c)."""
    return np.clip(x / 255.0 + c * normal, 0, 1) * 255


def shot_noise(x: np.ndarray, c: float, counts: np.ndarray) -> np.ndarray:
    """``counts``: ``np.random.poisson(x / 255 * c)``."""
    return np.clip(counts / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, c: float, uniform: np.ndarray) -> np.ndarray:
    """``sk.util.random_noise(mode='s&p', amount=c)``: a value flips with probability c, to salt
    (1) or pepper (0) with probability 1/2 each; scikit-image draws the two choices separately,
    this reads both off one ``uniform`` of the image's shape (flip when u < c, salt when u < c/2)."""
    x = x / 255.0
    x = np.where(uniform < c, (uniform < c / 2).astype(np.float64), x)
    return np.clip(x, 0, 1) * 255


def speckle_noise(x: np.ndarray, c: float, normal: np.ndarray) -> np.ndarray:
    """``normal``: standard normals of the image's shape."""
    x = x / 255.0
    return np.clip(x + x * c * normal, 0, 1) * 255


# --------------------------------------------------------------------------------------------
# blur


def gaussian_blur(x: np.ndarray, c: float) -> np.ndarray:
    return np.clip(gaussian_rgb(np.array(x) / 255.0, c), 0, 1) * 255


def glass_blur(x: np.ndarray, c: tuple, swaps: Sequence[tuple[int, int]]) -> np.ndarray:
    """``swaps``: the ``(dy, dx)`` of each ``np.random.randint(-c[1], c[1], size=(2,))`` of the
    pixel loop, in its order."""
    size = x.shape[0]
    x = np.uint8(gaussian_rgb(np.array(x) / 255.0, c[0]) * 255)
    swaps = iter(swaps)
    for _ in range(c[2]):
        for h in range(size - c[1], c[1], -1):
            for w in range(size - c[1], c[1], -1):
                dy, dx = next(swaps)
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian_rgb(x / 255.0, c[0]), 0, 1) * 255


def defocus_blur(x: np.ndarray, c: tuple) -> np.ndarray:
    x = np.array(x) / 255.0
    kernel = disk(radius=c[0], alias_blur=c[1])
    channels = np.array([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)])
    return np.clip(channels.transpose((1, 2, 0)), 0, 1) * 255


def motion_blur(
    x: np.ndarray, c: tuple, angle: float, blur: MotionBlur = magick_motion_blur
) -> np.ndarray:
    """``angle``: ``np.random.uniform(-45, 45)``."""
    return np.clip(blur(x, c[0], c[1], angle), 0, 255).astype(np.float64)


def zoom_blur(x: np.ndarray, c: Sequence[float]) -> np.ndarray:
    """``c``: the zoom factors (the scripts' ``np.arange``)."""
    x = (np.array(x) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in c:
        out += clipped_zoom(x, zoom_factor)
    return np.clip((x + out) / (len(c) + 1), 0, 1) * 255


# --------------------------------------------------------------------------------------------
# weather


def snow(
    x: np.ndarray, c: tuple, normal: np.ndarray, angle: float, blur: MotionBlur = magick_motion_blur
) -> np.ndarray:
    """``normal``: standard normals ``[H, W]`` of the snow layer; ``angle``:
    ``np.random.uniform(-135, -45)``. ImageMagick truncates the blurred flakes to 8 bits."""
    size = x.shape[0]
    x = np.array(x, dtype=np.float32) / 255.0
    snow_layer = c[0] + c[1] * normal  # np.random.normal(size, loc=c[0], scale=c[1])
    snow_layer = clipped_zoom(snow_layer[..., np.newaxis], c[2])
    snow_layer[snow_layer < c[3]] = 0
    snow_layer = (np.clip(snow_layer.squeeze(), 0, 1) * 255).astype(np.uint8)
    snow_layer = blur(snow_layer, c[4], c[5], angle) / 255.0
    snow_layer = snow_layer[..., np.newaxis]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(size, size, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + snow_layer + np.rot90(snow_layer, k=2), 0, 1) * 255


def frost(x: np.ndarray, c: tuple, photo: np.ndarray, x_start: int, y_start: int) -> np.ndarray:
    """``photo``: the frost photo ``np.random.randint(5)`` picked (RGB, 0..255, shrunk as the
    script does); ``x_start`` / ``y_start``: the crop's corner, the two
    ``np.random.randint(0, side - size)``."""
    size = x.shape[0]
    photo = photo[x_start : x_start + size, y_start : y_start + size]
    return np.clip(c[0] * np.array(x) + c[1] * photo, 0, 255)


def fog(x: np.ndarray, c: tuple, uniforms: Sequence[np.ndarray]) -> np.ndarray:
    """``uniforms``: the [0, 1) draws of the plasma map (:func:`plasma_fractal`), whose side is
    :func:`fog_mapsize`."""
    size = x.shape[0]
    x = np.array(x) / 255.0
    max_val = x.max()
    x += c[0] * plasma_fractal(fog_mapsize(size), c[1], iter(uniforms))[:size, :size][..., None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def spatter(x: np.ndarray, c: tuple, normal: np.ndarray) -> np.ndarray:
    """``normal``: standard normals ``[H, W]`` of the liquid layer. Water values above 1 wrap in
    the script's uint8 cast, as in the released data (CIFAR severity 3 has them)."""
    x = np.array(x, dtype=np.float32) / 255.0
    liquid_layer = c[0] + c[1] * normal  # np.random.normal(size, loc=c[0], scale=c[1])
    liquid_layer = skimage.filters.gaussian(liquid_layer, sigma=c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return add_water(x, liquid_layer, c[4]) * 255
    m = np.where(liquid_layer > c[3], 1, 0)
    m = skimage.filters.gaussian(m.astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    color = np.concatenate((63 / 255.0 * np.ones_like(x[..., :1]),
                            42 / 255.0 * np.ones_like(x[..., :1]),
                            20 / 255.0 * np.ones_like(x[..., :1])), axis=2)  # fmt: skip
    color *= m[..., np.newaxis]
    x *= 1 - m[..., np.newaxis]
    return np.clip(x + color, 0, 1) * 255


# --------------------------------------------------------------------------------------------
# digital


def brightness(x: np.ndarray, c: float) -> np.ndarray:
    x = skimage.color.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255


def contrast(x: np.ndarray, c: float) -> np.ndarray:
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def saturate(x: np.ndarray, c: tuple) -> np.ndarray:
    x = skimage.color.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255


def jpeg_compression(x: np.ndarray, c: int) -> np.ndarray:
    output = io.BytesIO()
    Image.fromarray(x).save(output, "JPEG", quality=c)
    return np.asarray(Image.open(output)).astype(np.float64)


def pixelate(x: np.ndarray, c: float) -> np.ndarray:
    size = x.shape[0]
    image = Image.fromarray(x)
    image = image.resize((int(size * c), int(size * c)), Image.BOX)
    return np.asarray(image.resize((size, size), Image.BOX)).astype(np.float64)


def elastic_transform(
    image: np.ndarray, c: tuple, jitter: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """``jitter``: ``np.random.uniform(-c[2], c[2], size=(3, 2))`` (the affine's corners);
    ``noise``: the two ``np.random.uniform(-1, 1, size=(H, W))`` of the displacement field."""
    image = np.array(image, dtype=np.float32) / 255.0
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32([center_square + square_size,
                       [center_square[0] + square_size, center_square[1] - square_size],
                       center_square - square_size])  # fmt: skip
    pts2 = pts1 + jitter.astype(np.float32)
    M = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, M, shape_size[::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (skimage.filters.gaussian(noise[0], c[1], mode="reflect", truncate=3) * c[0]).astype(
        np.float32
    )
    dy = (skimage.filters.gaussian(noise[1], c[1], mode="reflect", truncate=3) * c[0]).astype(
        np.float32
    )
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    warped = map_coordinates(image, indices, order=1, mode="reflect").reshape(shape)
    return np.clip(warped, 0, 1) * 255
