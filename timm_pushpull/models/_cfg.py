"""Pretrained-cfg pieces shared by the families: data normalisation, papers, weights.

A pretrained tag exists only for weights a user can get. Tags are named as timm's,
``{source}_{dataset}`` (``tv_in1k``, ``a1_in1k``). Those timm-pushpull makes on the user's
machine (``official_c10``: the authors' released checkpoints, converted; ``demo_fmnist``: the
demo's models) have no Hub id, so ``timm.list_pretrained()`` does not list them, and
``pretrained=True`` loads them from ``$TIMM_PUSHPULL_WEIGHTS_DIR`` (:mod:`._pretrained`) or
says how to make them (:data:`LOCAL_WEIGHTS_HOWTO`). Once a model is uploaded, ``published: true``
in its ``hub_configs/<architecture>.<tag>.yaml`` gives the tag its Hub id: no code changes.
"""

import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

HUB_ORG = "timm-pushpull"
# One file per model timm-pushpull publishes (the package holds a symlink; the wheel, a copy).
HUB_CONFIGS_DIR = Path(__file__).resolve().parents[1] / "hub_configs"

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

DEMO_FMNIST = "demo_fmnist"
OFFICIAL_C10 = "official_c10"
# The tags' first names (dataset first), still accepted with a DeprecationWarning until nothing
# published uses them: in model names, hub configs and local weight folders.
DEPRECATED_TAGS = {"c10_official": OFFICIAL_C10, "fmnist_demo": DEMO_FMNIST}
# The models `timm-pushpull demo` trains: the only ones with a demo_fmnist tag.
DEMO_FMNIST_MODELS = ("lenet5_a", "lenet5_a_pp", "resnet20", "resnet20_pp", "resnet20_pp_b1")
# tag -> how a user makes its weights, for the error of pretrained=True without them
LOCAL_WEIGHTS_HOWTO = {
    OFFICIAL_C10: (
        "download the authors' released checkpoints (https://github.com/nicstrisc/"
        "Push-Pull-CNN-layer), run `timm-pushpull convert-official CHECKPOINT_DIR WEIGHTS_DIR` "
        "and set TIMM_PUSHPULL_WEIGHTS_DIR=WEIGHTS_DIR"
    ),
    DEMO_FMNIST: (
        "run `timm-pushpull demo --out DIR` (it trains "
        f"{', '.join(DEMO_FMNIST_MODELS)}) and set TIMM_PUSHPULL_WEIGHTS_DIR=DIR/models"
    ),
}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there is one


def current_tag(tag: str | None) -> str | None:
    """``tag``, or its new name with a ``DeprecationWarning`` when it is a deprecated one."""
    if tag not in DEPRECATED_TAGS:
        return tag
    warnings.warn(
        f"pretrained tag {tag!r} is deprecated, use {DEPRECATED_TAGS[tag]!r} (timm's "
        f"{{source}}_{{dataset}} order)",
        DeprecationWarning,
        stacklevel=_user_stacklevel(),
    )
    return DEPRECATED_TAGS[tag]


def current_model_name(model_name: str) -> str:
    """``architecture.tag`` with a deprecated tag renamed (and a ``DeprecationWarning``)."""
    architecture, _, tag = model_name.partition(".")
    return f"{architecture}.{current_tag(tag)}" if tag else model_name


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside timm and timm-pushpull, seen from
    :func:`current_tag`: the warning then points at the user's line (and Python shows
    DeprecationWarnings raised from ``__main__``)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
        "timm",
        "timm_pushpull",
    ):
        frame, level = frame.f_back, level + 1
    return level


def published_hub_id(model_name: str, configs_dir: Path = HUB_CONFIGS_DIR) -> str | None:
    """The Hub repository of ``architecture.tag`` if its hub config says ``published: true``."""
    path = configs_dir / f"{model_name}.yaml"
    if not path.is_file():
        return None
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
    if config.get("published") is not True:
        return None
    if config.get("repo_id") is None or config.get("model") != model_name:
        raise ValueError(f"{path}: published: true needs repo_id and model: {model_name}")
    return config["repo_id"]


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


def fmnist_cfg(**kwargs: Any) -> dict[str, Any]:
    """28x28 greyscale Fashion-MNIST, with the statistics ``timm-pushpull demo`` trains with."""
    return {
        "num_classes": 10,
        "input_size": (1, 28, 28),
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": FMNIST_MEAN,
        "std": FMNIST_STD,
        "license": "apache-2.0",
        **kwargs,
    }


def demo_fmnist_cfg(model_name: str, **kwargs: Any) -> dict[str, Any]:
    """A model of ``timm-pushpull demo``, trained on Fashion-MNIST."""
    return fmnist_cfg(
        hf_hub_id=published_hub_id(f"{model_name}.{DEMO_FMNIST}"),
        description=f"{model_name} trained on Fashion-MNIST by the timm-pushpull demo",
        **kwargs,
    )


def pushpull_first_conv(first_conv: str, model_name: str) -> str:
    """Push-pull models keep the first conv's kernel at ``<first_conv>.push``."""
    return f"{first_conv}.push" if "_pp" in model_name else first_conv
