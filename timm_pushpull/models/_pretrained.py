"""Where pretrained weights come from: a local copy, else timm's Hub download (safetensors only).

``timm.create_model(name, pretrained=True)`` runs every timm-pushpull entrypoint through
:func:`with_local_pretrained` (see ``_builder.py``), which points the pretrained cfg at a local copy
of the weights when one exists (timm's ``file`` source outranks the Hub id)::

    $TIMM_PUSHPULL_WEIGHTS_DIR/<architecture>.<tag>/model.safetensors   (+ config.json)
    $TIMM_PUSHPULL_WEIGHTS_DIR/<architecture>/model.safetensors         (config.json names the tag)

e.g. ``$TIMM_PUSHPULL_WEIGHTS_DIR/resnet20_pp.official_c10/``, exactly the folder that
``timm-pushpull publish --dry-run`` writes for the repo ``timm-pushpull/resnet20_pp.official_c10``,
or the folders ``timm-pushpull convert-official`` and ``timm-pushpull demo`` write. The folder's
``config.json`` says how its weights were made, and the model is built from it as ``local-dir:``
builds it: its ``model_args`` (``pp_pull_scale``, ...) are the defaults of the kwargs and its
``pretrained_cfg`` (normalisation, input size, classes) overlays the registered one, so a name
and its folder give one model, the same by every route. Tags whose
weights are only made locally have no Hub id until their hub config says ``published: true``
(see :mod:`._cfg`); without a local copy ``pretrained=True`` then says how to make them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import is_offline_mode, try_to_load_from_cache
from timm.models import resolve_pretrained_cfg

from ..constants import MODEL_CONFIG_FILE, WEIGHTS_DIR_ENV, WEIGHTS_FILE
from ..errors import CheckpointError, MissingFileError
from ._cfg import DEPRECATED_TAGS, LOCAL_WEIGHTS_HOWTO, current_tag
from ._weights import check_pretrained_cfg

__all__ = ["WEIGHTS_DIR_ENV", "local_weights_path", "read_config", "with_local_pretrained"]


def local_weights_path(architecture: str, tag: str | None = None) -> Path | None:
    """The local copy of the weights of ``architecture.tag``, or None.

    Looks for ``$TIMM_PUSHPULL_WEIGHTS_DIR/<architecture>.<tag>/model.safetensors`` (the name of
    the Hub repository and of the folder ``publish --dry-run`` writes), then for
    ``<architecture>/model.safetensors`` whose ``config.json`` says it holds that tag (the folders
    ``timm-pushpull convert-official`` writes). Folders and configs that use the tag's deprecated
    name (``c10_official``, ``fmnist_demo``) are found too, with a ``DeprecationWarning``.
    """
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if not root:
        return None
    root = Path(root).expanduser()
    if not tag:
        folder = root / architecture
        return folder / WEIGHTS_FILE if (folder / WEIGHTS_FILE).is_file() else None
    names = [tag, *(old for old, new in DEPRECATED_TAGS.items() if new == tag)]
    for name in names:
        if (root / f"{architecture}.{name}" / WEIGHTS_FILE).is_file():
            current_tag(name)
            return root / f"{architecture}.{name}" / WEIGHTS_FILE
    folder = root / architecture
    if (folder / WEIGHTS_FILE).is_file() and (folder / MODEL_CONFIG_FILE).is_file():
        found = read_config(folder / MODEL_CONFIG_FILE).get("pretrained_cfg", {}).get("tag")
        if found in names:
            current_tag(found)
            return folder / WEIGHTS_FILE
    return None


def with_local_pretrained(variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Entrypoint kwargs whose pretrained cfg loads local weights when there are some.

    Called by ``build_pushpull_model`` for ``pretrained=True`` before timm's
    ``build_model_with_cfg``. Leaves the kwargs alone when the caller already chose the weights
    (``pretrained_cfg_overlay`` with ``file``/``url``/``state_dict``/``hf_hub_id``, or a
    ``hf-hub:``/``local-dir:`` model name). Otherwise sets ``pretrained_cfg_overlay["file"]`` to
    :func:`local_weights_path` when that exists, else keeps timm's Hub download restricted to
    ``model.safetensors``. Offline (``HF_HUB_OFFLINE=1``) with neither a local copy nor a cached
    download it raises ``FileNotFoundError`` saying where the weights were looked for.
    """
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    if any(overlay.get(key) for key in ("file", "url", "state_dict", "hf_hub_id")):
        return kwargs
    cfg = resolve_pretrained_cfg(variant, kwargs.get("pretrained_cfg"), overlay)
    if cfg.source in ("hf-hub", "local-dir") or cfg.file or cfg.state_dict is not None:
        return kwargs
    architecture = cfg.architecture or variant
    model_name = f"{architecture}.{cfg.tag}" if cfg.tag else architecture
    weights = local_weights_path(architecture, cfg.tag)
    if weights is not None:
        kwargs = _with_folder_config(kwargs, overlay, weights.parent, architecture)
        overlay["file"] = str(weights)
    elif cfg.hf_hub_id:
        # Hub content is never unpickled: ask timm for the safetensors file only.
        overlay.setdefault("hf_hub_filename", WEIGHTS_FILE)
        if is_offline_mode() and not _in_hub_cache(
            cfg.hf_hub_id, overlay["hf_hub_filename"], kwargs.get("cache_dir")
        ):
            raise MissingFileError(
                f"No weights for {model_name}: {_where_local(model_name)}, and the Hugging Face "
                f"Hub is offline (HF_HUB_OFFLINE=1) with no cached download of {cfg.hf_hub_id}. "
                f"Put the folder written by `timm-pushpull publish --dry-run` (or "
                f"`convert-official`) at ${WEIGHTS_DIR_ENV}/{model_name}/, or go online."
            )
    elif not cfg.url:
        raise MissingFileError(_no_weights_message(model_name, cfg.tag))
    return {**kwargs, "pretrained_cfg_overlay": overlay}


