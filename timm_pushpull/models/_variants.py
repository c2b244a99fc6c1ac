"""The model kwargs that turn any family into its push-pull and/or anti-aliased variant.

Every value is a plain str / number / bool (``pp_scales`` also a list of numbers) so that timm
records it in ``config.json["model_args"]`` and ``timm.create_model("local-dir:...")`` rebuilds
the same network.

Push-pull: Strisciuglio et al., "Enhanced robustness of convolutional networks with a push-pull
inhibition layer", Neural Computing and Applications 32 (2020), doi:10.1007/s00521-020-04751-8.
Anti-aliasing: Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019,
arXiv:1904.11486.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn

from ..layers import pushpull_conv_layer

# Which convolutions are push-pull layers: none, the first conv (``*_pp``), or the first conv plus
# every 3x3 conv of the first stage / dense block (``*_pp_b1``).
PP_SCOPES = (None, "stem", "stage1")

# The push-pull options of every model: ``pp_`` + the PushPull2d argument it sets; ``pp_scales``
# (several pull scales, the multi-scale variant) sets ``pull_scale`` too.
PP_ARGS = (
    "pp_pull_scale", "pp_alpha", "pp_learn_alpha", "pp_rectify", "pp_attention", "pp_pull_mode",
    "pp_scales",
)  # fmt: skip
# Earlier names, still accepted with a DeprecationWarning (configs and scripts that use them).
DEPRECATED_PP_ARGS = {"pp_h": "pp_pull_scale", "pp_mode": "pp_pull_mode"}


def parse_pull_scales(pp_scales: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``"1.5,2,3"`` / ``(1.5, 2, 3)`` -> ``(1.5, 2.0, 3.0)``; ``None`` or ``""`` -> ``None``."""
    if pp_scales is None or pp_scales == "":
        return None
    items = pp_scales.split(",") if isinstance(pp_scales, str) else pp_scales
    try:
        scales = tuple(float(h) for h in items)
    except (TypeError, ValueError):
        raise ValueError(
            f"pp_scales must be comma-separated numbers like '1.5,2,3' or a sequence of numbers, "
            f"got {pp_scales!r}"
        ) from None
    return scales


def pushpull_kwargs(**pp_kwargs: Any) -> dict[str, Any]:
    """Translate ``pp_*`` model kwargs into :class:`~timm_pushpull.layers.PushPull2d` kwargs.

    ``pp_scales`` takes precedence over ``pp_pull_scale``. Deprecated aliases: ``pp_h`` (use
    ``pp_pull_scale``) and ``pp_mode`` (use ``pp_pull_mode``).
    """
    for old, new in DEPRECATED_PP_ARGS.items():
        if old in pp_kwargs:
            if new in pp_kwargs:
                raise TypeError(f"model arguments {old} and {new} are the same; give only {new}")
            warnings.warn(
                f"model argument {old} is deprecated, use {new}", DeprecationWarning, stacklevel=2
            )
            pp_kwargs[new] = pp_kwargs.pop(old)
    unknown = sorted(set(pp_kwargs) - set(PP_ARGS))
    if unknown:
        raise TypeError(
            f"unexpected model argument(s) {unknown}; push-pull arguments are {PP_ARGS}"
        )
    kwargs = {k.removeprefix("pp_"): v for k, v in pp_kwargs.items() if k != "pp_scales"}
    scales = parse_pull_scales(pp_kwargs.get("pp_scales"))
    if scales is not None:
        kwargs["pull_scale"] = scales
    return kwargs


def scope_pushpull_kwargs(pp_scope: str | None, **pp_kwargs: Any) -> dict[str, Any] | None:
    """Validated PushPull2d kwargs for a model with push-pull layers in ``pp_scope``; None for none."""
    if pp_scope not in PP_SCOPES:
        raise ValueError(f"pp_scope must be one of {PP_SCOPES}, got {pp_scope!r}")
    kwargs = pushpull_kwargs(**pp_kwargs)
    if pp_scope is None:
        if pp_kwargs:
            raise ValueError(
                f"{sorted(pp_kwargs)} only apply to push-pull layers, but this model has none: "
                f"use a *_pp / *_pp_b1 model or set pp_scope to 'stem' or 'stage1'"
            )
        return None
    return kwargs


def scoped_conv_layers(
    pp_scope: str | None, **pp_kwargs: Any
) -> tuple[Callable[..., nn.Module], Callable[..., nn.Module]]:
    """Conv constructors ``(stem_conv, stage1_conv)`` for a model with push-pull layers in ``pp_scope``.

    Both have ``nn.Conv2d``'s signature; all later stages always use ``nn.Conv2d``.
    """
    kwargs = scope_pushpull_kwargs(pp_scope, **pp_kwargs)
    if kwargs is None:
        return nn.Conv2d, nn.Conv2d
    pushpull = pushpull_conv_layer(**kwargs)
    return pushpull, pushpull if pp_scope == "stage1" else nn.Conv2d
