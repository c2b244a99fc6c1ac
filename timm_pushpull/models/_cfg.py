"""Pretrained-cfg pieces shared by the families: data normalisation, papers, Hub ids."""

from __future__ import annotations

from typing import Any

HUB_ORG = "timm-pushpull"

# The normalisation the push-pull authors trained their released CIFAR-10 models with.
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
# Fashion-MNIST training-set statistics, used by the demo (``timm-pushpull demo``).
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)

PAPER_PUSHPULL = "doi:10.1007/s00521-020-04751-8"  # Strisciuglio et al. 2020 (NCA)
PAPER_PUSHPULL_2019 = "arXiv:1901.10208"  # Strisciuglio et al., LeNet-5 / WRN push-pull
PAPER_PUSHPULL_RESNET = "arXiv:2408.04077"  # Bennabhaktula et al. 2024, PushPull-Net (ImageNet)
PAPER_ANTIALIAS = "arXiv:1904.11486"  # Zhang 2019, anti-aliased CNNs

FMNIST_DEMO = "fmnist_demo"


def cifar_cfg(**kwargs: Any) -> dict[str, Any]:
    """32x32 RGB, 10 classes, the released models' normalisation."""
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
        "license": "apache-2.0",
        **kwargs,
    }


def fmnist_demo_cfg(model_name: str, **kwargs: Any) -> dict[str, Any]:
    """28x28 greyscale Fashion-MNIST, as trained by ``timm-pushpull demo``."""
    return {
        "hf_hub_id": f"{HUB_ORG}/{model_name}.{FMNIST_DEMO}",
        "num_classes": 10,
        "input_size": (1, 28, 28),
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": FMNIST_MEAN,
        "std": FMNIST_STD,
        "license": "apache-2.0",
        "description": f"{model_name} trained on Fashion-MNIST by the timm-pushpull demo",
        **kwargs,
    }


def pushpull_first_conv(first_conv: str, model_name: str) -> str:
    """Push-pull models keep the first conv's kernel at ``<first_conv>.push``."""
    return f"{first_conv}.push" if "_pp" in model_name else first_conv
