"""AutoAugment / RandAugment / AugMix from timm, plus the CIFAR-10 AutoAugment policy.

timm ships the ImageNet AutoAugment policies only. The CIFAR-10 policy (Cubuk et al., 2019,
arXiv:1805.09501, appendix table) is expressed here with timm's own ops so that it shares timm's
fill colour and interpolation handling. Magnitudes follow the code the policy was searched with
(tensorflow/models research/autoaugment): level/10 of each op's range, posterize and solarize
getting stronger with the level, translation up to 10 px on a 32 px image.
"""

from __future__ import annotations

from timm.data.auto_augment import (
    AugmentOp,
    AutoAugment,
    augment_and_mix_transform,
    auto_augment_transform,
    rand_augment_transform,
)

from ..errors import InvalidArgumentError

# (op, probability, magnitude level 0..10); ops without an argument get level 0.
CIFAR10_POLICY = (
    (("Invert", 0.1, 0), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 0), ("Equalize", 0.9, 0)),
    (("ShearY", 0.2, 7), ("PosterizeIncreasing", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 0), ("Equalize", 0.5, 0)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 0), ("AutoContrast", 0.4, 0)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("SolarizeIncreasing", 0.5, 2), ("Invert", 0.0, 0)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 0), ("Equalize", 0.6, 0)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 0)),
    (("AutoContrast", 0.8, 0), ("SolarizeIncreasing", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("SolarizeIncreasing", 0.4, 5), ("AutoContrast", 0.9, 0)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 0), ("SolarizeIncreasing", 0.8, 3)),
    (("Equalize", 0.8, 0), ("Invert", 0.1, 0)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 0)),
)

AUTO_AUGMENT_CHOICES = (
    "cifar10",
    "original",
    "originalr",
    "v0",
    "v0r",
    "3a",
    "rand-...",
    "augmix-...",
)


def cifar10_auto_augment(hparams: dict) -> AutoAugment:
    """The CIFAR-10 AutoAugment policy with timm ops; ``hparams`` as for timm's AugmentOp."""
    return AutoAugment([[AugmentOp(*op, hparams=hparams) for op in sub] for sub in CIFAR10_POLICY])


def create_auto_augment(spec: str, img_size: int, mean: tuple[float, ...]):
    """A PIL transform for ``spec``: ``"cifar10"``, a timm AutoAugment policy (``"original"``,
    ``"v0"``...), ``"rand-m9-mstd0.5"`` (RandAugment) or ``"augmix-m5-w4-d2"`` (AugMix).

    ``mean`` (in [0, 1]) becomes the fill colour of geometric ops, as in timm's transforms factory.
    """
    fill = tuple(min(255, round(255 * x)) for x in mean)
    hparams = dict(img_mean=fill[0] if len(fill) == 1 else fill)
    if spec == "cifar10":
        # 10 px of 32 at level 10, as in the searched policy's code
        return cifar10_auto_augment(dict(hparams, translate_const=round(img_size * 10 / 32)))
    hparams["translate_const"] = int(img_size * 0.45)  # timm's transforms factory default
    if spec.startswith("rand"):
        return rand_augment_transform(spec, hparams)
    if spec.startswith("augmix"):
        return augment_and_mix_transform(spec, hparams)
    if spec.split("-")[0] in ("original", "originalr", "v0", "v0r", "3a"):
        return auto_augment_transform(spec, hparams)
    raise InvalidArgumentError(f"auto_augment={spec!r}; allowed: {', '.join(AUTO_AUGMENT_CHOICES)}")
