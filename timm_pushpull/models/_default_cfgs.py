"""The pretrained cfgs of a family's architectures, and which of them is the default, in one place.

An architecture has a tag per set of weights a user can get (:mod:`._cfg`): ``official_c10`` where
the authors released a checkpoint (:mod:`.official`), ``demo_fmnist`` where ``timm-pushpull demo``
trains it; and, where no weights are on the family's own data, an untagged cfg without weights.
The default tag (the one ``timm.create_model(name)`` takes) always describes the family's own
data: timm's ``generate_default_cfgs`` takes the first cfg with weights, unless an untagged ``*``
cfg is there, so the untagged cfg is marked ``*``. A CIFAR ResNet whose only weights are the
demo's greyscale ones thus stays a CIFAR model by default, while a LeNet (a Fashion-MNIST family)
defaults to the demo's weights.
"""

from collections.abc import Callable, Iterable
from typing import Any

from timm.models import generate_default_cfgs

from ._cfg import DEMO_FMNIST, DEMO_FMNIST_MODELS, OFFICIAL_C10, demo_fmnist_cfg
from .official import OFFICIAL_CHECKPOINTS, official_c10_cfg

__all__ = ["family_default_cfgs"]

# what makes two cfgs describe the same data: the model's input and its normalisation
_DATA_FIELDS = ("input_size", "mean", "std")


def _architecture_cfgs(
    name: str, data_cfg: Callable[..., dict[str, Any]], fields: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """``{"name.tag": cfg}`` of one architecture, in the order of the module docstring."""
    cfgs = {}
    if name in OFFICIAL_CHECKPOINTS:
        cfgs[f"{name}.{OFFICIAL_C10}"] = data_cfg(**fields, **official_c10_cfg(name))
    if name in DEMO_FMNIST_MODELS:
        cfgs[f"{name}.{DEMO_FMNIST}"] = demo_fmnist_cfg(name, **fields)
    own = data_cfg(**fields)
    if not any(all(cfg[key] == own[key] for key in _DATA_FIELDS) for cfg in cfgs.values()):
        cfgs[f"{name}.*"] = own
    return cfgs


def family_default_cfgs(
    names: Iterable[str],
    data_cfg: Callable[..., dict[str, Any]],
    fields: Callable[[str], dict[str, Any]] = lambda name: {},
) -> dict[str, Any]:
    """The ``default_cfgs`` of the family of architectures ``names`` (timm's
    ``generate_default_cfgs``: architecture -> ``DefaultCfg``): ``data_cfg(**fields(name))`` is
    an architecture's cfg on the family's own data (e.g. :func:`~._cfg.cifar_cfg`), ``fields``
    its own fields (first conv, classifier, papers)."""
    return generate_default_cfgs(
        {
            key: cfg
            for name in names
            for key, cfg in _architecture_cfgs(name, data_cfg, fields(name)).items()
        }
    )
