"""One place where every timm-pushpull entrypoint turns into a model."""

from typing import Any

import torch.nn as nn
from timm.models import build_model_with_cfg

from ._cfg import current_tag
from ._pretrained import with_local_pretrained
from ._weights import check_loaded_weights


def build_pushpull_model(
    model_cls: type[nn.Module], variant: str, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """timm's ``build_model_with_cfg`` plus our local-weights lookup for ``pretrained=True``.

    With ``pretrained=True`` the pretrained cfg is first pointed at a local copy of the weights
    (``TIMM_PUSHPULL_WEIGHTS_DIR``, see :mod:`._pretrained`) so that offline use works; timm
    falls back to the Hub id otherwise. A deprecated tag (``resnet20_pp.c10_official``: timm
    passes it as ``pretrained_cfg``) is renamed, with a ``DeprecationWarning``. Loaded weights
    are checked to be weights (floating point, finite, with a usable normalisation:
    :mod:`._weights`).
    """
    if isinstance(kwargs.get("pretrained_cfg"), str):
        kwargs["pretrained_cfg"] = current_tag(kwargs["pretrained_cfg"])
    if pretrained:
        kwargs = with_local_pretrained(variant, kwargs)
    model = build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    if pretrained:
        check_loaded_weights(model)
    return model
