"""Models from names, folders and weights files: ``create_model`` and the loaders behind the CLI.

``timm.create_model("hf-hub:ORG/NAME")`` and ``"local-dir:PATH"`` work after ``import
timm_pushpull``; :func:`create_model` is the same call with clear errors for the usual mistakes
(an unregistered architecture, weights that do not fit it), and rebuilds models fine-tuned after
``convert_to_pushpull`` from what their ``config.json`` records. :func:`load_weights` and
:func:`load_checkpoint_model` read weights files the user names (``--checkpoint``, ``publish``).

Security: weights are only ever read from safetensors (Hub or local folders), configs from JSON,
and ``.pth`` checkpoints with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import difflib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError, safe_open
from timm.models import is_model, load_state_dict, parse_model_name, split_model_name_tag

from .constants import CONVERSION_KEY, MODEL_CONFIG_FILE, VERSION_KEY, WEIGHTS_DIR_ENV, WEIGHTS_FILE
from .errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingFileError,
    UnknownModelError,
    UserError,
    hub_unreachable,
)
from .layers import convert_to_pushpull
from .models._pretrained import read_config
from .models._weights import check_loaded_weights, check_state_dict
from .version import __version__

__all__ = ["compare_keys", "create_model", "load_checkpoint_model", "load_weights"]


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` for timm-pushpull models, safetensors only, with clear errors.

    Accepts what timm accepts: ``"resnet20_pp.official_c10"``, ``"hf-hub:ORG/NAME"``,
    ``"local-dir:PATH"``. Before building anything it checks that the architecture (from the name
    or from ``config.json``) is registered, and that a Hub/local folder has ``model.safetensors``;
    weights that do not fit the architecture, or are no weights (integer or non-finite tensors,
    a normalisation dividing by zero: :mod:`.models._weights`), raise
    :class:`~.errors.CheckpointError`; a model too large for memory (``num_classes=10**12``) an
    :class:`~.errors.InvalidArgumentError`. No model is returned on error.
    """
    source, model_id = parse_model_name(model_name)
    if source == "local-dir":
        folder = Path(model_id)
        config = read_config(folder / MODEL_CONFIG_FILE)
        if pretrained and not (folder / WEIGHTS_FILE).is_file():
            raise MissingFileError(
                f"{folder} has no {WEIGHTS_FILE}: timm-pushpull loads weights only from safetensors"
            )
        architecture, where = config["architecture"], f"{folder / MODEL_CONFIG_FILE}"
    elif source == "hf-hub":
        repo_id, _, revision = model_id.partition("@")
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            raise InvalidArgumentError(
                f"{model_name}: {repo_id!r} is not a Hugging Face Hub repository id (ORG/NAME: "
                "letters, digits, - _ .); for a folder on this machine use local-dir:PATH"
            ) from None
        try:
            config_path = hf_hub_download(
                repo_id,
                MODEL_CONFIG_FILE,
                revision=revision or None,
                cache_dir=kwargs.get("cache_dir"),
            )
        except LocalEntryNotFoundError as error:
            raise hub_unreachable(
                repo_id,
                model_name,
                f"offline, load a local copy with 'local-dir:PATH' or through ${WEIGHTS_DIR_ENV}",
                kind=MissingFileError,
            ) from error
        config = read_config(config_path)
        architecture, where = config["architecture"], f"config.json of {model_id}"
        if pretrained:
            overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay.setdefault("hf_hub_filename", WEIGHTS_FILE)
            kwargs["pretrained_cfg_overlay"] = overlay
    else:
        config, where = {}, "the model name"
        architecture = split_model_name_tag(model_id)[0]
    if not is_model(architecture):
        raise UnknownModelError(_unknown_architecture_message(architecture, where, config))
    num_classes = kwargs.get("num_classes")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0
    ):
        raise InvalidArgumentError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if config.get(CONVERSION_KEY):
        return _create_converted(model_name, config, pretrained, **kwargs)
    try:
        model = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except UserError:
        raise
    except (MemoryError, RuntimeError, TypeError, ValueError, AttributeError, KeyError) as error:
        if _out_of_memory(error):
            raise InvalidArgumentError(
                f"{model_name} with {kwargs} does not fit in this machine's memory "
                f"({str(error).splitlines()[0]})"
            ) from error
        if config and isinstance(error, TypeError | ValueError):
            # the folder's config.json (model_args, pretrained_cfg) and the kwargs build no model
            raise CheckpointError(
                f"{model_name} cannot be built from {where}"
                + (f" with {kwargs}" if kwargs else "")
                + f": {str(error).splitlines()[0]}"
            ) from error
        # timm fails in several ways on foreign weights (state-dict errors, a missing first_conv
        # module, ...): name the mismatch itself.
        mismatch = None
        if pretrained and not isinstance(error, TypeError):
            mismatch = _loaded_weights_mismatch(
                source, model_id, architecture, config, kwargs.get("cache_dir"), error
            )
        if mismatch is None:
            raise
        raise CheckpointError(
            f"The weights of {model_name} do not fit the architecture {architecture!r} "
            f"(model_args {config.get('model_args', {})}): {mismatch}."
        ) from error
    if pretrained:
        check_loaded_weights(model)
    return model


def _out_of_memory(error: BaseException) -> bool:
    """A model too large to allocate (e.g. a classifier of 10**12 classes)."""
    text = str(error)
    return isinstance(error, MemoryError) or "allocate" in text or "Overflow" in text


