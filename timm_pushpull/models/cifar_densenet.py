"""DenseNet-BC for CIFAR, with push-pull and anti-aliased variants.

Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, arXiv:1608.06993. As in the
push-pull authors' released models (whose state-dict keys these match): 3x3 stem ``conv0`` with 24
channels whatever the growth rate k, three dense blocks of (depth-4)/6 bottleneck layers (BN-ReLU-
1x1 conv to 4k, BN-ReLU-3x3 conv to k), transitions BN-ReLU-1x1 conv (compression 0.5)-avgpool 2,
final ``norm_final`` BN-ReLU, global average pool, ``classifier``.

Push-pull (``pp_scope``, ``pp_*``): Strisciuglio et al. 2020, doi:10.1007/s00521-020-04751-8;
``stage1`` makes the 3x3 conv of every layer of dense block 1 push-pull. Anti-aliasing (``aa``):
the transitions' 2x2 average pool becomes a blur-pool, as in Zhang 2019 (arXiv:1904.11486) and
timm's ``densenetblur121d``.
"""

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, create_classifier, get_device_dtype
from timm.models import checkpoint, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import MATCH_PREV_GROUP

from ..layers import blur_pool_class
from ._builder import build_pushpull_model
from ._cfg import PAPER_ANTIALIAS, PAPER_PUSHPULL, cifar_cfg, pushpull_first_conv
from ._default_cfgs import family_default_cfgs
from ._drop import refuse_drop_rates
from ._variants import scoped_conv_layers

__all__ = ["CifarDenseNet", "DenseLayer", "DenseBlock", "DenseTransition"]

# name -> (depth, growth rate)
DENSENET_CONFIGS = {
    "densenet40_12": (40, 12),
    "densenet100_12": (100, 12),
    "densenet100_24": (100, 24),
}


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (to ``bn_size * growth_rate``)-BN-ReLU-conv3x3 (to ``growth_rate``)."""

    def __init__(
        self,
        in_chs: int,
        growth_rate: int,
        bn_size: int = 4,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = BatchNormAct2d(in_chs, **dd)
        self.conv1 = nn.Conv2d(in_chs, bn_size * growth_rate, 1, bias=False, **dd)
        self.norm2 = BatchNormAct2d(bn_size * growth_rate, **dd)
        self.conv2 = conv_layer(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.norm2(self.conv1(self.norm1(x))))


class DenseBlock(nn.ModuleDict):
    """Dense layers, each fed the concatenation of the block input and all earlier outputs.

    A ModuleDict (as in timm) so that timm's feature extraction sees the block as one module.
    """

    def __init__(
        self,
        num_layers: int,
        in_chs: int,
        growth_rate: int,
        bn_size: int = 4,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        for i in range(num_layers):
            layer = DenseLayer(
                in_chs + i * growth_rate, growth_rate, bn_size, conv_layer, device, dtype
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            if self.grad_checkpointing and not torch.jit.is_scripting():
                new_features = checkpoint(layer, x)
            else:
                new_features = layer(x)
            x = torch.cat([x, new_features], 1)
        return x


class DenseTransition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool 2 (blur-pool with ``aa_layer``)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        aa_layer: type[nn.Module] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.add_module("norm", BatchNormAct2d(in_chs, **dd))
        self.add_module("conv", nn.Conv2d(in_chs, out_chs, 1, bias=False, **dd))
        if aa_layer is not None:
            self.add_module("pool", aa_layer(channels=out_chs, stride=2))
        else:
            self.add_module("pool", nn.AvgPool2d(2, 2))


class CifarDenseNet(nn.Module):
    """DenseNet-BC for 32x32 inputs.

    Args:
        depth: 6n + 4 (n bottleneck layers per dense block).
        growth_rate: k, channels each layer adds.
        num_init_features: stem channels (24 in the released models, whatever k).
        bn_size: bottleneck width in multiples of k.
        compression: transition output / input channels.
        drop_path_rate, drop_block_rate: timm's arguments, accepted at 0 only (see :mod:`._drop`).
        aa: blur filter for the transitions (``"bin5"``, ``"tri3"``, ``"rect2"`` ...) or None.
        pp_scope: push-pull layers in ``"stem"`` (conv0) or ``"stage1"`` (conv0 and the 3x3 conv
            of every layer of dense block 1), None for none.
        **pp_kwargs: ``pp_pull_scale``, ``pp_alpha``, ... see :func:`timm_pushpull.models._variants.pushpull_kwargs`.
    """

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        num_init_features: int = 24,
        bn_size: int = 4,
        compression: float = 0.5,
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        drop_block_rate: float = 0.0,
        aa: str | None = None,
        pp_scope: str | None = None,
        device=None,
        dtype=None,
        **pp_kwargs,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (40, 100, ...), got {depth}")
        refuse_drop_rates(
            "DenseNet-BC",
            "has no residual branch to drop (its layers concatenate) and timm's DenseNet no "
            "DropBlock; use drop_rate (dropout before the classifier)",
            drop_path_rate=drop_path_rate,
            drop_block_rate=drop_block_rate,
        )
        self.num_classes = num_classes
        self.in_chans = in_chans
        stem_conv, stage1_conv = scoped_conv_layers(pp_scope, **pp_kwargs)
        aa_layer = blur_pool_class(aa)
        num_layers = (depth - 4) // 6

        chs, reduction = num_init_features, 1
        self.features = nn.Sequential(
            OrderedDict(conv0=stem_conv(in_chans, chs, 3, 1, 1, bias=False, **dd))
        )
        self.feature_info = [dict(num_chs=chs, reduction=reduction, module="features.conv0")]
        for i in range(3):
            conv_layer = stage1_conv if i == 0 else nn.Conv2d
            block = DenseBlock(num_layers, chs, growth_rate, bn_size, conv_layer, **dd)
            self.features.add_module(f"denseblock{i + 1}", block)
            chs += num_layers * growth_rate
            if i < 2:
                self.feature_info.append(
                    dict(num_chs=chs, reduction=reduction, module=f"features.denseblock{i + 1}")
                )
                out_chs = math.floor(chs * compression)
                self.features.add_module(
                    f"transition{i + 1}", DenseTransition(chs, out_chs, aa_layer, **dd)
                )
                chs, reduction = out_chs, reduction * 2
        self.features.add_module("norm_final", BatchNormAct2d(chs, **dd))
        self.feature_info.append(
            dict(num_chs=chs, reduction=reduction, module="features.norm_final")
        )
        # positions of the feature taps within self.features, used by forward_intermediates
        names = [n for n, _ in self.features.named_children()]
        self.feature_ends = [names.index(f["module"].split(".", 1)[1]) for f in self.feature_info]

        self.num_features = self.head_hidden_size = chs
        self.global_pool, self.classifier = create_classifier(
            chs, num_classes, pool_type=global_pool, **dd
        )
        self.head_drop = nn.Dropout(drop_rate)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^features\.conv0",
            blocks=r"^features\.(?:denseblock|transition)(\d+)"
            if coarse
            else [
                (r"^features\.denseblock(\d+)\.denselayer(\d+)", None),
                (r"^features\.transition(\d+)", MATCH_PREV_GROUP),
                (r"^features\.norm_final", MATCH_PREV_GROUP),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for module in self.features.modules():
            if isinstance(module, DenseBlock):
                module.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.classifier = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **get_device_dtype(self)
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.global_pool.train(self.training)  # new modules follow the model's mode
        self.classifier.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features of the stem (index 0), dense blocks 1-2 (before their transitions) and the
        final BN-ReLU (3)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        layers = self.features[: self.feature_ends[max_index] + 1] if stop_early else self.features
        intermediates = []
        feat_idx = 0
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in self.feature_ends:
                if feat_idx in take_indices:
                    intermediates.append(x)
                feat_idx += 1
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers (and head) that the features ``indices`` do not need."""
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        prune_end = max_index < len(self.feature_ends) - 1
        self.features = self.features[: self.feature_ends[max_index] + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _densenet(
    base_name: str, variant: str, pretrained: bool, scope: str | None, **kwargs
) -> CifarDenseNet:
    depth, growth_rate = DENSENET_CONFIGS[base_name]
    model_args = dict(depth=depth, growth_rate=growth_rate, pp_scope=scope)
    return build_pushpull_model(
        CifarDenseNet,
        variant,
        pretrained,
        feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2, 3)),
        **dict(model_args, **kwargs),
    )


