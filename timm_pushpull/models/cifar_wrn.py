"""Wide ResNets for CIFAR, with push-pull and anti-aliased variants.

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016, arXiv:1605.07146: WRN-d-k has a 3x3
stem (16) and three stages of (d-4)/6 pre-activation blocks with 16k/32k/64k channels, dropout
between the two convs (``proj_drop_rate``, 0.3 in the paper's dropout runs).
Push-pull WRN: Strisciuglio et al., arXiv:1901.10208 and doi:10.1007/s00521-020-04751-8.
"""

from timm.models import register_model

from ._cfg import (
    PAPER_ANTIALIAS,
    PAPER_PUSHPULL,
    PAPER_PUSHPULL_2019,
    cifar_cfg,
    pushpull_first_conv,
)
from ._default_cfgs import family_default_cfgs
from .cifar_resnet import CifarResNet, create_cifar_resnet

# name -> (depth, widen factor)
WRN_CONFIGS = {
    "wrn16_4": (16, 4),
    "wrn16_8": (16, 8),
    "wrn16_10": (16, 10),
    "wrn28_1": (28, 1),
    "wrn28_4": (28, 4),
    "wrn28_8": (28, 8),
    "wrn28_10": (28, 10),
    "wrn40_2": (40, 2),
}


def _wrn(
    base_name: str, variant: str, pretrained: bool, scope: str | None, **kwargs
) -> CifarResNet:
    depth, width = WRN_CONFIGS[base_name]
    model_args = dict(
        layers=((depth - 4) // 6,) * 3,
        channels=(16 * width, 32 * width, 64 * width),
        block="preact",
        pp_scope=scope,
    )
    return create_cifar_resnet(variant, pretrained, **dict(model_args, **kwargs))


default_cfgs = family_default_cfgs(
    (f"{name}{suffix}" for name in WRN_CONFIGS for suffix in ("", "_pp", "_pp_b1")),
    cifar_cfg,
    lambda name: dict(
        first_conv=pushpull_first_conv("conv1", name),
        classifier="fc",
        paper_ids=("arXiv:1605.07146", PAPER_PUSHPULL_2019, PAPER_PUSHPULL, PAPER_ANTIALIAS),
    ),
)


@register_model
def wrn16_4(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-4."""
    return _wrn("wrn16_4", "wrn16_4", pretrained, None, **kwargs)


@register_model
def wrn16_4_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-4, push-pull first conv."""
    return _wrn("wrn16_4", "wrn16_4_pp", pretrained, "stem", **kwargs)


@register_model
def wrn16_4_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-4, push-pull first conv and first stage."""
    return _wrn("wrn16_4", "wrn16_4_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn16_8(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-8."""
    return _wrn("wrn16_8", "wrn16_8", pretrained, None, **kwargs)


@register_model
def wrn16_8_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-8, push-pull first conv."""
    return _wrn("wrn16_8", "wrn16_8_pp", pretrained, "stem", **kwargs)


@register_model
def wrn16_8_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-8, push-pull first conv and first stage."""
    return _wrn("wrn16_8", "wrn16_8_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn16_10(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-10."""
    return _wrn("wrn16_10", "wrn16_10", pretrained, None, **kwargs)


@register_model
def wrn16_10_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-10, push-pull first conv."""
    return _wrn("wrn16_10", "wrn16_10_pp", pretrained, "stem", **kwargs)


@register_model
def wrn16_10_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-16-10, push-pull first conv and first stage."""
    return _wrn("wrn16_10", "wrn16_10_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn28_1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-1."""
    return _wrn("wrn28_1", "wrn28_1", pretrained, None, **kwargs)


@register_model
def wrn28_1_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-1, push-pull first conv."""
    return _wrn("wrn28_1", "wrn28_1_pp", pretrained, "stem", **kwargs)


@register_model
def wrn28_1_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-1, push-pull first conv and first stage."""
    return _wrn("wrn28_1", "wrn28_1_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn28_4(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-4."""
    return _wrn("wrn28_4", "wrn28_4", pretrained, None, **kwargs)


@register_model
def wrn28_4_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-4, push-pull first conv."""
    return _wrn("wrn28_4", "wrn28_4_pp", pretrained, "stem", **kwargs)


@register_model
def wrn28_4_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-4, push-pull first conv and first stage."""
    return _wrn("wrn28_4", "wrn28_4_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn28_8(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-8."""
    return _wrn("wrn28_8", "wrn28_8", pretrained, None, **kwargs)


@register_model
def wrn28_8_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-8, push-pull first conv."""
    return _wrn("wrn28_8", "wrn28_8_pp", pretrained, "stem", **kwargs)


@register_model
def wrn28_8_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-8, push-pull first conv and first stage."""
    return _wrn("wrn28_8", "wrn28_8_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn28_10(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-10."""
    return _wrn("wrn28_10", "wrn28_10", pretrained, None, **kwargs)


@register_model
def wrn28_10_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-10, push-pull first conv."""
    return _wrn("wrn28_10", "wrn28_10_pp", pretrained, "stem", **kwargs)


@register_model
def wrn28_10_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-28-10, push-pull first conv and first stage."""
    return _wrn("wrn28_10", "wrn28_10_pp_b1", pretrained, "stage1", **kwargs)


@register_model
def wrn40_2(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-40-2."""
    return _wrn("wrn40_2", "wrn40_2", pretrained, None, **kwargs)


@register_model
def wrn40_2_pp(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-40-2, push-pull first conv."""
    return _wrn("wrn40_2", "wrn40_2_pp", pretrained, "stem", **kwargs)


@register_model
def wrn40_2_pp_b1(pretrained: bool = False, **kwargs) -> CifarResNet:
    """WRN-40-2, push-pull first conv and first stage."""
    return _wrn("wrn40_2", "wrn40_2_pp_b1", pretrained, "stage1", **kwargs)
