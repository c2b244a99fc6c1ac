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
``aa_layer`` leaves strided. The shortcut's conv blurs its own input (:class:`BlurProjection2d`),
so the state dict keeps timm's layout (``downsample.0`` the conv, ``downsample.1`` the BN) and
the weights of timm's ``resnet18`` / ``resnet50`` (with or without ``aa_layer``) load into every
variant, anti-aliased or not. :func:`checkpoint_filter_fn` names the keys it maps.
"""

import re
from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ..layers import blur_pool_class, convert_to_pushpull
from ._builder import build_pushpull_model
from ._cfg import PAPER_ANTIALIAS, PAPER_PUSHPULL, PAPER_PUSHPULL_RESNET
from ._default_cfgs import family_default_cfgs
from ._variants import scope_pushpull_kwargs

__all__ = ["BlurProjection2d", "checkpoint_filter_fn", "create_pushpull_resnet"]


class BlurProjection2d(nn.Conv2d):
    """A stride-1 projection conv that first low-pass filters and subsamples its input (Zhang 2019).

    Blur-pool -> conv, as Zhang's anti-aliased ResNet shortcut, in one module whose state dict is
    the conv's (the blur has no weights), so ``downsample.0.weight`` stays where timm's strided
    1x1 conv keeps it.
    """

    def __init__(self, conv: nn.Conv2d, aa_layer: type[nn.Module], stride: int) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=1,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        self.aa = aa_layer(channels=conv.in_channels, stride=stride)
        self.weight = conv.weight  # a 1x1 conv: only the sampling changes, the weights stay valid
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.aa(x), self.weight, self.bias)


def _blur_projection_shortcuts(model: ResNet, aa_layer: type[nn.Module]) -> None:
    for block in model.modules():
        downsample = getattr(block, "downsample", None)
        if not isinstance(block, (BasicBlock, Bottleneck)) or downsample is None:
            continue
        conv = downsample[0]
        if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1):
            downsample[0] = BlurProjection2d(conv, aa_layer, conv.stride[0])


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


_SHORTCUT_ENTRY = re.compile(r"\.downsample\.([12])\.")


def checkpoint_filter_fn(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Map a timm ResNet state dict (``resnet18``/``resnet50``, any ``aa_layer``) onto ``model``.

    The keys it renames:

    - ``<conv>.weight`` -> ``<conv>.push.weight`` where ``model`` has the latter and not the
      former: the push kernel of a push-pull layer is the weight of the conv it replaces (``conv1`` in every variant; ``layer1.*.conv1``/``conv2`` of ResNet-18 and
      ``layer1.*.conv2`` of ResNet-50 in ``*_pp_b1``);
    - ``layer<i>.0.downsample.1.weight`` -> ``.0.weight`` and ``.downsample.2.*`` -> ``.1.*``,
      when the state dict has ``downsample.2`` keys: the anti-aliased shortcut as
      timm-pushpull 0.1.0 stored it (blur-pool, conv, BN: three entries).

    Every other key (BN, fc, the blocks' and shortcuts' convs) passes unchanged: timm's
    anti-aliased ResNet has the same keys, its blur-pools having no weights.
    """
    model_keys = model.state_dict().keys()
    three_entry_shortcut = any(".downsample.2." in key for key in state_dict)
    out = {}
    for key, value in state_dict.items():
        if three_entry_shortcut:
            key = _SHORTCUT_ENTRY.sub(lambda m: f".downsample.{int(m[1]) - 1}.", key)
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


default_cfgs = family_default_cfgs(
    ("resnet18_pp", "resnet18_pp_b1", "resnet50_pp", "resnet50_pp_b1"), _cfg
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