default_cfgs = family_default_cfgs(
    (name + suffix for name in DENSENET_CONFIGS for suffix in ("", "_pp", "_pp_b1")),
    cifar_cfg,
    lambda name: dict(
        first_conv=pushpull_first_conv("features.conv0", name),
        classifier="classifier",
        paper_ids=("arXiv:1608.06993", PAPER_PUSHPULL, PAPER_ANTIALIAS),
    ),
)


@register_model
def densenet40_12(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-40, k=12, for CIFAR."""
    return _densenet("densenet40_12", "densenet40_12", pretrained, None, **kwargs)


@register_model
def densenet40_12_pp(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-40, k=12, push-pull first conv."""
    return _densenet("densenet40_12", "densenet40_12_pp", pretrained, "stem", **kwargs)


@register_model
def densenet40_12_pp_b1(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-40, k=12, push-pull first conv and dense block 1."""
    return _densenet("densenet40_12", "densenet40_12_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def densenet100_12(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-100, k=12, for CIFAR."""
    return _densenet("densenet100_12", "densenet100_12", pretrained, None, **kwargs)


@register_model
def densenet100_12_pp(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-100, k=12, push-pull first conv."""
    return _densenet("densenet100_12", "densenet100_12_pp", pretrained, "stem", **kwargs)


@register_model
def densenet100_12_pp_b1(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-100, k=12, push-pull first conv and dense block 1."""
    return _densenet("densenet100_12", "densenet100_12_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def densenet100_24(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-100, k=24, for CIFAR."""
    return _densenet("densenet100_24", "densenet100_24", pretrained, None, **kwargs)


@register_model
def densenet100_24_pp(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-100, k=24, push-pull first conv."""
    return _densenet("densenet100_24", "densenet100_24_pp", pretrained, "stem", **kwargs)


@register_model
def densenet100_24_pp_b1(pretrained: bool = False, **kwargs) -> CifarDenseNet:
    """DenseNet-BC-100, k=24, push-pull first conv and dense block 1."""
    return _densenet("densenet100_24", "densenet100_24_pp_b1", pretrained, "stage1", **kwargs)
