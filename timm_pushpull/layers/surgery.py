"""Model surgery: put push-pull layers or anti-aliasing into any existing (timm) CNN.

Push-pull: the chosen ``nn.Conv2d`` modules become :class:`PushPull2d` with the conv's weights
copied into the push kernel, so a pretrained network can be fine-tuned; state-dict keys change
only from ``<name>.weight`` to ``<name>.push.weight``.
Anti-aliasing: the placements of the papers, as small composable modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .blur_pool import BlurPool2d, MaxBlurPool2d, parse_blur_spec
from .pushpull import PushPull2d

SCOPES = ("stem", "stage1")


def _first_conv_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    first = cfg.get("first_conv")
    names = dict(model.named_modules())
    if isinstance(first, str):
        # timm names the first conv's module (or its weight's owner) in first_conv
        for candidate in (first, first.removesuffix(".weight")):
            if isinstance(names.get(candidate), nn.Conv2d):
                return candidate
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError("model has no nn.Conv2d to convert")


def _first_stage_name(model: nn.Module, stem: str) -> str:
    """The module of the first feature stage after the stem (timm's ``feature_info``)."""
    feature_info = getattr(model, "feature_info", None)
    if not feature_info:
        raise ValueError(
            "scope='stage1' needs a timm model with feature_info; pass module names instead"
        )
    modules = dict(model.named_modules())
    for info in feature_info:
        name = info["module"]
        module = modules.get(name)
        if module is None or name == stem or stem.startswith(name + "."):
            continue
        if any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in module.modules()):
            return name
    raise ValueError("could not find the first stage from feature_info; pass module names instead")


def pushpull_targets(model: nn.Module, scope: str | Sequence[str]) -> list[str]:
    """Names of the convolutions that ``scope`` selects.

    ``"stem"``: the first convolution. ``"stage1"``: the stem plus every convolution with a
    spatial kernel (> 1x1) in the first stage, the papers' "first block" (1x1 convs stay plain).
    A list selects modules by name.
    """
    if isinstance(scope, str):
        if scope not in SCOPES:
            raise ValueError(
                f"scope must be one of {SCOPES} or a list of module names, got {scope!r}"
            )
        stem = _first_conv_name(model)
        if scope == "stem":
            return [stem]
        stage = _first_stage_name(model, stem)
        stage_convs = [
            f"{stage}.{name}"
            for name, m in model.get_submodule(stage).named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
        ]
        return [stem] + stage_convs
    names = list(scope)
    modules = dict(model.named_modules())
    bad = [n for n in names if not isinstance(modules.get(n), nn.Conv2d)]
    if bad:
        raise ValueError(f"scope names must be nn.Conv2d modules of the model; not convs: {bad}")
    return names


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def pushpull_from_conv(conv: nn.Conv2d, **pushpull_kwargs) -> PushPull2d:
    """A :class:`PushPull2d` with the geometry and weights of ``conv``."""
    if conv.padding_mode != "zeros":
        raise ValueError(
            f"only zero-padded convolutions convert, got padding_mode={conv.padding_mode!r}"
        )
    layer = PushPull2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
        device=conv.weight.device, dtype=conv.weight.dtype, **pushpull_kwargs,
    )  # fmt: skip
    with torch.no_grad():
        layer.push.weight.copy_(conv.weight)
        if conv.bias is not None:
            layer.push.bias.copy_(conv.bias)
    return layer


def convert_to_pushpull(
    model: nn.Module, scope: str | Sequence[str] = "stem", **pushpull_kwargs
) -> nn.Module:
    """Replace the convolutions selected by ``scope`` with push-pull layers, in place."""
    for name in pushpull_targets(model, scope):
        _replace(model, name, pushpull_from_conv(model.get_submodule(name), **pushpull_kwargs))
    return model


def blur_before_conv(
    conv: nn.Conv2d, filter: str = "bin3", pad_mode: str = "reflect"
) -> nn.Sequential:
    """The push-pull papers' placement: blur-pool with the conv's stride, then the conv at stride 1."""
    filter_type, size = parse_blur_spec(filter)
    if conv.stride[0] != conv.stride[1]:
        raise ValueError(f"blur_before_conv needs a square stride, got {conv.stride}")
    blur = BlurPool2d(conv.in_channels, filter_type, size, conv.stride[0], pad_mode)
    conv.stride = (1, 1)
    return nn.Sequential(blur, conv)


def conv_act_blur(
    conv: nn.Conv2d,
    act_layer: type[nn.Module] = nn.ReLU,
    filter: str = "bin3",
    pad_mode: str = "reflect",
) -> nn.Sequential:
    """Zhang's placement for strided convs: conv at stride 1, activation, then blur-pool."""
    filter_type, size = parse_blur_spec(filter)
    stride = conv.stride[0]
    conv.stride = (1, 1)
    return nn.Sequential(
        conv, act_layer(), BlurPool2d(conv.out_channels, filter_type, size, stride, pad_mode)
    )


def antialias(model: nn.Module, filter: str = "bin3", pad_mode: str = "reflect") -> nn.Module:
    """Anti-alias every downsampling of a model in place.

    Strided convolutions get a blur-pool in front (running at stride 1 after it) and strided max
    pools become :class:`MaxBlurPool2d`. Apply before :func:`convert_to_pushpull`, which keeps the
    conv geometry it finds.
    """
    filter_type, size = parse_blur_spec(filter)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and max(module.stride) > 1:
            _replace(model, name, blur_before_conv(module, filter, pad_mode))
        elif isinstance(module, nn.MaxPool2d) and module.stride not in (1, (1, 1)):
            stride = module.stride if isinstance(module.stride, int) else module.stride[0]
            _replace(
                model,
                name,
                MaxBlurPool2d(
                    None, module.kernel_size, stride, module.padding, filter_type, size, pad_mode
                ),
            )
    return model
