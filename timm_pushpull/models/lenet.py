"""LeNet-5 for 28x28 greyscale images, in the push-pull papers' configurations A-D and PA-PD.

LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998
(doi:10.1109/5.726791), as used by Strisciuglio et al., arXiv:1901.10208 and
doi:10.1007/s00521-020-04751-8: conv5x5 (pad 2)-ReLU-maxpool 2, conv5x5-ReLU-maxpool 2, two hidden
fully-connected layers and the classifier ``fc``. Configurations (first conv / second conv
filters, hidden units): A 6/16, 128-64; B 6/8, 64-32; C 4/16, 128-64; D 4/8, 64-32. The
push-pull versions (PA-PD, ``lenet5_a_pp`` ...) replace the first conv.

Anti-aliasing (``aa``): each max-pool becomes max-pool at stride 1 followed by a blur-pool
(Zhang 2019, arXiv:1904.11486, "MaxBlurPool").
"""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d, get_device_dtype, to_2tuple
from timm.models import checkpoint_seq, register_model
from timm.models._features import feature_take_indices

from ..layers import MaxBlurPool2d, parse_blur_spec
from ._builder import build_pushpull_model
from ._cfg import (
    PAPER_ANTIALIAS,
    PAPER_PUSHPULL,
    PAPER_PUSHPULL_2019,
    fmnist_cfg,
    pushpull_first_conv,
)
from ._default_cfgs import family_default_cfgs
from ._drop import refuse_drop_rates
from ._variants import scoped_conv_layers

__all__ = ["LeNet5"]

# configuration -> (conv channels, hidden units)
LENET_CONFIGS = {
    "a": ((6, 16), (128, 64)),
    "b": ((6, 8), (64, 32)),
    "c": ((4, 16), (128, 64)),
    "d": ((4, 8), (64, 32)),
}
KERNEL_SIZE = 5
# global_pool of the classic head: flatten the 5x5 maps into fc1 (fixed input size)
FLATTEN = "flatten"


class Flatten2d(nn.Module):
    """The classic LeNet head's pooling: none, the feature maps are flattened into ``fc1``."""

    def __init__(self) -> None:
        super().__init__()
        self.pool_type = FLATTEN  # timm reads it (save_for_hf records it as global_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def _pool(aa: str | None, channels: int) -> nn.Module:
    if aa is None:
        return nn.MaxPool2d(2, 2)
    return MaxBlurPool2d(channels, 2, 2, 0, *parse_blur_spec(aa))


