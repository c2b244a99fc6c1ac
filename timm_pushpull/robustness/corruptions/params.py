"""Names, severity parameters and argument checks of the common corruptions.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019 (https://arxiv.org/abs/1903.12261). The parameters of severities 1-5 are
copied from the dataset generation scripts in https://github.com/hendrycks/robustness
(``ImageNet-C/create_c/``): ``make_cifar_c.py`` (``scale="cifar"``) and ``make_imagenet_c.py``
(``scale="imagenet"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from ...errors import InvalidArgumentError

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "GRID_TOLERANCE",
    "OUTPUTS",
    "RELEASED_JPEG_QUALITY",
    "SCALES",
    "SEVERITY_PARAMS",
    "SPATTER_MODES",
    "CorruptionFn",
    "check_choice",
    "check_images",
    "check_severity",
]

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS
SCALES: tuple[str, ...] = ("cifar", "imagenet")
SPATTER_MODES: tuple[str, ...] = ("wrap", "clip")
# "released": stored like the released data sets, see quantise_like_released; "float": as computed
OUTPUTS: tuple[str, ...] = ("released", "float")
# ImageNet-C's images are JPEGs of this quality (make_imagenet_c.py's save(quality=85))
RELEASED_JPEG_QUALITY = 85
# Images decoded from 8 bits are within this distance (in levels) of k / 255.
GRID_TOLERANCE = 1e-3

# Severity 1..5 parameters, verbatim from hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py
# ("cifar") and make_imagenet_c.py ("imagenet"); the names of the tuple fields are in the functions.
# zoom_blur holds np.arange(start, stop, step) arguments; elastic keeps the scripts' IMSIZE * k
# products (IMSIZE=32, and 244 in the ImageNet script); fog and frost get the scripts' plasma map
# size (32 / 256) and frost resize factor (0.2 / 1) appended.
SEVERITY_PARAMS: dict[str, dict[str, tuple]] = {
    "gaussian_noise": {
        "cifar": (0.04, 0.06, 0.08, 0.09, 0.10),
        "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38),
    },
    "shot_noise": {"cifar": (500, 250, 100, 75, 50), "imagenet": (60, 25, 12, 5, 3)},
    "impulse_noise": {
        "cifar": (0.01, 0.02, 0.03, 0.05, 0.07),
        "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27),
    },
    "defocus_blur": {
        "cifar": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "imagenet": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    },
    "glass_blur": {
        "cifar": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "imagenet": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    },
    "motion_blur": {
        "cifar": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    },
    "zoom_blur": {
        "cifar": (
            (1, 1.06, 0.01),
            (1, 1.11, 0.01),
            (1, 1.16, 0.01),
            (1, 1.21, 0.01),
            (1, 1.26, 0.01),
        ),
        "imagenet": (
            (1, 1.11, 0.01),
            (1, 1.16, 0.01),
            (1, 1.21, 0.02),
            (1, 1.26, 0.02),
            (1, 1.31, 0.03),
        ),
    },
    "snow": {
        "cifar": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "imagenet": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
    },
    "frost": {
        "cifar": (
            (1, 0.2, 0.2),
            (1, 0.3, 0.2),
            (0.9, 0.4, 0.2),
            (0.85, 0.4, 0.2),
            (0.75, 0.45, 0.2),
        ),
        "imagenet": ((1, 0.4, 1), (0.8, 0.6, 1), (0.7, 0.7, 1), (0.65, 0.7, 1), (0.6, 0.75, 1)),
    },
    "fog": {
        "cifar": ((0.2, 3, 32), (0.5, 3, 32), (0.75, 2.5, 32), (1, 2, 32), (1.5, 1.75, 32)),
        "imagenet": ((1.5, 2, 256), (2, 2, 256), (2.5, 1.7, 256), (2.5, 1.5, 256), (3, 1.4, 256)),
    },
    "brightness": {
        "cifar": (0.05, 0.1, 0.15, 0.2, 0.3),
        "imagenet": (0.1, 0.2, 0.3, 0.4, 0.5),
    },
    "contrast": {
        "cifar": (0.75, 0.5, 0.4, 0.3, 0.15),
        "imagenet": (0.4, 0.3, 0.2, 0.1, 0.05),
    },
    "elastic_transform": {
        "cifar": (
            (32 * 0, 32 * 0, 32 * 0.08),
            (32 * 0.05, 32 * 0.2, 32 * 0.07),
            (32 * 0.08, 32 * 0.06, 32 * 0.06),
            (32 * 0.1, 32 * 0.04, 32 * 0.05),
            (32 * 0.1, 32 * 0.03, 32 * 0.03),
        ),
        "imagenet": (
            (244 * 2, 244 * 0.7, 244 * 0.1),
            (244 * 2, 244 * 0.08, 244 * 0.2),
            (244 * 0.05, 244 * 0.01, 244 * 0.02),
            (244 * 0.07, 244 * 0.01, 244 * 0.02),
            (244 * 0.12, 244 * 0.01, 244 * 0.02),
        ),
    },
    "pixelate": {
        "cifar": (0.95, 0.9, 0.85, 0.75, 0.65),
        "imagenet": (0.6, 0.5, 0.4, 0.3, 0.25),
    },
    "jpeg_compression": {"cifar": (80, 65, 58, 50, 40), "imagenet": (25, 18, 15, 10, 7)},
    "speckle_noise": {
        "cifar": (0.06, 0.1, 0.12, 0.16, 0.2),
        "imagenet": (0.15, 0.2, 0.35, 0.45, 0.6),
    },
    "gaussian_blur": {"cifar": (0.4, 0.6, 0.7, 0.8, 1), "imagenet": (1, 2, 3, 4, 6)},
    "spatter": {
        "cifar": (
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        "imagenet": (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
    },
    "saturate": {
        "cifar": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        "imagenet": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    },
}

# A corruption: f(x [B, C, H, W] float32, parameters of one severity, generator) -> images; each
# category module (noise, blur, weather, digital) holds its corruptions in a CORRUPTION_FNS table.
CorruptionFn = Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]


def on_images_device(images: torch.Tensor) -> contextlib.AbstractContextManager:
    """A block in which the tables and buffers made without a device stay on the CPU with CPU
    ``images``, whatever ``torch.set_default_device`` says (meta or CUDA tensors handed to CPU
    code fail or crash); a no-op otherwise, since the device's mode sees every operator."""
    moved = images.device.type == "cpu" and torch.get_default_device().type != "cpu"
    return torch.device("cpu") if moved else contextlib.nullcontext()


