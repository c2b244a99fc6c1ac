"""ResNet for CIFAR-sized images, post-activation (He et al.) and pre-activation (Wide ResNet).

* ResNet-20/32/44/56/110, He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
  arXiv:1512.03385: 3x3 stem (16), three stages of BasicBlocks (16/32/64 channels), 1x1 conv + BN
  projection shortcuts where the shape changes (option B, as in the push-pull authors' released
  models, whose state-dict keys these match).
* The pre-activation block serves the Wide ResNets of :mod:`.cifar_wrn`.

Push-pull variants (``pp_scope``, ``pp_*``): Strisciuglio et al. 2020, doi:10.1007/s00521-020-04751-8.
Anti-aliasing (``aa``): blur-pool before every strided conv, which then runs at stride 1; the
projection shortcut reads the same blurred input (blur -> 1x1 conv -> BN), Zhang 2019, arXiv:1904.11486.
timm's ``drop_path_rate`` (stochastic depth on the residual branch, rising linearly over the blocks)
and ``drop_block_rate`` (DropBlock in the last two stages, as timm's ResNet): see :mod:`._drop`.
"""

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import (
    BatchNormAct2d,
    DropPath,
    calculate_drop_path_rates,
    create_classifier,
    get_device_dtype,
)
from timm.models import checkpoint_seq, register_model
from timm.models._features import feature_take_indices
from timm.models.resnet import drop_blocks

from ..layers import blur_pool_class
from ._builder import build_pushpull_model
from ._cfg import (
    PAPER_ANTIALIAS,
    PAPER_PUSHPULL,
    cifar_cfg,
    pushpull_first_conv,
)
from ._default_cfgs import family_default_cfgs
from ._drop import check_drop_rate
from ._variants import scoped_conv_layers

__all__ = ["CifarResNet", "BasicBlock", "PreActBasicBlock"]

# depth -> blocks per stage (6n + 2 layers)
RESNET_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


def _blur(aa_layer: type[nn.Module] | None, channels: int, stride: int) -> nn.Module:
    return (
        aa_layer(channels=channels, stride=stride)
        if aa_layer is not None and stride > 1
        else nn.Identity()
    )


