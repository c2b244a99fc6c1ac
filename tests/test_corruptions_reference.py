"""Corruptions against reference functions written from the published scripts.

hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` ("cifar") and ``make_imagenet_c.py``
("imagenet"), with their parameters written out again here, on natural photos (scikit-image's
samples) at 32 and 224 px. Both sides get the same random draws: each ``draws_*`` helper takes
from a generator seeded like :func:`corrupt` the values the torch code draws, in its order, and
the reference consumes them where the script calls ``np.random``. The references use the
scripts' libraries (NumPy, SciPy, scikit-image, OpenCV, Pillow and ImageMagick through Wand).

Tolerance: one 8-bit level, unless a test's docstring says why it needs more.
"""

import ctypes
import io

import cv2
import numpy as np
import pytest
import skimage.data
import skimage.filters
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.ndimage import zoom as scizoom
from wand.api import library as wandlibrary
from wand.image import Image as WandImage

from timm_pushpull.robustness.corruptions import corrupt
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
    close = np.abs(got - expected) <= levels + 1e-3  # float32 round trips
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


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
def test_snow(scale):
    """ImageMagick truncates the blurred flakes to 8 bits; rounding them was up to 2 levels off."""
    size = SIZES[scale]
    images = natural_images(size)
    for severity in range(1, 6):
        seed = 10 + severity
        got = ours(images, "snow", severity, scale, seed)
        draws = draws_snow(torch.Generator().manual_seed(seed), len(images), size)
        expected = np.stack([reference_snow(image, SNOW[scale][severity - 1], *draw)
                             for image, draw in zip(images, draws, strict=True)])  # fmt: skip
        assert_levels(got, expected)


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


def reference_spatter(x: np.ndarray, c: tuple, normal: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32) / 255.0
    liquid_layer = c[0] + c[1] * normal  # np.random.normal(size, loc=c[0], scale=c[1])
    liquid_layer = skimage.filters.gaussian(liquid_layer, sigma=c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
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
        m /= np.max(m, axis=(0, 1))
        m *= c[4]
        color = np.concatenate((175 / 255.0 * np.ones_like(m[..., :1]),
                                238 / 255.0 * np.ones_like(m[..., :1]),
                                238 / 255.0 * np.ones_like(m[..., :1])), axis=2)  # fmt: skip
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR) * 255
    m = np.where(liquid_layer > c[3], 1, 0)
    m = skimage.filters.gaussian(m.astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    color = np.concatenate((63 / 255.0 * np.ones_like(x[..., :1]),
                            42 / 255.0 * np.ones_like(x[..., :1]),
                            20 / 255.0 * np.ones_like(x[..., :1])), axis=2)  # fmt: skip
    color *= m[..., np.newaxis]
    x *= 1 - m[..., np.newaxis]
    return np.clip(x + color, 0, 1) * 255


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
def test_spatter(scale):
    """With the released data's 8-bit wrap of the water layer (CIFAR severity 3 needs it)."""
    size = SIZES[scale]
    images = natural_images(size)
    for severity in range(1, 6):
        seed = 20 + severity
        got = ours(images, "spatter", severity, scale, seed)
        draws = draws_spatter(torch.Generator().manual_seed(seed), len(images), size)
        expected = np.stack([reference_spatter(image, SPATTER[scale][severity - 1], draw)
                             for image, draw in zip(images, draws, strict=True)])  # fmt: skip
        assert_levels(got, expected)


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
    kwargs = {} if output == "released" else {"output": output}  # released is the default
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