def check_images(images: torch.Tensor, arg: str = "images") -> None:
    """Raise unless ``images`` is a float ``[B, C, H, W]`` tensor, C in (1, 3), values in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{arg} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise InvalidArgumentError(f"{arg} must have shape [B, C, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InvalidArgumentError(
            f"{arg} must be a floating-point tensor with values in [0, 1], got dtype "
            f"{images.dtype} (convert uint8 images with images.float() / 255)"
        )
    if images.shape[1] not in (1, 3):
        raise InvalidArgumentError(
            f"{arg} must have 1 (grey) or 3 (RGB) channels, got {images.shape[1]}"
        )
    if images.numel() == 0:
        return
    low, high = torch.aminmax(images)
    low, high = float(low), float(high)
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise InvalidArgumentError(
            f"{arg} must have values in [0, 1], got min {low:.4g} and max {high:.4g}"
        )


def check_choice(value: str, arg: str, allowed: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``arg`` and the ``allowed`` values unless ``value`` is one."""
    if value not in allowed:
        raise InvalidArgumentError(
            f"unknown {arg} {value!r}; expected one of: {', '.join(allowed)}"
        )


def check_severity(severity: int) -> None:
    """Raise a ValueError unless ``severity`` is an int in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise InvalidArgumentError(f"severity must be an int in 1..5, got {severity!r}")
    if not 1 <= severity <= 5:
        raise InvalidArgumentError(f"severity must be in 1..5, got {severity}")