class LeNet5(nn.Module):
    """LeNet-5: two conv-ReLU-maxpool stages and a three-layer fully-connected head.

    Feature levels (``feature_info``, ``forward_intermediates``): the first conv-ReLU (C1,
    reduction 1), the first pooling (S2, 2) and the second conv-ReLU-pool stage (S4, 4), whose
    output is ``forward_features``.

    Args:
        conv_chs: filters of the two convs.
        hidden_dims: units of the two hidden fully-connected layers (``fc1``, ``fc2``).
        img_size: input size; with ``global_pool="flatten"`` (the classic LeNet) it sets the
            width of ``fc1``. A timm pool type (``"avg"``, ``"max"`` ...) accepts any size, and
            ``""`` returns the unpooled features (no hidden layers; with ``num_classes=0``).
        drop_path_rate, drop_block_rate: timm's arguments, accepted at 0 only (see :mod:`._drop`).
        aa: blur filter for anti-aliased max-pooling (``"bin3"``, ``"rect2"`` ...) or None.
        pp_scope: ``"stem"`` for a push-pull first conv, None for none.
        **pp_kwargs: ``pp_pull_scale``, ``pp_alpha``, ... see :func:`timm_pushpull.models._variants.pushpull_kwargs`.
    """

    def __init__(
        self,
        conv_chs: tuple[int, int] = (6, 16),
        hidden_dims: tuple[int, int] = (128, 64),
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int | tuple[int, int] = 28,
        global_pool: str = FLATTEN,
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
        refuse_drop_rates(
            "LeNet-5",
            "has no residual blocks to drop (stochastic depth) and no ResNet stages where timm "
            "puts DropBlock; use drop_rate (dropout before the classifier)",
            drop_path_rate=drop_path_rate,
            drop_block_rate=drop_block_rate,
        )
        if pp_scope not in (None, "stem"):
            raise ValueError(
                f"LeNet-5 takes pp_scope None or 'stem' (it has no stages), got {pp_scope!r}"
            )
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.img_size = to_2tuple(img_size)
        stem_conv, _ = scoped_conv_layers(pp_scope, **pp_kwargs)
        c1, c2 = conv_chs

        self.conv1 = stem_conv(in_chans, c1, KERNEL_SIZE, 1, KERNEL_SIZE // 2, bias=True, **dd)
        # not in place: gradient checkpointing runs each layer as its own segment
        self.act1 = nn.ReLU()
        self.pool1 = _pool(aa, c1)
        self.conv2 = nn.Conv2d(c1, c2, KERNEL_SIZE, bias=True, **dd)
        self.act2 = nn.ReLU()
        self.pool2 = _pool(aa, c2)
        self.feature_info = [
            dict(num_chs=c1, reduction=1, module="act1"),
            dict(num_chs=c1, reduction=2, module="pool1"),
            dict(num_chs=c2, reduction=4, module="pool2"),
        ]
        self.num_features = c2
        self.hidden_dims = hidden_dims
        self._set_head(global_pool, num_classes, **dd)

    def _set_head(self, global_pool: str, num_classes: int, device=None, dtype=None) -> None:
        """Pooling, hidden layers (``pre_logits``) and classifier; fc1's width depends on the pooling."""
        dd = {"device": device, "dtype": dtype}
        if global_pool == FLATTEN:
            if isinstance(self.pool2, nn.Identity):
                raise ValueError(
                    f"global_pool={FLATTEN!r} (the classic head) needs the full network; a pruned "
                    f"LeNet-5 takes a timm pool type ('avg', 'max', ...) or '' (no pooling)"
                )
            # conv1 keeps the size, conv2 (valid) loses 4 pixels, each pool halves
            h, w = ((s // 2 - (KERNEL_SIZE - 1)) // 2 for s in self.img_size)
            if h < 1 or w < 1:
                raise ValueError(f"img_size {self.img_size} is too small for LeNet-5 (at least 12)")
            pool = Flatten2d()
            pooled = self.num_features * h * w
        else:
            pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
            pooled = self.num_features * pool.feat_mult()
        if global_pool:
            hidden = nn.Sequential(
                OrderedDict(
                    fc1=nn.Linear(pooled, self.hidden_dims[0], **dd),
                    act1=nn.ReLU(inplace=True),
                    fc2=nn.Linear(self.hidden_dims[0], self.hidden_dims[1], **dd),
                    act2=nn.ReLU(inplace=True),
                )
            )
            self.head_hidden_size = self.hidden_dims[1]
        else:  # no pooling: the unpooled features, as timm's models give them
            pool = SelectAdaptivePool2d(pool_type="", flatten=False)
            hidden = nn.Identity()
            self.head_hidden_size = self.num_features
        self.global_pool, self.pre_logits = pool, hidden
        self.num_classes = num_classes
        self.fc = (
            nn.Linear(self.head_hidden_size, num_classes, **dd)
            if num_classes > 0
            else nn.Identity()
        )
        for module in (self.global_pool, self.pre_logits, self.fc):
            module.train(self.training)  # new modules follow the model's mode

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return dict(stem=r"^conv1", blocks=r"^conv2|^pre_logits")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier; a new ``global_pool`` also re-creates the hidden layers it feeds."""
        dd = get_device_dtype(self)
        if global_pool is not None and global_pool != self.global_pool.pool_type:
            self._set_head(global_pool, num_classes, **dd)
            return
        self.num_classes = num_classes
        self.fc = (
            nn.Linear(self.head_hidden_size, num_classes, **dd)
            if num_classes > 0
            else nn.Identity()
        )
        self.fc.train(self.training)

    def _stages(self) -> list[list[nn.Module]]:
        """The layers from one feature level to the next (``feature_info`` order)."""
        return [[self.conv1, self.act1], [self.pool1], [self.conv2, self.act2, self.pool2]]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features after the first conv-ReLU (index 0), the first pooling (1) and the second
        stage (2, the ``forward_features`` output)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        stages = self._stages()
        intermediates = []
        for feat_idx, stage in enumerate(stages[: max_index + 1] if stop_early else stages):
            for layer in stage:
                x = layer(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers (and head) that the features ``indices`` do not need."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if max_index < 2:
            self.conv2, self.act2, self.pool2 = nn.Identity(), nn.Identity(), nn.Identity()
            self.num_features = self.feature_info[max_index]["num_chs"]
        if max_index < 1:
            self.pool1 = nn.Identity()
        if prune_head or max_index < 2:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            layers = [self.conv1, self.act1, self.pool1, self.conv2, self.act2, self.pool2]
            return checkpoint_seq(layers, x)
        x = self.pool1(self.act1(self.conv1(x)))
        return self.pool2(self.act2(self.conv2(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.global_pool(x))
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _lenet(config: str, variant: str, pretrained: bool, scope: str | None, **kwargs) -> LeNet5:
    conv_chs, hidden_dims = LENET_CONFIGS[config]
    model_args = dict(conv_chs=conv_chs, hidden_dims=hidden_dims, pp_scope=scope)
    return build_pushpull_model(
        LeNet5,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2)),
        **dict(model_args, **kwargs),
    )


default_cfgs = family_default_cfgs(
    (f"lenet5_{config}{suffix}" for config in LENET_CONFIGS for suffix in ("", "_pp")),
    fmnist_cfg,
    lambda name: dict(
        pool_size=(5, 5),  # forward_features of a 28x28 image
        fixed_input_size=True,
        first_conv=pushpull_first_conv("conv1", name),
        classifier="fc",
        paper_ids=("doi:10.1109/5.726791", PAPER_PUSHPULL_2019, PAPER_PUSHPULL, PAPER_ANTIALIAS),
    ),
)


@register_model
def lenet5_a(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 configuration A: 6/16 filters, 128-64 hidden units."""
    return _lenet("a", "lenet5_a", pretrained, None, **kwargs)


@register_model
def lenet5_b(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 configuration B: 6/8 filters, 64-32 hidden units."""
    return _lenet("b", "lenet5_b", pretrained, None, **kwargs)


@register_model
def lenet5_c(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 configuration C: 4/16 filters, 128-64 hidden units."""
    return _lenet("c", "lenet5_c", pretrained, None, **kwargs)


@register_model
def lenet5_d(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 configuration D: 4/8 filters, 64-32 hidden units."""
    return _lenet("d", "lenet5_d", pretrained, None, **kwargs)


@register_model
def lenet5_a_pp(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 PA: configuration A with a push-pull first conv."""
    return _lenet("a", "lenet5_a_pp", pretrained, "stem", **kwargs)


@register_model
def lenet5_b_pp(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 PB: configuration B with a push-pull first conv."""
    return _lenet("b", "lenet5_b_pp", pretrained, "stem", **kwargs)


@register_model
def lenet5_c_pp(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 PC: configuration C with a push-pull first conv."""
    return _lenet("c", "lenet5_c_pp", pretrained, "stem", **kwargs)


@register_model
def lenet5_d_pp(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 PD: configuration D with a push-pull first conv."""
    return _lenet("d", "lenet5_d_pp", pretrained, "stem", **kwargs)
