"""Corruptions against reference functions written from the published scripts.

hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` ("cifar") and ``make_imagenet_c.py``
("imagenet"), with their parameters written out again here, on natural photos (scikit-image's
samples) at 32 and 224 px. Both sides get the same random draws: each ``draws_*`` helper takes
from a generator seeded like :func:`corrupt` the values the torch code draws, in its order, and
the reference consumes them where the script calls ``np.random``. The references use the
scripts' libraries (NumPy, SciPy, scikit-image, OpenCV, Pillow and ImageMagick through Wand).

Frost, which needs the photos, is checked the same way in test_corruptions_frost.py. The
CIFAR-10-P sequences (``ImageNet-P/create_p/make_cifar_p.py``) are checked at the end.

Tolerance: one 8-bit level, unless a test's docstring says why it needs more.
"""

import ctypes
import io

import cv2
import numpy as np
import pytest
import scipy.stats
import skimage.color
import skimage.data
import skimage.filters
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from wand.api import library as wandlibrary
from wand.image import Image as WandImage

from timm_pushpull.robustness.corruptions import corrupt
from timm_pushpull.robustness.corruptions.random import random_normal, random_uniform
from timm_pushpull.robustness.perturbations import perturbation_sequence

# The scripts' MotionImage: ImageMagick's MagickMotionBlurImage through Wand.
wandlibrary.MagickMotionBlurImage.argtypes = (
    ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double,
)  # fmt: skip

SIZES = {"cifar": 32, "imagenet": 224}


def natural_images(size: int) -> np.ndarray:
    """Three photos, ``[3, size, size, 3]`` uint8."""
    photos = (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea())
    return np.stack([cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
                     for photo in photos])  # fmt: skip


def ours(
    images: np.ndarray, name: str, severity: int, scale: str, seed: int, output="float", **options
):
    """corrupt() on uint8 images, as ``[B, H, W, C]`` floats in 0..255; by default before the
    8-bit / JPEG storage, which the scripts do after the corruption."""
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    out = corrupt(batch, name, severity, scale=scale, seed=seed, output=output, **options)
    return out.permute(0, 2, 3, 1).double().numpy() * 255


def assert_levels(got: np.ndarray, expected: np.ndarray, levels: float = 1.0, share: float = 1.0):
    """``got`` within ``levels`` 8-bit levels of ``expected`` on at least ``share`` of the
    values (all of them by default)."""
    close = np.abs(got - expected) <= levels + 5e-3  # float32 arithmetic
    worst = np.abs(got - expected).max()
    assert close.mean() >= share, f"{close.mean():.5f} within {levels} levels; worst {worst:.2f}"


# --------------------------------------------------------------------------------------------
# the scripts' helpers


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scizoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


def wand_motion_blur(png: bytes, radius: float, sigma: float, angle: float) -> np.ndarray:
    with WandImage(blob=png) as image:
        wandlibrary.MagickMotionBlurImage(image.wand, radius, sigma, angle)
        blob = image.make_blob()
    return cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)


def png_bytes(image: Image.Image) -> bytes:
    output = io.BytesIO()
    image.save(output, format="PNG")
    return output.getvalue()


# --------------------------------------------------------------------------------------------
# snow