def _loaded_weights_mismatch(
    source: str | None,
    model_id: str,
    architecture: str,
    config: Mapping,
    cache_dir: str | Path | None,
    error: BaseException,
) -> str | None:
    """Missing, unexpected and misshapen tensors of the weights timm failed to load, if any."""
    if source == "local-dir":
        weights = Path(model_id) / WEIGHTS_FILE
    elif source == "hf-hub":
        repo_id, _, revision = model_id.partition("@")
        cached = try_to_load_from_cache(
            repo_id, WEIGHTS_FILE, cache_dir=cache_dir, revision=revision or None
        )
        weights = Path(cached) if isinstance(cached, str) else None
    else:
        weights = None
    if weights is not None:
        return _weights_mismatch(weights, architecture, config.get("model_args") or {})
    return str(error) if "Error(s) in loading state_dict" in str(error) else None


def _create_converted(
    model_name: str, config: Mapping, pretrained: bool, **kwargs: Any
) -> nn.Module:
    """A model fine-tuned after ``convert_to_pushpull`` (``timm-pushpull train --convert``).

    timm rebuilds only the architecture named in ``config.json``; the recorded conversion is
    applied on top before the weights are loaded (strictly).
    """
    conversion = dict(config[CONVERSION_KEY])
    scope = conversion.pop("scope")
    model = convert_to_pushpull(
        timm.create_model(model_name, pretrained=False, **kwargs), scope, **conversion
    )
    if pretrained:
        source, model_id = parse_model_name(model_name)
        if source == "local-dir":
            weights = Path(model_id) / WEIGHTS_FILE
        else:
            repo_id, _, revision = model_id.partition("@")
            weights = hf_hub_download(
                repo_id, WEIGHTS_FILE, revision=revision or None, cache_dir=kwargs.get("cache_dir")
            )
        converted = f"{config['architecture']} converted with {config[CONVERSION_KEY]}"
        load_weights(model, weights, converted)
    return model


def _weights_mismatch(weights: Path, architecture: str, model_args: Mapping) -> str | None:
    """Missing, unexpected and misshapen tensors of a safetensors file for an architecture."""
    with safe_open(weights, framework="pt") as tensors:
        found = {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}
    model = timm.create_model(architecture, **model_args)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing, unexpected = compare_keys(expected, found)
    misshapen = [
        f"{k} {found[k]} != {v}" for k, v in expected.items() if k in found and found[k] != v
    ]
    problems = [
        f"{label} {', '.join(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", misshapen))
        if keys
    ]
    return "; ".join(problems) or None


def _unknown_architecture_message(architecture: str, where: str, config: Mapping) -> str:
    message = f"Architecture {architecture!r} (from {where}) is not registered with timm."
    close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.75)
    if close:
        message += f" Did you mean {', '.join(close)}?"
    written_by = config.get(VERSION_KEY)
    if written_by:
        message += (
            f" It was written by timm-pushpull {written_by} and this is timm-pushpull "
            f"{__version__}: install the version that has it (pip install -U timm-pushpull)."
        )
    else:
        message += (
            " timm knows plugin models only once their package is imported: if another package "
            "defines it, import that package before creating the model."
        )
    return message


def load_weights(model: nn.Module, path: str | Path, model_name: str | None = None) -> nn.Module:
    """Load a weights file into ``model`` strictly; ``model`` is returned.

    ``.safetensors`` files are read with safetensors, anything else with
    ``torch.load(weights_only=True)`` (timm's ``load_state_dict``, which also unwraps
    ``state_dict``/EMA entries). A file that is not readable, whose tensors do not fit, or that
    holds no weights (integer or non-finite values where the model has floating-point ones)
    raises :class:`~.errors.CheckpointError` naming the file.
    """
    path = Path(path)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    model_name = model_name or cfg.get("architecture") or type(model).__name__
    if not path.is_file():
        raise MissingFileError(f"weights file {path} not found")
    try:
        state_dict = load_state_dict(str(path), weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, SafetensorError) as error:
        raise CheckpointError(
            f"{path} is not a readable weights file (safetensors, or a torch checkpoint that "
            f"loads with weights_only=True): {str(error).strip() or type(error).__name__}"
        ) from error
    missing, unexpected = compare_keys(model.state_dict(), state_dict)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {model_name!r}: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}"
        )
    check_state_dict(state_dict, model, str(path))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit {model_name!r}: {error}") from error
    return model


def load_checkpoint_model(
    source: Path, model: str | None = None, model_args: Mapping[str, Any] | None = None
) -> nn.Module:
    """The model held by a timm model folder or a weights file, loaded strictly, in eval mode.

    A folder (``config.json`` + ``model.safetensors``: a training run, a converted official
    model, a published folder) declares its own architecture; a ``.safetensors``/``.pth`` file
    needs ``model`` (``architecture[.tag]``) and the ``model_args`` it was built with.
    """
    if source.is_dir():
        net = create_model(f"local-dir:{source}", pretrained=True)
        declared = net.pretrained_cfg["architecture"]
        if model is not None and split_model_name_tag(model)[0] != declared:
            raise CheckpointError(
                f"{source} holds a {declared!r}, but the hub config says {model!r}"
            )
        return net.eval()
    if not source.is_file():
        raise MissingFileError(f"{source} is neither a model folder nor a weights file")
    if model is None:
        raise InvalidArgumentError(
            f"{source} is a weights file: name its architecture with --model"
        )
    net = create_model(model, **dict(model_args or {}))
    return load_weights(net, source, model).eval()


def compare_keys(expected: Mapping, found: Mapping) -> tuple[list[str], list[str]]:
    """The keys of ``expected`` missing from ``found``, and those of ``found`` not expected."""
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