def _drop_modules(
    drop_block: Callable[[], nn.Module] | None, drop_path: float
) -> tuple[nn.Module, nn.Module]:
    """(DropBlock, DropPath) of a block, identities when off: no extra work, same state dict."""
    return (
        drop_block() if drop_block is not None else nn.Identity(),
        DropPath(drop_path) if drop_path > 0 else nn.Identity(),
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU (He et al. 2016)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        aa_layer: type[nn.Module] | None = None,
        proj_drop_rate: float = 0.0,
        drop_block: Callable[[], nn.Module] | None = None,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.aa = _blur(aa_layer, in_chs, stride)
        conv_stride = 1 if aa_layer is not None else stride
        self.conv1 = conv_layer(in_chs, out_chs, 3, conv_stride, 1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(out_chs, **dd)
        self.drop_block, self.drop_path = _drop_modules(drop_block, drop_path)
        self.act1 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(proj_drop_rate)
        self.conv2 = conv_layer(out_chs, out_chs, 3, 1, 1, bias=False, **dd)
        self.bn2 = nn.BatchNorm2d(out_chs, **dd)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, conv_stride, bias=False, **dd),
                nn.BatchNorm2d(out_chs, **dd),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.aa(x)  # one blur feeds both branches: the same as blurring each
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.drop(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        x = self.bn2(self.conv2(x))
        return self.act2(self.drop_path(x) + shortcut)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 + shortcut (Zagoruyko & Komodakis 2016).

    Where the shape changes the 1x1 shortcut conv reads the pre-activated input.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        aa_layer: type[nn.Module] | None = None,
        proj_drop_rate: float = 0.0,
        drop_block: Callable[[], nn.Module] | None = None,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.bn1 = BatchNormAct2d(in_chs, **dd)
        self.aa = _blur(aa_layer, in_chs, stride)
        conv_stride = 1 if aa_layer is not None else stride
        self.conv1 = conv_layer(in_chs, out_chs, 3, conv_stride, 1, bias=False, **dd)
        self.bn2 = BatchNormAct2d(out_chs, **dd)
        self.drop_block, self.drop_path = _drop_modules(drop_block, drop_path)
        self.drop = nn.Dropout(proj_drop_rate)
        self.conv2 = conv_layer(out_chs, out_chs, 3, 1, 1, bias=False, **dd)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Conv2d(in_chs, out_chs, 1, conv_stride, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_pre = self.aa(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(x_pre)
        x = self.conv2(self.drop(self.drop_block(self.bn2(self.conv1(x_pre)))))
        return self.drop_path(x) + shortcut


BLOCKS = {"basic": BasicBlock, "preact": PreActBasicBlock}


class CifarResNet(nn.Module):
    """Three-stage ResNet for 32x32 inputs (any size works: global pooling).

    Args:
        layers: blocks per stage.
        channels: widths of the three stages.
        block: ``"basic"`` (post-activation, stem conv-BN-ReLU) or ``"preact"`` (pre-activation,
            stem conv only, final BN-ReLU as ``norm``).
        stem_width: output channels of the 3x3 stem conv ``conv1``.
        drop_path_rate: stochastic depth of the last block (the first has 0, linear between).
        drop_block_rate: DropBlock in stages 2 (5x5 blocks, gamma scale 0.25) and 3 (3x3), as in
            the last two stages of timm's ResNet.
        aa: blur filter for anti-aliased downsampling (``"bin5"``, ``"tri3"``, ``"rect2"`` ...) or None.
        pp_scope: push-pull layers in ``"stem"`` (conv1) or ``"stage1"`` (conv1 and every 3x3
            conv of ``layer1``), None for none.
        **pp_kwargs: ``pp_pull_scale``, ``pp_alpha``, ``pp_learn_alpha``, ``pp_rectify``,
            ``pp_attention``, ``pp_scales``, ``pp_pull_mode``, see :func:`timm_pushpull.models._variants.pushpull_kwargs`.
    """

    def __init__(
        self,
        layers: tuple[int, int, int] = (3, 3, 3),
        channels: tuple[int, int, int] = (16, 32, 64),
        block: str = "basic",
        stem_width: int = 16,
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
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
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {tuple(BLOCKS)}, got {block!r}")
        if len(layers) != 3 or len(channels) != 3:
            raise ValueError(f"layers and channels need 3 stages, got {layers} and {channels}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        preact = block == "preact"
        stem_conv, stage1_conv = scoped_conv_layers(pp_scope, **pp_kwargs)
        aa_layer = blur_pool_class(aa)

        self.conv1 = stem_conv(in_chans, stem_width, 3, 1, 1, bias=False, **dd)
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(stem_width, **dd)
        self.act1 = nn.Identity() if preact else nn.ReLU(inplace=True)
        self.feature_info = [
            dict(num_chs=stem_width, reduction=1, module="conv1" if preact else "act1")
        ]

        block_drop_paths = iter(
            calculate_drop_path_rates(
                check_drop_rate("drop_path_rate", drop_path_rate), sum(layers)
            )
        )
        # timm's ResNet rule for its 4 stages, on our 3: none in the first, DropBlock after
        stage_drop_blocks = drop_blocks(check_drop_rate("drop_block_rate", drop_block_rate))[1:]
        in_chs, reduction = stem_width, 1
        for i, (num_blocks, out_chs) in enumerate(zip(layers, channels)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = [
                BLOCKS[block](
                    in_chs if j == 0 else out_chs,
                    out_chs,
                    stride if j == 0 else 1,
                    conv_layer=stage1_conv if i == 0 else nn.Conv2d,
                    aa_layer=aa_layer,
                    proj_drop_rate=proj_drop_rate,
                    drop_block=stage_drop_blocks[i],
                    drop_path=next(block_drop_paths),
                    **dd,
                )
                for j in range(num_blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(
                dict(num_chs=out_chs, reduction=reduction, module=f"layer{i + 1}")
            )
            in_chs = out_chs
        self.norm = BatchNormAct2d(in_chs, **dd) if preact else nn.Identity()
        if preact:  # the last feature is the normalised one, as in timm's pre-activation ResNetV2
            self.feature_info[-1]["module"] = "norm"

        self.num_features = self.head_hidden_size = in_chs
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **dd
        )
        self.init_weights()

    @torch.jit.ignore
    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        blocks = r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"
        return dict(stem=r"^conv1|^bn1", blocks=[(blocks, None), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **get_device_dtype(self)
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.global_pool.train(self.training)  # new modules follow the model's mode
        self.fc.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features of the stem (index 0) and the three stages (1-3; 3 after ``norm``)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take_indices:
            intermediates.append(x)
        stages = [self.layer1, self.layer2, self.layer3]
        for feat_idx, stage in enumerate(stages[:max_index] if stop_early else stages, start=1):
            x = checkpoint_seq(stage, x) if self.grad_checkpointing else stage(x)
            if feat_idx == len(stages):
                x = self.norm(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and head) that the features ``indices`` do not need."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for i in range(max_index + 1, 4):
            setattr(self, f"layer{i}", nn.Sequential())
        prune_end = max_index < 3
        if prune_end or prune_norm:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq([self.layer1, self.layer2, self.layer3], x, flatten=True)
        else:
            x = self.layer3(self.layer2(self.layer1(x)))
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs) -> CifarResNet:
    """The one builder of :class:`CifarResNet` models (ResNet and Wide ResNet entrypoints)."""
    return build_pushpull_model(
        CifarResNet, variant, pretrained, feature_cfg=dict(out_indices=(0, 1, 2, 3)), **kwargs
    )


def _resnet(depth: int, variant: str, pretrained: bool, scope: str | None, **kwargs) -> CifarResNet:
    model_args = dict(layers=(RESNET_DEPTHS[depth],) * 3, pp_scope=scope)
    return create_cifar_resnet(variant, pretrained, **dict(model_args, **kwargs))


default_cfgs = family_default_cfgs(
    (f"resnet{depth}{suffix}" for depth in RESNET_DEPTHS for suffix in ("", "_pp", "_pp_b1")),
    cifar_cfg,
    lambda name: dict(
        first_conv=pushpull_first_conv("conv1", name),
        classifier="fc",
        paper_ids=("arXiv:1512.03385", PAPER_PUSHPULL, PAPER_ANTIALIAS),
    ),
)


@register_model
def resnet20(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR."""
    return _resnet(20, "resnet20", pretrained, None, **kwargs)


@register_model
def resnet20_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR, push-pull first conv."""
    return _resnet(20, "resnet20_pp", pretrained, "stem", **kwargs)


@register_model
def resnet20_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR, push-pull first conv and first stage."""
    return _resnet(20, "resnet20_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def resnet32(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR."""
    return _resnet(32, "resnet32", pretrained, None, **kwargs)


@register_model
def resnet32_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR, push-pull first conv."""
    return _resnet(32, "resnet32_pp", pretrained, "stem", **kwargs)


@register_model
def resnet32_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR, push-pull first conv and first stage."""
    return _resnet(32, "resnet32_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def resnet44(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR."""
    return _resnet(44, "resnet44", pretrained, None, **kwargs)


@register_model
def resnet44_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR, push-pull first conv."""
    return _resnet(44, "resnet44_pp", pretrained, "stem", **kwargs)


@register_model
def resnet44_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR, push-pull first conv and first stage."""
    return _resnet(44, "resnet44_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def resnet56(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR."""
    return _resnet(56, "resnet56", pretrained, None, **kwargs)


@register_model
def resnet56_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR, push-pull first conv."""
    return _resnet(56, "resnet56_pp", pretrained, "stem", **kwargs)


@register_model
def resnet56_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR, push-pull first conv and first stage."""
    return _resnet(56, "resnet56_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def resnet110(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR."""
    return _resnet(110, "resnet110", pretrained, None, **kwargs)


@register_model
def resnet110_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR, push-pull first conv."""
    return _resnet(110, "resnet110_pp", pretrained, "stem", **kwargs)


@register_model
def resnet110_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR, push-pull first conv and first stage."""
    return _resnet(110, "resnet110_pp_b1", pretrained, "stage1", **kwargs)
