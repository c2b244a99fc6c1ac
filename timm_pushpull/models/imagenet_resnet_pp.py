"""ImageNet ResNet-18/50 with push-pull inhibition, built on timm's own ``ResNet`` class.

Bennabhaktula, Alegre, Strisciuglio, Azzopardi, "PushPull-Net: Inhibition-driven ResNet robust to
image corruptions", ICPR 2024, arXiv:2408.04077: the first conv (``*_pp``) and, in ``*_pp_b1``,
every spatial conv of the first stage (ResNet-50: the middle 3x3 of each bottleneck) become
push-pull layers. The models are plain ``timm.models.resnet.ResNet`` instances whose state dict is
timm's ``resnet18`` / ``resnet50`` one with ``<conv>.weight`` renamed ``<conv>.push.weight``, so a
timm checkpoint loads through :func:`checkpoint_filter_fn` (also used for ``pretrained=True``).

Anti-aliasing (``aa``): Zhang 2019 (arXiv:1904.11486) through timm's ``aa_layer`` (max-pool at
stride 1 + blur-pool in the stem, blur-pool after the stride-1 3x3 conv in the blocks), plus
Zhang's blurred projection shortcut (blur-pool -> 1x1 conv at stride 1 -> BN), which timm's
``aa_layer`` leaves strided.
"""

from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ..layers import blur_pool_class, convert_to_pushpull
from ._builder import build_pushpull_model
from ._cfg import PAPER_ANTIALIAS, PAPER_PUSHPULL, PAPER_PUSHPULL_RESNET
from ._variants import scope_pushpull_kwargs

__all__ = ["checkpoint_filter_fn", "create_pushpull_resnet"]


def _blur_projection_shortcuts(model: ResNet, aa_layer: type[nn.Module]) -> None:
    for block in model.modules():
        downsample = getattr(block, "downsample", None)
        if not isinstance(block, (BasicBlock, Bottleneck)) or downsample is None:
            continue
        conv, norm = downsample[0], downsample[1]
        if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1):
            stride = conv.stride[0]
            conv.stride = (1, 1)  # a 1x1 conv: only the sampling changes, the weights stay valid
            block.downsample = nn.Sequential(
                aa_layer(channels=conv.in_channels, stride=stride), conv, norm
            )


def create_pushpull_resnet(
    pp_scope: str | None = "stem", aa: str | None = None, **kwargs: Any
) -> ResNet:
    """timm ``ResNet(**kwargs)`` with push-pull layers in ``pp_scope`` and ``aa`` anti-aliasing.

    ``pp_*`` kwargs configure the push-pull layers (see :mod:`timm_pushpull.models._variants`).
    """
    pp_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("pp_")}
    pushpull = scope_pushpull_kwargs(pp_scope, **pp_kwargs)
    aa_layer = blur_pool_class(aa)
    model = ResNet(aa_layer=aa_layer, **kwargs)
    if aa_layer is not None:
        _blur_projection_shortcuts(model, aa_layer)
    if pushpull is not None:
        convert_to_pushpull(model, pp_scope, **pushpull)
    return model


def checkpoint_filter_fn(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Map a timm ResNet state dict onto a push-pull one: ``<conv>.weight`` -> ``<conv>.push.weight``."""
    model_keys = model.state_dict().keys()
    out = {}
    for key, value in state_dict.items():
        pushed = key.removesuffix("weight") + "push.weight"
        out[pushed if key not in model_keys and pushed in model_keys else key] = value
    return out


def _create(variant: str, pretrained: bool, **kwargs: Any) -> ResNet:
    return build_pushpull_model(
        create_pushpull_resnet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1.push",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_ids": (PAPER_PUSHPULL_RESNET, PAPER_PUSHPULL, "arXiv:1512.03385", PAPER_ANTIALIAS),
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {name: _cfg() for name in ("resnet18_pp", "resnet18_pp_b1", "resnet50_pp", "resnet50_pp_b1")}
)


@register_model
def resnet18_pp(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with a push-pull first conv."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), pp_scope="stem")
    return _create("resnet18_pp", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet18_pp_b1(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with push-pull first conv and first-stage 3x3 convs."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), pp_scope="stage1")
    return _create("resnet18_pp_b1", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_pp(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 with a push-pull first conv (PushPull-Net)."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), pp_scope="stem")
    return _create("resnet50_pp", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_pp_b1(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-50 with push-pull first conv and the middle 3x3 conv of every first-stage bottleneck."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), pp_scope="stage1")
    return _create("resnet50_pp_b1", pretrained, **dict(model_args, **kwargs))