def _no_weights_message(model_name: str, tag: str | None) -> str:
    howto = LOCAL_WEIGHTS_HOWTO.get(tag or "")
    if howto is None:
        make = (
            "timm-pushpull makes none: train the model (`timm-pushpull train`) and load the run "
            "folder with 'local-dir:PATH'"
        )
    else:
        make = f"to make them, {howto}"
    return (
        f"No pretrained weights for {model_name}: they are not on the Hugging Face Hub, and "
        f"{_where_local(model_name)}; {make}."
    )


def _where_local(model_name: str) -> str:
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if not root:
        return f"{WEIGHTS_DIR_ENV} is not set"
    return f"there is no {Path(root) / model_name / WEIGHTS_FILE}"


def _in_hub_cache(hf_hub_id: str, filename: str, cache_dir: str | Path | None) -> bool:
    repo_id, _, revision = hf_hub_id.partition("@")
    cached = try_to_load_from_cache(
        repo_id, filename, cache_dir=cache_dir, revision=revision or None
    )
    return isinstance(cached, str)


# keys of a folder's pretrained_cfg that say where its weights were, not what they are (and the
# tag, which the model's name gives: a folder may carry a deprecated name of it)
_SOURCE_KEYS = ("source", "file", "url", "hf_hub_id", "hf_hub_filename", "state_dict", "tag")


def _with_folder_config(
    kwargs: dict[str, Any], overlay: dict[str, Any], folder: Path, architecture: str
) -> dict[str, Any]:
    """``kwargs`` and the cfg ``overlay`` (updated in place) of a local folder's config.json, as
    timm reads a ``local-dir:`` folder: the folder's ``model_args`` as kwarg defaults, its
    ``pretrained_cfg`` and ``num_classes`` over the registered cfg. The config, when present,
    must describe the architecture asked for."""
    if not (folder / MODEL_CONFIG_FILE).is_file():
        return kwargs
    config = read_config(folder / MODEL_CONFIG_FILE)
    if config["architecture"] != architecture:
        raise CheckpointError(
            f"{folder} holds weights for {config['architecture']!r}, not {architecture!r}: "
            f"fix the folder name under ${WEIGHTS_DIR_ENV}"
        )
    folder_cfg = config.get("pretrained_cfg") or {}
    for key, value in folder_cfg.items():
        if key not in _SOURCE_KEYS:
            overlay.setdefault(key, value)
    if "num_classes" in config:
        overlay.setdefault("num_classes", config["num_classes"])
    model_args = config.get("model_args") or {}
    kwargs = {**model_args, **kwargs}  # the caller's own kwargs win, as with local-dir:
    if model_args:
        kwargs.setdefault("pretrained_model_args", dict(model_args))
    return kwargs


def read_config(path: str | Path) -> dict[str, Any]:
    """A timm ``config.json`` (JSON only, never pickle), checked to name an architecture."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} not found: a timm model folder holds {MODEL_CONFIG_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable JSON config: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise CheckpointError(f"{path} is not a timm model config: it has no 'architecture' string")
    if not isinstance(config.get("model_args", {}), dict):
        raise CheckpointError(f"{path}: model_args must be an object of keyword arguments")
    num_classes = config.get("num_classes", 0)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise CheckpointError(f"{path}: num_classes must be an int >= 0, got {num_classes!r}")
    cfg = config.get("pretrained_cfg", config)  # timm's older single-dict layout has no block
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: pretrained_cfg must be an object")
    check_pretrained_cfg(cfg, str(path))
    return config