SNOW = {
    "cifar": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
              (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
              (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "imagenet": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                 (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                 (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
}  # fmt: skip


def draws_snow(g: torch.Generator, batch: int, size: int):
    normal = torch.randn(batch, 1, size, size, generator=g)[:, 0].double().numpy()
    angles = torch.empty(batch).uniform_(-135, -45, generator=g).double().numpy()
    return list(zip(normal, angles, strict=True))


def reference_snow(x: np.ndarray, c: tuple, normal: np.ndarray, angle: float) -> np.ndarray:
    size = x.shape[0]
    x = np.array(x, dtype=np.float32) / 255.0
    snow_layer = c[0] + c[1] * normal  # np.random.normal(size, loc=c[0], scale=c[1])
    snow_layer = clipped_zoom(snow_layer[..., np.newaxis], c[2])
    snow_layer[snow_layer < c[3]] = 0
    snow_layer = Image.fromarray((np.clip(snow_layer.squeeze(), 0, 1) * 255).astype(np.uint8), "L")
    snow_layer = wand_motion_blur(png_bytes(snow_layer), c[4], c[5], angle) / 255.0
    snow_layer = snow_layer[..., np.newaxis]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(size, size, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + snow_layer + np.rot90(snow_layer, k=2), 0, 1) * 255


# --------------------------------------------------------------------------------------------
# pixelate


PIXELATE = {"cifar": [0.95, 0.9, 0.85, 0.75, 0.65], "imagenet": [0.6, 0.5, 0.4, 0.3, 0.25]}


def reference_pixelate(x: np.ndarray, c: float) -> np.ndarray:
    size = x.shape[0]
    image = Image.fromarray(x)
    image = image.resize((int(size * c), int(size * c)), Image.BOX)
    return np.asarray(image.resize((size, size), Image.BOX)).astype(np.float64)


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
def test_pixelate_is_pillow_in_8_bits(scale):
    """Pillow's fixed-point 8-bit passes are reproduced exactly."""
    images = natural_images(SIZES[scale])
    for severity in range(1, 6):
        got = ours(images, "pixelate", severity, scale, 0)
        expected = np.stack([reference_pixelate(image, PIXELATE[scale][severity - 1])
                             for image in images])  # fmt: skip
        assert_levels(got, expected, levels=0.0)


# --------------------------------------------------------------------------------------------
# spatter


SPATTER = {
    "cifar": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
              (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
              (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
    "imagenet": [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
                 (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
                 (0.67, 0.4, 1, 0.65, 1.5, 1)],
}  # fmt: skip


def draws_spatter(g: torch.Generator, batch: int, size: int):
    return list(torch.randn(batch, 1, size, size, generator=g)[:, 0].double().numpy())


def dry_guard(peak: np.ndarray) -> np.ndarray:
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
    m /= dry_guard(np.max(m, axis=(0, 1)))
    m *= strength
    color = np.concatenate((175 / 255.0 * np.ones_like(m[..., :1]),
                            238 / 255.0 * np.ones_like(m[..., :1]),
                            238 / 255.0 * np.ones_like(m[..., :1])), axis=2)  # fmt: skip
    color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR)


def reference_spatter(x: np.ndarray, c: tuple, normal: np.ndarray) -> np.ndarray:
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


def test_spatter_wraps_like_the_released_data_unless_clipped():
    """CIFAR severity 3 has water values above 1: the script's uint8 cast wraps them; ``clip``
    differs from the reference there."""
    images = natural_images(32)
    seed = 5
    draws = draws_spatter(torch.Generator().manual_seed(seed), len(images), 32)
    expected = np.stack([reference_spatter(image, SPATTER["cifar"][2], draw)
                         for image, draw in zip(images, draws, strict=True)])  # fmt: skip
    wrapped = ours(images, "spatter", 3, "cifar", seed)
    clipped = ours(images, "spatter", 3, "cifar", seed, spatter="clip")
    assert np.abs(wrapped - expected).mean() < np.abs(clipped - expected).mean() / 4


# --------------------------------------------------------------------------------------------
# storage of the results, as the released data sets


CONTRAST = {"cifar": [0.75, 0.5, 0.4, 0.3, 0.15], "imagenet": [0.4, 0.3, 0.2, 0.1, 0.05]}


def reference_contrast(x: np.ndarray, c: float) -> np.ndarray:
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def reference_store(corrupted: np.ndarray, scale: str) -> np.ndarray:
    """make_cifar_c.py: ``np.uint8(corruption(img))`` into the ``.npy``; make_imagenet_c.py:
    ``Image.fromarray(np.uint8(img)).save(path, quality=85, optimize=True)``, read back."""
    if scale == "cifar":
        return np.uint8(corrupted).astype(np.float64)
    output = io.BytesIO()
    Image.fromarray(np.uint8(corrupted)).save(output, format="JPEG", quality=85, optimize=True)
    return np.asarray(Image.open(output)).astype(np.float64)


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
def test_default_output_is_stored_like_the_released_data(scale):
    """Truncation to 8 bits (and JPEG q85 for ImageNet): the same bytes."""
    images = natural_images(SIZES[scale])
    for severity in (1, 5):
        got = ours(images, "contrast", severity, scale, 0, output="released")
        expected = np.stack([reference_store(reference_contrast(image, CONTRAST[scale][severity - 1]),
                                             scale) for image in images])  # fmt: skip
        assert_levels(got, expected, levels=0.0)


class _RecordingClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return torch.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], 1)


@pytest.mark.parametrize("output", ["released", "float"])
def test_evaluate_feeds_and_records_stored_corruptions(output):
    from timm_pushpull.robustness.evaluate import evaluate_model

    model = _RecordingClassifier()
    images = torch.from_numpy(natural_images(32)).permute(0, 3, 1, 2).float() / 255
    kwargs = {} if output == "released" else {"corruption_output": output}  # the default: released
    results = evaluate_model(model, images, torch.tensor([0, 1, 0]), corruptions=["contrast"],
                             severities=[2], progress=False, mean=[0.0] * 3, std=[1.0] * 3,
                             **kwargs)  # fmt: skip
    assert results["settings"]["corruption_output"] == output
    corrupted = model.inputs[-1] * 255
    on_grid = torch.allclose(corrupted, corrupted.round(), atol=1e-3)
    assert on_grid is (output == "released")


# --------------------------------------------------------------------------------------------
# CIFAR-10-P sequences (ImageNet-P/create_p/make_cifar_p.py); every frame there is stored as uint8


def sequence(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """perturbation_sequence() on uint8 images, as ``[B, T, H, W, C]`` floats in 0..255."""
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    frames = perturbation_sequence(batch, name, seed=seed)
    return frames.permute(0, 1, 3, 4, 2).double().numpy() * 255


def reference_affine(img: np.ndarray, angle=0.0, scale=1.0, shear=0.0) -> np.ndarray:
    """``trn.CenterCrop(32)(trn_F.affine(PILImage.fromarray(img), angle=..., translate=(0, 0),
    scale=..., shear=..., resample=PILImage.BILINEAR))`` (``resample`` is now ``interpolation``)."""
    out = TF.affine(Image.fromarray(img), angle=angle, translate=[0, 0], scale=scale, shear=shear,
                    interpolation=TF.InterpolationMode.BILINEAR)  # fmt: skip
    return np.array(TF.center_crop(out, [img.shape[0], img.shape[1]])).astype(np.float64)


P_AFFINE = {
    "rotate": lambda img, i: reference_affine(img, angle=i - 15),
    "scale": lambda img, i: reference_affine(img, scale=(i * 2 + 70) / 100.0),
    "shear": lambda img, i: reference_affine(img, shear=i - 15),
}


@pytest.mark.parametrize("name", sorted(P_AFFINE))
def test_cifar_p_affine_cuts_off_like_pillow(name):
    """Pillow's bilinear 8-bit transform, zero outside the source with a sharp edge."""
    images = natural_images(32)
    got = sequence(images, name)
    expected = np.stack([[P_AFFINE[name](image, i) for i in range(31)] for image in images])
    assert_levels(got, expected)


def test_cifar_p_zoom_blur():
    """Running mean of PIL zooms 1.004 .. 1.12, each frame through ``ToPILImage``. Two levels: the
    script rounds every zoomed image to 8 bits (up to half a level) and truncates the mean (up
    to one); we keep floats (measured worst 1.51)."""
    images = natural_images(32)
    got = sequence(images, "zoom_blur")
    for image, frames in zip(images, got, strict=True):
        total = image / 255.0
        for i in range(1, 31):
            total = total + reference_affine(image, scale=1 + 0.004 * i) / 255.0
            expected = np.floor(np.float32(total / (i + 1)) * 255)
            assert_levels(frames[i], expected, levels=2.0)
        assert_levels(frames[0], image.astype(np.float64), levels=0.0)


# --------------------------------------------------------------------------------------------
# the other corruptions


PARAMS = {
    "gaussian_noise": {"cifar": [0.04, 0.06, 0.08, 0.09, 0.10],
                       "imagenet": [0.08, 0.12, 0.18, 0.26, 0.38]},
    "shot_noise": {"cifar": [500, 250, 100, 75, 50], "imagenet": [60, 25, 12, 5, 3]},
    "impulse_noise": {"cifar": [0.01, 0.02, 0.03, 0.05, 0.07],
                      "imagenet": [0.03, 0.06, 0.09, 0.17, 0.27]},
    "speckle_noise": {"cifar": [0.06, 0.1, 0.12, 0.16, 0.2],
                      "imagenet": [0.15, 0.2, 0.35, 0.45, 0.6]},
    "gaussian_blur": {"cifar": [0.4, 0.6, 0.7, 0.8, 1], "imagenet": [1, 2, 3, 4, 6]},
    "glass_blur": {"cifar": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
                   "imagenet": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]},
    "defocus_blur": {"cifar": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
                     "imagenet": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]},
    "motion_blur": {"cifar": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
                    "imagenet": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]},
    "zoom_blur": {"cifar": [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01),
                            np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.01),
                            np.arange(1, 1.26, 0.01)],
                  "imagenet": [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                               np.arange(1, 1.21, 0.02), np.arange(1, 1.26, 0.02),
                               np.arange(1, 1.31, 0.03)]},
    "fog": {"cifar": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
            "imagenet": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)]},
    "brightness": {"cifar": [0.05, 0.1, 0.15, 0.2, 0.3], "imagenet": [0.1, 0.2, 0.3, 0.4, 0.5]},
    "contrast": CONTRAST,
    "snow": SNOW,
    "spatter": SPATTER,
    "saturate": {"cifar": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
                 "imagenet": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)]},
    "jpeg_compression": {"cifar": [80, 65, 58, 50, 40], "imagenet": [25, 18, 15, 10, 7]},
    "elastic_transform": {
        "cifar": [(32 * 0, 32 * 0, 32 * 0.08), (32 * 0.05, 32 * 0.2, 32 * 0.07),
                  (32 * 0.08, 32 * 0.06, 32 * 0.06), (32 * 0.1, 32 * 0.04, 32 * 0.05),
                  (32 * 0.1, 32 * 0.03, 32 * 0.03)],
        "imagenet": [(244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                     (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                     (244 * 0.12, 244 * 0.01, 244 * 0.02)],
    },
}  # fmt: skip


def gaussian_rgb(x: np.ndarray, sigma: float, **kwargs) -> np.ndarray:
    # the scripts' gaussian(..., multichannel=True), spelt channel_axis=-1 in scikit-image >= 0.19
    return skimage.filters.gaussian(x, sigma=sigma, channel_axis=-1, **kwargs)


def reference_gaussian_noise(x, c, normal):
    return np.clip(x / 255.0 + c * normal, 0, 1) * 255


def reference_shot_noise(x, c, uniform):
    # np.random.poisson(x * c), drawn by inverting the Poisson CDF at our uniforms
    return np.clip(scipy.stats.poisson.ppf(uniform, x / 255.0 * c) / c, 0, 1) * 255


def reference_impulse_noise(x, c, uniform):
    # sk.util.random_noise(mode='s&p', amount=c): a value flips with probability c, to salt (1)
    # or pepper (0) with probability 1/2 each; scikit-image draws the two choices separately, we
    # read both off one uniform (flip when u < c, salt when u < c / 2)
    x = x / 255.0
    x = np.where(uniform < c, (uniform < c / 2).astype(np.float64), x)
    return np.clip(x, 0, 1) * 255


def reference_speckle_noise(x, c, normal):
    x = x / 255.0
    return np.clip(x + x * c * normal, 0, 1) * 255


def reference_gaussian_blur(x, c):
    return np.clip(gaussian_rgb(np.array(x) / 255.0, c), 0, 1) * 255


def reference_glass_blur(x, c, swaps):
    size = x.shape[0]
    x = np.uint8(gaussian_rgb(np.array(x) / 255.0, c[0]) * 255)
    swaps = iter(swaps)
    for _ in range(c[2]):
        for h in range(size - c[1], c[1], -1):
            for w in range(size - c[1], c[1], -1):
                dy, dx = next(swaps)  # np.random.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian_rgb(x / 255.0, c[0]), 0, 1) * 255


def disk(radius, alias_blur=0.1, dtype=np.float32):
    if radius <= 8:
        L, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        L, ksize = np.arange(-radius, radius + 1), (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased_disk = np.array((X**2 + Y**2) <= radius**2, dtype=dtype)
    aliased_disk /= np.sum(aliased_disk)
    return cv2.GaussianBlur(aliased_disk, ksize=ksize, sigmaX=alias_blur)


def reference_defocus_blur(x, c):
    x = np.array(x) / 255.0
    kernel = disk(radius=c[0], alias_blur=c[1])
    channels = np.array([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)])
    return np.clip(channels.transpose((1, 2, 0)), 0, 1) * 255


def reference_motion_blur(x, c, angle):
    blurred = wand_motion_blur(png_bytes(Image.fromarray(x)), c[0], c[1], angle)
    return np.clip(blurred[..., [2, 1, 0]], 0, 255).astype(np.float64)  # BGR to RGB


def reference_zoom_blur(x, c):
    x = (np.array(x) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in c:
        out += clipped_zoom(x, zoom_factor)
    return np.clip((x + out) / (len(c) + 1), 0, 1) * 255


def plasma_fractal(mapsize, wibbledecay, uniforms):
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


def reference_fog(x, c, uniforms):
    size = x.shape[0]
    mapsize = 32 if size == 32 else 256
    x = np.array(x) / 255.0
    max_val = x.max()
    x += c[0] * plasma_fractal(mapsize, c[1], iter(uniforms))[:size, :size][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def reference_brightness(x, c):
    x = skimage.color.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255


def reference_saturate(x, c):
    x = skimage.color.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255


def reference_jpeg_compression(x, c):
    output = io.BytesIO()
    Image.fromarray(x).save(output, "JPEG", quality=c)
    return np.asarray(Image.open(output)).astype(np.float64)


def reference_elastic_transform(image, c, jitter, noise):
    image = np.array(image, dtype=np.float32) / 255.0
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32([center_square + square_size,
                       [center_square[0] + square_size, center_square[1] - square_size],
                       center_square - square_size])  # fmt: skip
    pts2 = pts1 + jitter.astype(np.float32)  # np.random.uniform(-c[2], c[2], size=pts1.shape)
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


# The draws of each corruption, in the order the torch code takes them from its generator:
# f(generator, like [B, C, H, W], params) -> one tuple of draws per image.


def _per_image(*arrays):
    return list(zip(*(a.double().numpy() for a in arrays), strict=True))


def _glass_swaps(g, like, c):
    batch, _, size, _ = like.shape
    delta, iterations = c[1], c[2]
    count = len(range(size - delta, delta, -1)) ** 2
    draws = [
        torch.randint((2 * delta) ** 2, (batch, count), generator=g) for _ in range(iterations)
    ]
    draws = torch.cat(draws, 1)
    swaps = torch.stack([draws // (2 * delta) - delta, draws % (2 * delta) - delta], -1)
    return [(swaps[b].tolist(),) for b in range(batch)]


def _fog_uniforms(g, like, c):
    batch, _, size, _ = like.shape
    mapsize = max(32 if size == 32 else 256, size)
    uniforms, step = [], mapsize
    while step >= 2:
        n = mapsize // step
        uniforms += [torch.rand(batch, n, n, generator=g) for _ in range(3)]
        step //= 2
    return [([u[b].double().numpy() for u in uniforms],) for b in range(batch)]


def _nhwc(t):
    return t.permute(0, 2, 3, 1)


DRAWS = {
    "gaussian_noise": lambda g, x, c: _per_image(_nhwc(random_normal(x, g))),
    "speckle_noise": lambda g, x, c: _per_image(_nhwc(random_normal(x, g))),
    "shot_noise": lambda g, x, c: _per_image(_nhwc(random_uniform(x.shape, 0, 1024, x, g) / 1024)),
    "impulse_noise": lambda g, x, c: _per_image(_nhwc(random_uniform(x.shape, 0, 1, x, g))),
    "glass_blur": _glass_swaps,
    "snow": lambda g, x, c: draws_snow(g, len(x), x.shape[-1]),
    "spatter": lambda g, x, c: [(draw,) for draw in draws_spatter(g, len(x), x.shape[-1])],
    "motion_blur": lambda g, x, c: _per_image(random_uniform((x.shape[0],), -45, 45, x, g)),
    "fog": _fog_uniforms,
    "elastic_transform": lambda g, x, c: _per_image(
        random_uniform((x.shape[0], 3, 2), -c[2], c[2], x, g),
        random_uniform((x.shape[0], 2, *x.shape[2:]), -1, 1, x, g),
    ),
}

REFERENCES = {
    "gaussian_noise": reference_gaussian_noise,
    "shot_noise": reference_shot_noise,
    "impulse_noise": reference_impulse_noise,
    "speckle_noise": reference_speckle_noise,
    "gaussian_blur": reference_gaussian_blur,
    "glass_blur": reference_glass_blur,
    "defocus_blur": reference_defocus_blur,
    "motion_blur": reference_motion_blur,
    "zoom_blur": reference_zoom_blur,
    "fog": reference_fog,
    "brightness": reference_brightness,
    "contrast": reference_contrast,
    "saturate": reference_saturate,
    "jpeg_compression": reference_jpeg_compression,
    "elastic_transform": reference_elastic_transform,
    # ImageMagick truncates the blurred flakes to 8 bits (rounding them was up to 2 levels off)
    "snow": reference_snow,
    # with the released data's 8-bit wrap of the water layer (CIFAR severity 3 needs it)
    "spatter": reference_spatter,
}

# Severities checked at ImageNet scale where the reference is slow at 224 px: glass blur's
# Python pixel loop, scipy's Poisson ppf (about 1 s a severity)
SLOW_AT_IMAGENET = {"glass_blur": (2,), "shot_noise": (1, 5)}
# Shares of values allowed beyond one level, and why:
SHARE = {
    # our table inversion compares float32 uniforms with a float32 CDF, scipy's ppf in float64: a
    # uniform within float32 resolution of a CDF step gets the neighbouring count (255 / c levels
    # off; 1 of 451,584 values at ImageNet scale, 2026-12-01)
    "shot_noise": 0.99999,
    # the water layer's threshold and 8-bit steps meet our float32 noise at slightly different
    # values on the odd pixel, which moves a Canny edge of the drops: 0.006 % of the values at
    # ImageNet scale (2026-12-01), none at CIFAR scale
    "spatter": 0.9999,
}


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_corruption_matches_the_reference(name, scale):
    size = SIZES[scale]
    images = natural_images(size)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    severities = SLOW_AT_IMAGENET.get(name, range(1, 6)) if scale == "imagenet" else range(1, 6)
    for severity in severities:
        seed = 30 + severity
        c = PARAMS[name][scale][severity - 1]
        got = ours(images, name, severity, scale, seed)
        draws = DRAWS.get(name, lambda g, x, c: [()] * len(images))
        draws = draws(torch.Generator().manual_seed(seed), batch, c)
        expected = np.stack([REFERENCES[name](image, c, *draw)
                             for image, draw in zip(images, draws, strict=True)])  # fmt: skip
        assert_levels(got, expected, share=SHARE.get(name, 1.0))


def p_noise_draws(g, batch, draw):
    """Frames 1..30: one draw each on the whole batch, as the torch code takes them."""
    frames = [draw(g, batch) for _ in range(30)]
    return [[frame[b].permute(1, 2, 0).double().numpy() for frame in frames]
            for b in range(len(batch))]  # fmt: skip


def reference_p_gaussian_noise(img, normals, std=0.02):
    x = img / 255.0
    return [img] + [np.uint8(np.clip(x + std * n, 0, 1) * 255) for n in normals]


def reference_p_speckle_noise(img, normals):
    x = np.array(img) / 255.0
    return [img] + [np.uint8(255 * np.clip(x + x * 0.05 * n, 0, 1)) for n in normals]


def reference_p_shot_noise(img, counts, photons=700):
    # np.random.poisson(z * photons): the counts torch drew for us
    return [img] + [np.uint8(255 * np.clip(k / photons, 0, 1)) for k in counts]


def reference_p_motion_blur(
    img, _, radius=6, sigma=1.8, angles=tuple((i - 20) * 9 for i in range(21))
):
    frames = []
    for angle in angles:
        z = wand_motion_blur(png_bytes(Image.fromarray(img)), radius, sigma, angle)
        frames.append(np.uint8(np.clip(z[..., [2, 1, 0]], 0, 255)))
    return frames


def reference_p_gaussian_blur(
    img, _, sigmas=tuple(0.3 + 0.015 * i for i in range(31)), truncate=7.0
):
    return [np.uint8(255 * gaussian_rgb(np.array(img, copy=True) / 255.0, sigma,
                                        truncate=truncate)) for sigma in sigmas]  # fmt: skip


def reference_p_snow(img, normal, zoom=2, radius=10, sigma=2):
    size = img.shape[0]
    x = np.array(img) / 255.0
    snow_layer = 0.05 + 0.3 * normal  # np.random.normal(size=(32, 32), loc=0.05, scale=0.3)
    snow_layer = clipped_zoom(snow_layer[..., np.newaxis], zoom)
    snow_layer[snow_layer < 0.5] = 0
    snow_layer = Image.fromarray((np.clip(snow_layer.squeeze(), 0, 1) * 255).astype(np.uint8), "L")
    png = png_bytes(snow_layer)
    frames = []
    for i in range(0, 31):
        layer = wand_motion_blur(png, radius, sigma, i * 4 - 150) / 255.0
        layer = layer[..., np.newaxis]
        grey = cv2.cvtColor(np.float32(x), cv2.COLOR_RGB2GRAY).reshape(size, size, 1)
        z = 0.85 * x + (1 - 0.85) * np.maximum(x, grey * 1.5 + 0.5)
        frames.append(np.uint8(np.clip(z + layer + np.rot90(layer, k=2), 0, 1) * 255))
    return frames


def reference_p_spatter(img, normal, c=(0.6, 0.265, 1.75, 0.7), drip=(0.2, 0.8)):
    x = cv2.cvtColor(np.array(img, dtype=np.float32) / 255.0, cv2.COLOR_BGR2BGRA)
    liquid_layer = c[0] + c[1] * normal  # np.random.normal(size, loc=c[0], scale=c[1])
    liquid_layer = skimage.filters.gaussian(liquid_layer, sigma=c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    frames = []
    for _ in range(0, 31):
        frames.append(np.uint8(add_water(x, liquid_layer, 0.6) * 255))
        liquid_layer = np.apply_along_axis(
            lambda mat: np.convolve(mat, np.array(drip), mode="same"), axis=0, arr=liquid_layer
        )
    return frames


def reference_p_brightness(img, _, deltas=tuple((i - 15) * 1.5 / 100.0 for i in range(31))):
    frames = []
    for delta in deltas:
        x = skimage.color.rgb2hsv(np.array(img, copy=True) / 255.0)
        x[:, :, 2] = np.clip(x[:, :, 2] + delta, 0, 1)
        frames.append(np.uint8(skimage.color.hsv2rgb(x) * 255))
    return frames


def reference_p_translate(img, _, shifts=range(-7, 9)):
    # trn_F.affine(x, angle=0, translate=(i - 7, 0), scale=1, shear=0): nearest, zero fill
    return [np.array(TF.affine(Image.fromarray(img), angle=0, translate=[shift, 0], scale=1,
                               shear=0)) for shift in shifts]  # fmt: skip


def reference_p_tilt(img, _, degrees=tuple(0.75 * (i - 15) for i in range(31))):
    x = np.array(img)
    h, w = x.shape[0:2]
    frames = []
    for angle in degrees:
        phi, theta = np.deg2rad(angle), np.deg2rad(angle)
        f = np.sqrt(w**2 + h**2)
        P1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
        RX = np.array([[1, 0, 0, 0], [0, np.cos(theta), -np.sin(theta), 0],
                       [0, np.sin(theta), np.cos(theta), 0], [0, 0, 0, 1]])  # fmt: skip
        RY = np.array([[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0],
                       [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]])  # fmt: skip
        T = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
        P2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
        mat = P2 @ T @ RX @ RY @ P1
        frames.append(cv2.warpPerspective(x, mat, (w, h)))
    return frames


def _layer_draw(g, batch):
    normal = torch.randn(len(batch), 1, *batch.shape[2:], generator=g)
    return [normal[b, 0].double().numpy() for b in range(len(batch))]


P_REFERENCES = {
    # name: (reference, draws(generator, batch) -> one per image)
    "gaussian_noise": (reference_p_gaussian_noise, lambda g, x: p_noise_draws(
        g, x, lambda g, x: torch.randn(x.shape, generator=g))),
    "speckle_noise": (reference_p_speckle_noise, lambda g, x: p_noise_draws(
        g, x, lambda g, x: torch.randn(x.shape, generator=g))),
    "shot_noise": (reference_p_shot_noise, lambda g, x: p_noise_draws(
        g, x, lambda g, x: torch.poisson(x * 700, generator=g))),
    "motion_blur": (reference_p_motion_blur, None),
    "gaussian_blur": (reference_p_gaussian_blur, None),
    "snow": (reference_p_snow, _layer_draw),
    "spatter": (reference_p_spatter, _layer_draw),
    "brightness": (reference_p_brightness, None),
    "translate": (reference_p_translate, None),
    "tilt": (reference_p_tilt, None),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(P_REFERENCES))
def test_cifar_p_sequence_matches_the_reference(name):
    """The script stores each frame with ``np.uint8`` (truncating); our frames are floats, so the
    tolerance is one level on the truncated value: ``0 <= ours - reference < 1``, up to 1."""
    images = natural_images(32)
    got = sequence(images, name, seed=3)
    reference, draws = P_REFERENCES[name]
    draws = draws(torch.Generator().manual_seed(3), torch.from_numpy(images).permute(0, 3, 1, 2)
                  .float() / 255) if draws else [None] * len(images)  # fmt: skip
    expected = np.stack([reference(image, draw) for image, draw in zip(images, draws, strict=True)])
    assert got.shape == expected.shape
    assert_levels(got, expected.astype(np.float64))


# --------------------------------------------------------------------------------------------
# ImageNet-P sequences (ImageNet-P/create_p/make_imagenet_p.py): trn.Resize(256) of the photo
# (square here), then either CenterCrop(224) and the perturbation, or the warp and CenterCrop(224)


def centre_crop_224(frame: np.ndarray) -> np.ndarray:
    top, left = int(round((frame.shape[0] - 224) / 2.0)), int(round((frame.shape[1] - 224) / 2.0))
    return frame[top : top + 224, left : left + 224]


def on_crop(reference):
    return lambda img, draw: reference(centre_crop_224(img), draw)


def then_crop(reference):
    return lambda img, draw: [centre_crop_224(frame) for frame in reference(img, draw)]


def reference_imagenet_p_zoom_blur(img, _):
    z = centre_crop_224(img)
    avg, frames = z / 255.0, [z]
    for i in range(1, 31):
        avg = avg + centre_crop_224(reference_affine(img, scale=1 + 0.004 * i)) / 255.0
        frames.append(np.floor(np.float32(avg / (i + 1)) * 255))  # trn.ToPILImage truncates
    return frames


def _crop_draw(draw):
    """The draws, taken on the 224-px crops as the torch code does."""
    return lambda g, x: draw(g, x[..., 16:240, 16:240])


IMAGENET_P_REFERENCES = {
    "gaussian_noise": (on_crop(lambda img, d: reference_p_gaussian_noise(img, d, std=0.03)),
                       _crop_draw(P_REFERENCES["gaussian_noise"][1])),
    "speckle_noise": (on_crop(reference_p_speckle_noise),
                      _crop_draw(P_REFERENCES["speckle_noise"][1])),
    "shot_noise": (on_crop(lambda img, d: reference_p_shot_noise(img, d, photons=300)),
                   _crop_draw(lambda g, x: p_noise_draws(
                       g, x, lambda g, x: torch.poisson(x * 300, generator=g)))),
    "motion_blur": (on_crop(lambda img, d: reference_p_motion_blur(
        img, d, radius=10, sigma=3, angles=[(i - 30) * 4 for i in range(31)])), None),
    "gaussian_blur": (on_crop(lambda img, d: reference_p_gaussian_blur(
        img, d, sigmas=[0.25 + 0.035 * i for i in range(31)], truncate=6.0)), None),
    "snow": (on_crop(lambda img, d: reference_p_snow(img, d, zoom=3, radius=14, sigma=4)),
             _crop_draw(_layer_draw)),
    "spatter": (on_crop(lambda img, d: reference_p_spatter(
        img, d, c=(0.65, 0.27, 3.7, 0.69), drip=(0.05, 0.1, 0.15, 0.7))), _crop_draw(_layer_draw)),
    "brightness": (on_crop(lambda img, d: reference_p_brightness(
        img, d, deltas=[(i - 15) * 2 / 100.0 for i in range(31)])), None),
    "translate": (then_crop(lambda img, d: reference_p_translate(img, d, range(-20, 21))), None),
    "rotate": (then_crop(lambda img, d: [reference_affine(img, angle=i - 15)
                                         for i in range(31)]), None),
    "scale": (then_crop(lambda img, d: [reference_affine(img, scale=(i * 2.5 + 40) / 100.0)
                                        for i in range(31)]), None),
    "shear": (then_crop(lambda img, d: [reference_affine(img, shear=i - 15)
                                        for i in range(31)]), None),
    "tilt": (then_crop(lambda img, d: reference_p_tilt(img, d, [i - 15 for i in range(31)])),
             None),
    "zoom_blur": (reference_imagenet_p_zoom_blur, None),
}  # fmt: skip
# Two levels for zoom blur, as at CIFAR scale; one elsewhere.
IMAGENET_P_LEVELS = {"zoom_blur": 2.0}


@pytest.mark.parametrize("name", sorted(IMAGENET_P_REFERENCES))
def test_imagenet_p_sequence_matches_the_reference(name):
    """One 256-px photo per sequence (224-px frames, up to 41 of them) keeps this fast."""
    images = natural_images(256)[:1]
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    frames = perturbation_sequence(batch, name, seed=4, scale="imagenet")
    got = frames.permute(0, 1, 3, 4, 2).double().numpy() * 255
    reference, draws = IMAGENET_P_REFERENCES[name]
    draws = draws(torch.Generator().manual_seed(4), batch) if draws else [None] * len(images)
    expected = np.stack([reference(image, draw) for image, draw in zip(images, draws, strict=True)])
    assert got.shape == expected.shape
    assert_levels(got, expected.astype(np.float64), levels=IMAGENET_P_LEVELS.get(name, 1.0))


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
def test_every_corruption_is_stored_on_the_8_bit_grid_by_default(scale):
    from timm_pushpull.robustness.corruptions import ALL_CORRUPTIONS

    images = natural_images(32)[:2]
    for name in ALL_CORRUPTIONS:
        stored = ours(images, name, 3, scale, 1, output="released")
        assert np.abs(stored - stored.round()).max() < 1e-3, name
        computed = ours(images, name, 3, scale, 1)
        if scale == "cifar":  # np.uint8 truncates
            assert np.all((computed - stored > -1e-3) & (computed - stored < 1 + 1e-3)), name
