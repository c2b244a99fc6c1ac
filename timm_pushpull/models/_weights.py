"""What counts as weights: the checks every loader runs before a model is used.

A weights file can hold anything safetensors or ``torch.save`` can: integer tensors that
``load_state_dict`` silently casts into a float model, NaN or infinite values that make every
prediction the same class, and a ``pretrained_cfg`` whose normalisation divides by zero. Such a
model still runs and gives numbers, wrong ones; the loaders (:func:`~timm_pushpull.factory.
load_weights`, ``pretrained=True`` through the local weights directory, ``local-dir:`` and
``hf-hub:``) refuse it instead, naming the file and the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open

from ..constants import WEIGHTS_FILE
from ..errors import CheckpointError

__all__ = ["check_loaded_weights", "check_pretrained_cfg", "check_state_dict"]


def check_pretrained_cfg(cfg: Mapping[str, Any], where: str) -> None:
    """A pretrained cfg's ``input_size`` (channels, height, width: positive ints), ``crop_pct``
    (a positive number) and ``mean`` / ``std`` (as many finite numbers each, std > 0), when given:
    the data config of every evaluation and training run comes from them."""
    size = cfg.get("input_size")
    if size is not None and (
        not isinstance(size, list | tuple)
        or len(size) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise CheckpointError(
            f"{where}: pretrained_cfg input_size must be [channels, height, width], positive "
            f"ints, got {size!r}"
        )
    crop = cfg.get("crop_pct")
    if crop is not None and (
        isinstance(crop, bool) or not isinstance(crop, int | float) or not 0 < crop < math.inf
    ):
        raise CheckpointError(
            f"{where}: pretrained_cfg crop_pct must be a positive number, got {crop!r}"
        )
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None and std is None:
        return
    try:
        if not isinstance(mean, list | tuple) or not isinstance(std, list | tuple):
            raise TypeError
        mean, std = [float(m) for m in mean], [float(s) for s in std]
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{where}: pretrained_cfg mean and std must be lists of numbers, got {mean!r} and "
            f"{std!r}"
        ) from None
    usable = mean and len(mean) == len(std) and all(map(math.isfinite, mean + std))
    if not usable or min(std) <= 0:
        raise CheckpointError(
            f"{where}: pretrained_cfg mean {mean} and std {std} are no normalisation (as many "
            "finite values each, std > 0 as images are divided by it)"
        )


def check_state_dict(state_dict: Mapping[str, Any], model: nn.Module, where: str) -> None:
    """Tensors of ``state_dict`` loaded into floating-point tensors of ``model`` must be
    floating point themselves and finite."""
    expected = model.state_dict()
    for key, value in state_dict.items():
        target = expected.get(key)
        if not isinstance(value, torch.Tensor) or target is None:
            continue
        if target.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"{where}: {key} holds {value.dtype} values where the model has floating-point "
                "weights; this is not a weights file of it"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{where}: {key} holds NaN or infinite values")


def _pretrained_file(cfg: Mapping[str, Any]) -> Path | None:
    """The local file timm loaded a model's pretrained weights from (see timm's
    ``_resolve_pretrained_source``), when it is a file we can read."""
    source, file, hub_id = cfg.get("source"), cfg.get("file"), cfg.get("hf_hub_id")
    if source == "local-dir" or (source != "hf-hub" and file and cfg.get("state_dict") is None):
        path = Path(file)
        return path / WEIGHTS_FILE if path.is_dir() else path
    if hub_id and cfg.get("state_dict") is None:
        repo_id, _, revision = hub_id.partition("@")
        cached = try_to_load_from_cache(
            repo_id, cfg.get("hf_hub_filename") or WEIGHTS_FILE, revision=revision or None
        )
        return Path(cached) if isinstance(cached, str) else None
    return None


def check_loaded_weights(model: nn.Module) -> None:
    """After ``pretrained=True``: the file timm loaded held floating-point tensors where the model
    has some, every floating-point tensor of the model is finite, and its pretrained cfg's
    normalisation is usable. Raises :class:`~timm_pushpull.errors.CheckpointError`."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    file = _pretrained_file(cfg)
    where = (
        str(file) if file is not None else f"the pretrained weights of {cfg.get('architecture')}"
    )
    check_pretrained_cfg(cfg, where)
    if file is not None and file.suffix == ".safetensors" and file.is_file():
        expected = model.state_dict()
        with safe_open(file, framework="pt") as tensors:
            for key in tensors.keys():  # the header only: no tensor is read
                dtype = tensors.get_slice(key).get_dtype()
                target = expected.get(key)
                if target is not None and target.is_floating_point() and "F" not in dtype:
                    raise CheckpointError(
                        f"{where}: {key} holds {dtype} values where the model has floating-point "
                        "weights; this is not a weights file of it"
                    )
    check_state_dict(model.state_dict(), model, where)
