"""Per-image NumPy references of the corruptions, timed by :mod:`.corruptions`.

One function per corruption, named like it: ``f(image HxWx3 float64 in [0, 1], params,
RandomState) -> image``. They follow Hendrycks' ``make_cifar_c.py`` / ``make_imagenet_c.py`` one
image at a time (NumPy, scikit-image, SciPy, OpenCV, Pillow), with the same parameters and
textures, except that ImageMagick's motion blur is the NumPy shift-and-add of
``imagecorruptions`` (Wand is not installed) and scikit-image's removed ``multichannel=True`` is
``channel_axis=-1``. Random draws come from NumPy's legacy ``RandomState`` samplers, as
``np.random.normal`` / ``np.random.poisson`` in the scripts and in ``imagecorruptions``; seeding
one makes the reference repeatable. Needs the ``bench`` extra (scikit-image).
"""

from __future__ import annotations

import io
import math
from typing import Any

import cv2
import numpy as np
import skimage.color
import skimage.util
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.filters import gaussian

from ..robustness.corruptions.frost import frost_textures


def gaussian_noise(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def shot_noise(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def impulse_noise(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(skimage.util.random_noise(x, mode="s&p", amount=c, rng=rng.randint(2**31)), 0, 1)


def speckle_noise(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1)


def gaussian_blur(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(gaussian(x, sigma=c, channel_axis=-1), 0, 1)


def glass_blur(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
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


def defocus_blur(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
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


def motion_blur(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(_numpy_motion_blur(x, c[0], c[1], rng.uniform(-45, 45)), 0, 1)


def _clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scipy_zoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


def zoom_blur(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    factors = np.arange(*c)
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in factors:
        out += _clipped_zoom(x, zoom_factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1)


def snow(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
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


def frost(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
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


def fog(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    size = x.shape[0]
    max_val = x.max()
    x = x + c[0] * _plasma_fractal(c[2], c[1], rng)[:size, :size][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1)


def brightness(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    x = skimage.color.rgb2hsv(x)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1)


def saturate(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    x = skimage.color.rgb2hsv(x)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1)


def contrast(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def elastic_transform(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
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


def pixelate(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    size = x.shape[0]
    image = Image.fromarray(np.uint8(np.round(x * 255)))
    image = image.resize((int(size * c), int(size * c)), Image.BOX)
    return np.asarray(image.resize((size, size), Image.BOX)) / 255.0


def jpeg_compression(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.round(x * 255))).save(buffer, "JPEG", quality=c)
    return np.asarray(Image.open(buffer)) / 255.0


def spatter(x: np.ndarray, c: Any, rng: np.random.RandomState) -> np.ndarray:
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
