"""Train/eval transforms for the recipes: CIFAR pad-and-crop, ImageNet random-resized-crop (timm),
optional AutoAugment/RandAugment (timm + the CIFAR-10 policy) and Cutout.

Images leave the transforms as uint8 CHW arrays (timm's prefetcher convention): normalisation
happens per batch, see :mod:`timm_pushpull.data.batch`.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from timm.data import create_transform
from timm.data.transforms import ToNumpy
from torchvision import transforms
from torchvision.transforms import functional as TF

from .auto_augment import create_auto_augment
from .cutout import Cutout

CROP_MODES = ("pad", "rrc", "none")


class ConvertImageMode:
    """PIL ``Image.convert`` to ``mode`` ("L" for one channel, "RGB" for three), skipped when equal."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


class FitSize:
    """Centre-pad (with zeros) or centre-crop to ``size`` x ``size``; a no-op at that size already
    (torchvision's CenterCrop copies the image even then, a measurable cost per small image)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.size == (self.size, self.size) else TF.center_crop(image, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def _check(crop: str, in_chans: int, mean: Sequence[float]) -> None:
    if crop not in CROP_MODES:
        raise ValueError(f"crop={crop!r}; allowed: {CROP_MODES}")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans={in_chans}; image transforms support 1 (grey) or 3 (RGB)")
    if len(mean) != in_chans:
        raise ValueError(f"mean {tuple(mean)} needs in_chans={in_chans} values")


def create_train_transform(
    img_size: int,
    in_chans: int = 3,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    crop: str = "pad",
    padding: int = 4,
    hflip: float = 0.5,
    auto_augment: str | None = None,
    cutout: int = 0,
    color_jitter: float = 0.0,
    interpolation: str = "bilinear",
) -> transforms.Compose:
    """Training transform: PIL image -> uint8 CHW array.

    ``crop="pad"``: zero-pad by ``padding`` and randomly crop ``img_size`` (He et al., 2016, the CIFAR
    setting; smaller images are centre-padded to ``img_size`` first). ``crop="rrc"``: timm's
    random-resized-crop ImageNet pipeline. ``crop="none"``: no geometric augmentation.
    Then optionally flip, ``auto_augment`` (see :func:`create_auto_augment`) and a ``cutout``-pixel
    Cutout square (16 for CIFAR; DeVries & Taylor, 2017). ``mean`` (in [0, 1]) is the fill colour
    of AutoAugment's geometric ops and of Cutout.
    """
    _check(crop, in_chans, mean)
    mode = "L" if in_chans == 1 else "RGB"
    if crop == "rrc":
        primary, secondary, _ = create_transform(
            (in_chans, img_size, img_size),
            is_training=True,
            hflip=hflip,
            color_jitter=color_jitter,
            interpolation=interpolation,
            mean=tuple(mean),
            separate=True,
        )
        steps = [ConvertImageMode(mode), *primary.transforms]
        if auto_augment:
            steps.append(create_auto_augment(auto_augment, img_size, mean))
        else:
            steps += list(secondary.transforms)
    else:
        steps = [ConvertImageMode(mode), FitSize(img_size)]
        if crop == "pad":
            steps.append(transforms.RandomCrop(img_size, padding=padding))
        if hflip > 0:
            steps.append(transforms.RandomHorizontalFlip(hflip))
        if auto_augment:
            steps.append(create_auto_augment(auto_augment, img_size, mean))
    steps.append(ToNumpy())
    if cutout:
        steps.append(Cutout(cutout, fill=[round(255 * m) for m in mean]))
    return transforms.Compose(steps)


def create_eval_transform(
    img_size: int,
    in_chans: int = 3,
    crop: str = "pad",
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
) -> transforms.Compose:
    """Evaluation transform (PIL image -> uint8 CHW array) matching :func:`create_train_transform`:
    the whole image (centre-padded or cropped to ``img_size``) for small-image recipes, timm's
    resize + centre crop for ``"rrc"``."""
    _check(crop, in_chans, (0.0,) * in_chans)
    mode = "L" if in_chans == 1 else "RGB"
    if crop == "rrc":
        timm_eval = create_transform(
            (in_chans, img_size, img_size),
            is_training=False,
            crop_pct=crop_pct,
            interpolation=interpolation,
            use_prefetcher=True,
        )
        # its last step (MaybePILToTensor) makes a uint8 tensor per image: ToNumpy instead
        return transforms.Compose([ConvertImageMode(mode), *timm_eval.transforms[:-1], ToNumpy()])
    return transforms.Compose([ConvertImageMode(mode), FitSize(img_size), ToNumpy()])
