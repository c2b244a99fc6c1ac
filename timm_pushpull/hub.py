"""Hugging Face Hub publishing and offline-first loading of timm-pushpull models.

Loading stays inside timm. ``timm.create_model(name, pretrained=True)`` runs every entrypoint
through :func:`with_local_pretrained`, which points the pretrained cfg at a local copy of the
weights when one exists (timm's ``file`` source outranks the Hub id)::

    $TIMM_PUSHPULL_WEIGHTS_DIR/<architecture>.<tag>/model.safetensors   (+ config.json)
    $TIMM_PUSHPULL_WEIGHTS_DIR/<architecture>/model.safetensors         (config.json names the tag)

e.g. ``$TIMM_PUSHPULL_WEIGHTS_DIR/resnet20_pp.c10_official/``, exactly the folder that
``timm-pushpull publish --dry-run`` writes for the repo ``timm-pushpull/resnet20_pp.c10_official``,
or the folders ``timm-pushpull convert-official`` and ``timm-pushpull demo`` write. Tags whose
weights are only made locally have no Hub id until their hub config says ``published: true``
(see :mod:`timm_pushpull.models._cfg`); without a local copy ``pretrained=True`` then says how
to make them.
``timm.create_model("hf-hub:ORG/NAME")`` and ``"local-dir:PATH"`` work after ``import
timm_pushpull``; :func:`create_model` is the same call with clear errors for the usual mistakes.

Publishing (``timm-pushpull publish``) writes what timm itself reads, via
:func:`timm.models.save_for_hf` (``model.safetensors`` + ``config.json``), a model card rendered
from the ``MODEL_CARD.md`` template by ``huggingface_hub.ModelCard`` and a robustness plot, loads
the folder back to check it, and uploads it with ``HfApi.upload_folder``.

Security: weights are only ever read from safetensors (Hub or local folders), configs from JSON,
and ``.pth`` checkpoints with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
import yaml
from huggingface_hub import (
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    hf_hub_download,
    is_offline_mode,
    try_to_load_from_cache,
)
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors import safe_open
from timm.models import (
    is_model,
    load_state_dict,
    parse_model_name,
    resolve_pretrained_cfg,
    save_for_hf,
    split_model_name_tag,
)

from .data.idx import FASHION_MNIST_CLASSES
from .models._cfg import HUB_CONFIGS_DIR, LOCAL_WEIGHTS_HOWTO
from .version import __version__

__all__ = [
    "WEIGHTS_DIR_ENV",
    "HubConfig",
    "create_model",
    "local_weights_path",
    "with_local_pretrained",
    "publish",
    "add_arguments",
    "main",
]

WEIGHTS_DIR_ENV = "TIMM_PUSHPULL_WEIGHTS_DIR"
WEIGHTS_NAME = "model.safetensors"  # timm's HF_SAFE_WEIGHTS_NAME: the only weights we read or write
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
PLOT_NAME = "robustness.png"
# The card template and hub_configs/ live at the top of the repository; the package holds
# symlinks to them, which the wheel turns into copies (package data), so installs find them too.
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent / "MODEL_CARD.md"
# The push-pull authors' released CIFAR-10 models, beside the checkout (never inside it).
OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "official-pushpull-cifar10"
# config.json key recording which timm-pushpull wrote the folder, for "upgrade" hints.
VERSION_KEY = "timm_pushpull_version"

# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def local_weights_path(architecture: str, tag: str | None = None) -> Path | None:
    """The local copy of the weights of ``architecture.tag``, or None.

    Looks for ``$TIMM_PUSHPULL_WEIGHTS_DIR/<architecture>.<tag>/model.safetensors`` (the name of
    the Hub repository and of the folder ``publish --dry-run`` writes), then for
    ``<architecture>/model.safetensors`` whose ``config.json`` says it holds that tag (the folders
    ``timm-pushpull convert-official`` writes).
    """
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if not root:
        return None
    root = Path(root).expanduser()
    folder = root / (f"{architecture}.{tag}" if tag else architecture)
    if (folder / WEIGHTS_NAME).is_file():
        return folder / WEIGHTS_NAME
    folder = root / architecture
    if tag and (folder / WEIGHTS_NAME).is_file() and (folder / CONFIG_NAME).is_file():
        if read_config(folder / CONFIG_NAME).get("pretrained_cfg", {}).get("tag") == tag:
            return folder / WEIGHTS_NAME
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
        _check_local_config(weights.parent, architecture)
        overlay["file"] = str(weights)
    elif cfg.hf_hub_id:
        # Hub content is never unpickled: ask timm for the safetensors file only.
        overlay.setdefault("hf_hub_filename", WEIGHTS_NAME)
        if is_offline_mode() and not _in_hub_cache(
            cfg.hf_hub_id, overlay["hf_hub_filename"], kwargs.get("cache_dir")
        ):
            raise FileNotFoundError(
                f"No weights for {model_name}: {_where_local(model_name)}, and the Hugging Face "
                f"Hub is offline (HF_HUB_OFFLINE=1) with no cached download of {cfg.hf_hub_id}. "
                f"Put the folder written by `timm-pushpull publish --dry-run` (or "
                f"`convert-official`) at ${WEIGHTS_DIR_ENV}/{model_name}/, or go online."
            )
    elif not cfg.url:
        raise FileNotFoundError(_no_weights_message(model_name, cfg.tag))
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
    return f"there is no {Path(root) / model_name / WEIGHTS_NAME}"


def _in_hub_cache(hf_hub_id: str, filename: str, cache_dir: str | Path | None) -> bool:
    repo_id, _, revision = hf_hub_id.partition("@")
    cached = try_to_load_from_cache(
        repo_id, filename, cache_dir=cache_dir, revision=revision or None
    )
    return isinstance(cached, str)


def _check_local_config(folder: Path, architecture: str) -> None:
    """A local folder's config.json, when present, must describe the architecture asked for."""
    if (folder / CONFIG_NAME).is_file():
        declared = read_config(folder / CONFIG_NAME)["architecture"]
        if declared != architecture:
            raise ValueError(
                f"{folder} holds weights for {declared!r}, not {architecture!r}: "
                f"fix the folder name under ${WEIGHTS_DIR_ENV}"
            )


def read_config(path: str | Path) -> dict[str, Any]:
    """A timm ``config.json`` (JSON only, never pickle), checked to name an architecture."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable JSON config: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"{path} is not a timm model config: it has no 'architecture' string")
    return config


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` for timm-pushpull models, safetensors only, with clear errors.

    Accepts what timm accepts: ``"resnet20_pp.c10_official"``, ``"hf-hub:ORG/NAME"``,
    ``"local-dir:PATH"``. Before building anything it checks that the architecture (from the name
    or from ``config.json``) is registered, and that a Hub/local folder has ``model.safetensors``;
    weights that do not fit the architecture raise ``ValueError``. No model is returned on error.
    """
    source, model_id = parse_model_name(model_name)
    if source == "local-dir":
        folder = Path(model_id)
        config = read_config(folder / CONFIG_NAME)
        if pretrained and not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"{folder} has no {WEIGHTS_NAME}: timm-pushpull loads weights only from safetensors"
            )
        architecture, where = config["architecture"], f"{folder / CONFIG_NAME}"
    elif source == "hf-hub":
        repo_id, _, revision = model_id.partition("@")
        try:
            config_path = hf_hub_download(
                repo_id, CONFIG_NAME, revision=revision or None, cache_dir=kwargs.get("cache_dir")
            )
        except LocalEntryNotFoundError as error:
            raise FileNotFoundError(
                f"{model_name}: {repo_id} is not in the Hugging Face cache and the Hub cannot be "
                f"reached{' (HF_HUB_OFFLINE=1)' if is_offline_mode() else ''}. Offline, load a "
                f"local copy with 'local-dir:PATH' or through ${WEIGHTS_DIR_ENV}."
            ) from error
        config = read_config(config_path)
        architecture, where = config["architecture"], f"config.json of {model_id}"
        if pretrained:
            overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay.setdefault("hf_hub_filename", WEIGHTS_NAME)
            kwargs["pretrained_cfg_overlay"] = overlay
    else:
        config, where = {}, "the model name"
        architecture = split_model_name_tag(model_id)[0]
    if not is_model(architecture):
        raise ValueError(_unknown_architecture_message(architecture, where, config))
    if config.get("pushpull_conversion"):
        return _create_converted(model_name, config, pretrained, **kwargs)
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except (RuntimeError, AttributeError, KeyError) as error:
        # timm fails in several ways on foreign weights (state-dict errors, a missing first_conv
        # module, ...): name the mismatch itself.
        if not pretrained:
            raise
        if source == "local-dir":
            weights = Path(model_id) / WEIGHTS_NAME
        elif source == "hf-hub":
            cached = try_to_load_from_cache(
                repo_id, WEIGHTS_NAME, cache_dir=kwargs.get("cache_dir"), revision=revision or None
            )
            weights = Path(cached) if isinstance(cached, str) else None
        else:
            weights = None
        if weights is not None:
            mismatch = _weights_mismatch(weights, architecture, config.get("model_args") or {})
        else:
            mismatch = str(error) if "Error(s) in loading state_dict" in str(error) else None
        if mismatch is None:
            raise
        hint = ""
        if config.get("pushpull_conversion"):
            hint = (
                " Its config.json records a push-pull conversion of the architecture, which "
                "timm cannot rebuild from the config alone."
            )
        raise ValueError(
            f"The weights of {model_name} do not fit the architecture {architecture!r} "
            f"(model_args {config.get('model_args', {})}): {mismatch}.{hint}"
        ) from error


def _create_converted(
    model_name: str, config: Mapping, pretrained: bool, **kwargs: Any
) -> nn.Module:
    """A model fine-tuned after ``convert_to_pushpull`` (``timm-pushpull train --convert``).

    timm rebuilds only the architecture named in ``config.json``; the recorded conversion is
    applied on top before the weights are loaded (strictly).
    """
    from .layers import convert_to_pushpull

    conversion = dict(config["pushpull_conversion"])
    scope = conversion.pop("scope")
    model = convert_to_pushpull(
        timm.create_model(model_name, pretrained=False, **kwargs), scope, **conversion
    )
    if pretrained:
        source, model_id = parse_model_name(model_name)
        if source == "local-dir":
            weights = Path(model_id) / WEIGHTS_NAME
        else:
            repo_id, _, revision = model_id.partition("@")
            weights = hf_hub_download(
                repo_id, WEIGHTS_NAME, revision=revision or None, cache_dir=kwargs.get("cache_dir")
            )
        state_dict = load_state_dict(str(weights))
        mismatch = _compare_keys(model.state_dict(), state_dict)
        if any(mismatch):
            missing, unexpected = mismatch
            raise ValueError(
                f"The weights of {model_name} do not fit {config['architecture']!r} converted with "
                f"{config['pushpull_conversion']}: missing {missing}, unexpected {unexpected}"
            )
        model.load_state_dict(state_dict)
    return model


def _weights_mismatch(weights: Path, architecture: str, model_args: Mapping) -> str | None:
    """Missing, unexpected and misshapen tensors of a safetensors file for an architecture."""
    with safe_open(weights, framework="pt") as tensors:
        found = {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}
    model = timm.create_model(architecture, **model_args)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing, unexpected = _compare_keys(expected, found)
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


# ---------------------------------------------------------------------------------------------
# What a card says: datasets, hub configs, results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """How a training dataset is named on the Hub and in the robustness benchmarks."""

    name: str
    hub_id: str
    corrupted: str  # the -C benchmark's name
    perturbed: str  # the -P benchmark's name
    label_names: tuple[str, ...] = ()


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "CIFAR-10", "uoft-cs/cifar10", "CIFAR-10-C", "CIFAR-10-P", CIFAR10_CLASSES
    ),
    "fashion_mnist": DatasetInfo(
        "Fashion-MNIST",
        "zalando-datasets/fashion_mnist",
        "Fashion-MNIST-C (timm-pushpull corruptions)",
        "Fashion-MNIST-P (timm-pushpull perturbations)",
        FASHION_MNIST_CLASSES,
    ),
    "imagenet": DatasetInfo("ImageNet-1k", "ILSVRC/imagenet-1k", "ImageNet-C", "ImageNet-P"),
}

_RESULTS_KEYS = {
    "official": "the authors' results folder of the model, relative to <--official-dir>/results",
    "flip_baseline": "the same for the model its flip rates are relative to (mFR)",
    "attribution": "who measured the numbers",
    "source_url": "where they were published",
}
_HUB_CONFIG_KEYS = {
    "repo_id": "ORG/NAME of the Hub repository",
    "published": "true once repo_id is uploaded: gives the model's tag its Hub id (pretrained=True)",
    "model": "architecture[.tag] the weights belong to (its pretrained cfg fills config.json)",
    "model_args": "model kwargs needed to rebuild the architecture from a checkpoint file",
    "dataset": f"training dataset, one of {sorted(DATASETS)}",
    "license": "license id of the weights (Hub metadata), e.g. mit, apache-2.0",
    "title": "first heading of the card",
    "summary": "what the model is, one paragraph",
    "tags": "extra Hub tags",
    "weights_origin": "where the weights come from, when not trained by this project",
    "training": "mapping shown as 'how it was trained' (recipe, epochs, augmentation, ...)",
    "results": f"numbers not measured by `timm-pushpull evaluate`: {_RESULTS_KEYS}",
    "notes": "extra paragraphs for the card",
}


@dataclass
class HubConfig:
    """One file of ``hub_configs/``: where a model goes and what its card says."""

    repo_id: str | None = None
    published: bool = False
    model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    license: str | None = None
    title: str | None = None
    summary: str | None = None
    tags: list[str] = field(default_factory=list)
    weights_origin: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> HubConfig:
        """Read a YAML (or JSON, a subset of YAML) hub config, rejecting unknown keys."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"--hub-config {path} is not a readable YAML file: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"--hub-config {path} must be a mapping of {sorted(_HUB_CONFIG_KEYS)}")
        unknown = sorted(set(data) - set(_HUB_CONFIG_KEYS))
        if unknown:
            allowed = "; ".join(f"{k}: {v}" for k, v in _HUB_CONFIG_KEYS.items())
            raise ValueError(f"--hub-config {path}: unknown keys {unknown}; allowed: {allowed}")
        unknown = sorted(set(data.get("results") or {}) - set(_RESULTS_KEYS))
        if unknown:
            raise ValueError(
                f"--hub-config {path}: unknown results keys {unknown}; allowed: {_RESULTS_KEYS}"
            )
        if data.get("dataset") is not None and data["dataset"] not in DATASETS:
            raise ValueError(f"--hub-config {path}: dataset must be one of {sorted(DATASETS)}")
        return cls(**data, path=path)


@dataclass
class RobustnessResults:
    """Everything a card shows about robustness. Errors and probabilities are fractions.

    ``mce``/``relative_mce`` are ratios to ``ce_baseline`` and ``mfr`` a ratio to
    ``flip_baseline`` (Hendrycks & Dietterich 2019); ``mean_flip_probability`` is unnormalised.
    ``source_name``/``source_url`` attribute numbers this project did not measure.
    """

    clean_error: float | None = None
    corruption_errors: dict[str, list[float]] = field(default_factory=dict)
    flip_probabilities: dict[str, float] = field(default_factory=dict)
    mce: float | None = None
    relative_mce: float | None = None
    mce_corruptions: list[str] = field(default_factory=list)
    mce_complete: bool = True
    relative_mce_corruptions: list[str] = field(default_factory=list)
    relative_mce_complete: bool = True
    ce_baseline: str | None = None
    mfr: float | None = None
    flip_baseline: str | None = None
    mean_flip_probability: float | None = None
    shift_consistency: float | None = None
    source_name: str | None = None
    source_url: str | None = None

    def has_robustness(self) -> bool:
        return any(
            value is not None
            for value in (self.mce, self.relative_mce, self.mfr, self.shift_consistency)
        ) or bool(self.corruption_errors or self.flip_probabilities)


def official_results(
    architecture: str, folder: Path, flip_baseline: Path | None = None
) -> RobustnessResults:
    """The push-pull authors' CIFAR-10-C/-P text results of a released model.

    The clean error is the one of the authors' evaluation that produced these results (the last
    "Test accuracy clean" of ``test_clean.txt``), so that relative CE subtracts a clean error
    measured with the corrupted ones; where the folder has no ``test_clean.txt`` (the ResNets) it
    is the checkpoint's ``best_prec1``. CE and relative CE are normalised by AlexNet as in their
    paper; the mFR, when ``flip_baseline`` names another
    model's results folder (the same network without push-pull), is relative to that model.
    """
    from .models.official import OFFICIAL_CHECKPOINTS, ORIGIN_URL
    from .robustness.baselines import ALEXNET_CIFAR10_C, get_baseline, read_official_results
    from .robustness.metrics import flip_rates, mean_corruption_error, summarize_corruptions

    if architecture not in OFFICIAL_CHECKPOINTS:
        raise ValueError(
            f"{architecture!r} is not a released model; those are {sorted(OFFICIAL_CHECKPOINTS)}"
        )
    if not (folder / "C_details.txt").is_file():
        raise FileNotFoundError(f"no C_details.txt in {folder}: pass --official-dir")
    raw = read_official_results(folder)
    clean_error = raw["clean_error"]
    if clean_error is None:
        clean_error = round(1 - OFFICIAL_CHECKPOINTS[architecture].top1 / 100, 6)
    summary = summarize_corruptions(
        raw["corruptions"],
        clean_error,
        ALEXNET_CIFAR10_C.corruption_errors,
        ALEXNET_CIFAR10_C.clean_error,
        ALEXNET_CIFAR10_C.mce_corruptions,
    )
    results = RobustnessResults(
        clean_error=clean_error,
        corruption_errors=raw["corruptions"],
        flip_probabilities=raw["perturbations"],
        mce=summary["mce"],
        relative_mce=summary["relative_mce"],
        mce_corruptions=summary["mce_corruptions"],
        mce_complete=summary["mce_complete"],
        relative_mce_corruptions=summary["relative_mce_corruptions"],
        relative_mce_complete=summary["relative_mce_complete"],
        ce_baseline=ALEXNET_CIFAR10_C.source,
        source_name="Strisciuglio et al. 2020, released results",
        source_url=ORIGIN_URL,
    )
    if raw["perturbations"]:
        results.mean_flip_probability = mean_corruption_error(raw["perturbations"])
    if flip_baseline is not None:
        baseline = get_baseline(flip_baseline)
        rates = flip_rates(raw["perturbations"], baseline.flip_probabilities)
        if rates:
            results.mfr = mean_corruption_error(rates)
            results.flip_baseline = f"{flip_baseline.name} (authors' results)"
    return results


def evaluation_results(path: Path) -> RobustnessResults:
    """The results.json of ``timm-pushpull evaluate`` (format: :mod:`.robustness.results`)."""
    from .robustness.results import load_results

    data = load_results(path)
    summary = data["summary"] or {}
    baseline = (data["baseline"] or {}).get("source")
    return RobustnessResults(
        clean_error=data["clean_error"],
        corruption_errors={k: list(v["errors"]) for k, v in data["corruptions"].items()},
        flip_probabilities={
            k: float(v["flip_probability"]) for k, v in data["perturbations"].items()
        },
        mce=summary.get("mce"),
        relative_mce=summary.get("relative_mce"),
        mce_corruptions=list(summary.get("mce_corruptions") or []),
        mce_complete=bool(summary.get("mce_complete", False)),
        # version 1 files have no flag of their own: the mCE's
        relative_mce_corruptions=list(
            summary.get("relative_mce_corruptions", summary.get("mce_corruptions")) or []
        ),
        relative_mce_complete=bool(
            summary.get("relative_mce_complete", summary.get("mce_complete", False))
        ),
        ce_baseline=baseline if summary.get("mce") is not None else None,
        mfr=summary.get("mfr"),
        flip_baseline=baseline if summary.get("mfr") is not None else None,
        mean_flip_probability=summary.get("mean_flip_probability"),
        shift_consistency=(data["shift"] or {}).get("consistency"),
    )


# ---------------------------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------------------------


def load_checkpoint_model(
    source: Path, model: str | None = None, model_args: Mapping[str, Any] | None = None
) -> nn.Module:
    """The model held by a timm model folder or a weights file, loaded strictly, in eval mode.

    A folder (``config.json`` + ``model.safetensors``: a training run, a converted official
    model, a published folder) declares its own architecture; a ``.safetensors``/``.pth`` file
    needs ``model`` (``architecture[.tag]``) and the ``model_args`` it was built with. ``.pth``
    files are read with ``torch.load(weights_only=True)``.
    """
    if source.is_dir():
        net = create_model(f"local-dir:{source}", pretrained=True)
        declared = net.pretrained_cfg["architecture"]
        if model is not None and split_model_name_tag(model)[0] != declared:
            raise ValueError(f"{source} holds a {declared!r}, but the hub config says {model!r}")
        return net.eval()
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a model folder nor a weights file")
    if model is None:
        raise ValueError(f"{source} is a weights file: name its architecture with --model")
    state_dict = load_state_dict(str(source), weights_only=True)
    net = create_model(model, **dict(model_args or {}))
    missing, unexpected = _compare_keys(net.state_dict(), state_dict)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {model!r}: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}"
        )
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source} does not fit {model!r}: {error}") from error
    return net.eval()


def _compare_keys(expected: Mapping, found: Mapping) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))


def verify_folder(folder: Path, model: nn.Module) -> None:
    """Load ``folder`` back through timm (``local-dir:``) and require the same tensors and logits."""
    loaded = create_model(f"local-dir:{folder}", pretrained=True).eval()
    expected, found = model.state_dict(), loaded.state_dict()
    missing, unexpected = _compare_keys(expected, found)
    differing = [k for k in expected if k in found and not torch.equal(expected[k], found[k])]
    if missing or unexpected or differing:
        raise ValueError(
            f"{folder} does not load back into {loaded.pretrained_cfg['architecture']}: missing "
            f"{missing}, unexpected {unexpected}, different values {differing}"
        )
    inputs = torch.rand(
        (2, *loaded.pretrained_cfg["input_size"]), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        if not torch.equal(model.eval()(inputs), loaded(inputs)):
            raise ValueError(f"{folder} loads back but gives different logits")


def _papers(model: nn.Module) -> dict[str, bool]:
    """Which papers the model's layers come from (the card cites them)."""
    from .layers import BlurPool2d, PushPull2d

    pushpull = [m for m in model.modules() if isinstance(m, PushPull2d)]
    return {
        "pushpull": True,  # every model here is a push-pull model or its published baseline
        "antialias": any(isinstance(m, BlurPool2d) for m in model.modules()),
        "pushpull_variants": any(
            not m.rectify or m.attention_type or isinstance(m.pull_scale, tuple) for m in pushpull
        ),
        "pushpull_layers": bool(pushpull),
    }


_PAPER_IDS = {
    "pushpull": "doi:10.1007/s00521-020-04751-8",
    "antialias": "arXiv:1904.11486",
}


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def _summary_rows(results: RobustnessResults, dataset: DatasetInfo) -> list[dict[str, Any]]:
    """(metric, value, definition, model-index fields) for every result the card shows."""
    flips = len(results.flip_probabilities)

    def partial(complete: bool) -> str:
        return "" if complete else " (not all the baseline's: not comparable with published ones)"

    candidates = [
        ("Clean error (%)", "error", results.clean_error, dataset.name,
         f"top-1 error on the {dataset.name} test set"),
        ("mCE (%)", "mCE", results.mce, dataset.corrupted,
         f"mean over {len(results.mce_corruptions)} corruptions of the corruption error, "
         f"normalised by {results.ce_baseline}{partial(results.mce_complete)}"),
        ("Relative mCE (%)", "relative_mCE", results.relative_mce, dataset.corrupted,
         f"mean over {len(results.relative_mce_corruptions)} corruptions of the relative "
         f"corruption error (degradation from clean), same baseline"
         f"{partial(results.relative_mce_complete)}"),
        ("mFR (%)", "mFR", results.mfr, dataset.perturbed,
         f"mean flip rate: flip probability normalised by {results.flip_baseline}"),
        ("Mean flip probability (%)", "mean_flip_probability", results.mean_flip_probability,
         dataset.perturbed, f"unnormalised, mean over {flips} perturbations"),
        ("Shift consistency (%)", "shift_consistency", results.shift_consistency, dataset.name,
         "how often the top-1 class agrees for two random shifts of an image (Zhang 2019)"),
    ]  # fmt: skip
    return [
        dict(name=name, metric_type=kind, value=_percent(value), dataset_name=ds, definition=text)
        for name, kind, value, ds, text in candidates
        if value is not None
    ]


def _eval_results(
    rows: list[dict], dataset: DatasetInfo, results: RobustnessResults
) -> list[EvalResult]:
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset.hub_id
            if row["dataset_name"] == dataset.name
            else row["dataset_name"],
            dataset_name=row["dataset_name"],
            dataset_split="test",
            metric_type=row["metric_type"],
            metric_name=row["name"],
            metric_value=row["value"],
            source_name=results.source_name,
            source_url=results.source_url,
        )
        for row in rows
    ]


def plot_robustness(results: RobustnessResults, path: Path, title: str) -> bool:
    """Bar charts of the error per corruption and the flip probability per perturbation."""
    if not results.corruption_errors and not results.flip_probabilities:
        return False
    # Figure without pyplot: no GUI backend and no global figure state, just a file
    from matplotlib.figure import Figure

    panels = [p for p in (results.corruption_errors, results.flip_probabilities) if p]
    fig = Figure(figsize=(6 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, values in zip(axes[0], panels, strict=True):
        names = list(values)
        if values is results.corruption_errors:
            heights = [100 * sum(v) / len(v) for v in values.values()]
            ax.set_ylabel("top-1 error (%), mean over severities")
            if results.clean_error is not None:
                ax.axhline(100 * results.clean_error, color="black", linestyle="--", label="clean")
                ax.legend()
        else:
            heights = [100 * v for v in values.values()]
            ax.set_ylabel("flip probability (%)")
        ax.bar(range(len(names)), heights, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=75, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def render_card(
    model: nn.Module,
    repo_id: str,
    hub_config: HubConfig,
    results: RobustnessResults,
    training: Mapping[str, Any],
    plot: str | None,
    template: Path = MODEL_CARD_TEMPLATE,
) -> ModelCard:
    """The model card: Hub metadata (with ``model-index``) and the text of ``MODEL_CARD.md``."""
    if not template.is_file():
        raise FileNotFoundError(f"card template {template} not found: pass --card-template")
    cfg = model.pretrained_cfg
    architecture, tag = cfg["architecture"], cfg.get("tag")
    dataset = DATASETS[hub_config.dataset]
    rows = _summary_rows(results, dataset)
    papers = _papers(model)
    license_id = hub_config.license or cfg.get("license") or "apache-2.0"
    # only claim `name.tag` with pretrained=True loads this when its cfg points at this repo
    registered_name = f"{architecture}.{tag}" if tag else None
    if registered_name and _registered_hub_id(registered_name) != repo_id:
        registered_name = None
    card_data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=license_id,
        tags=["image-classification", "timm", "timm-pushpull", "robustness",
              *(["push-pull"] if papers["pushpull_layers"] else []),
              *(["anti-aliasing"] if papers["antialias"] else []), *hub_config.tags],
        datasets=[dataset.hub_id],
        metrics=sorted({row["metric_type"] for row in rows}),
        model_name=repo_id.split("/")[-1],
        eval_results=_eval_results(rows, dataset, results),
    )  # fmt: skip
    severities = sorted({len(v) for v in results.corruption_errors.values()}) or [5]
    corruption_rows = [
        dict(
            name=name,
            errors=[f"{100 * e:.2f}" for e in errs],
            mean=f"{100 * sum(errs) / len(errs):.2f}",
        )
        for name, errs in results.corruption_errors.items()
    ]
    perturbation_rows = [
        dict(name=name, value=f"{100 * value:.2f}")
        for name, value in results.flip_probabilities.items()
    ]
    input_size = tuple(cfg["input_size"])
    mean = ", ".join(f"{m:.4f}" for m in cfg["mean"])
    std = ", ".join(f"{s:.4f}" for s in cfg["std"])
    details = [
        ("Architecture", f"`{architecture}`"),
        ("Model args", f"`{json.dumps(getattr(model, '_model_args', {}) or {})}`"),
        ("Parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f} M"),
        ("Input size", " x ".join(str(s) for s in input_size)),
        (
            "Dataset",
            f"{dataset.name} ([{dataset.hub_id}](https://huggingface.co/datasets/{dataset.hub_id}))",
        ),
        ("Classes", model.num_classes),
        ("Papers", ", ".join(_PAPER_IDS[k] for k in ("pushpull", "antialias") if papers[k])),
        ("Library", f"timm {timm.__version__}, timm-pushpull {__version__}"),
    ]
    license_text = {
        "mit": "MIT. The weights carry the MIT license of their authors; LICENSE holds its text.",
        "apache-2.0": "Apache-2.0, like timm-pushpull.",
    }.get(license_id, license_id)
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        title=hub_config.title or repo_id.split("/")[-1],
        summary=(hub_config.summary or cfg.get("description") or "").strip(),
        weights_origin=hub_config.weights_origin,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        registered_name=registered_name,
        input_description=(
            f"{input_size[0]} x {input_size[1]} x {input_size[2]} images scaled to [0, 1], "
            f"normalised with mean ({mean}) and std ({std})"
        ),
        details=details,
        training=list(training.items()),
        results_attribution=_attribution(results),
        summary_rows=rows,
        plot=plot,
        corrupted_name=dataset.corrupted,
        perturbed_name=dataset.perturbed,
        severities=list(range(1, max(severities) + 1)),
        corruption_rows=corruption_rows,
        perturbation_rows=perturbation_rows,
        notes=[n.strip() for n in hub_config.notes],
        license_text=license_text,
        cite_antialias=papers["antialias"],
        cite_variants=papers["pushpull_variants"],
    )


def _attribution(results: RobustnessResults) -> str:
    if results.source_name:
        return (
            f"Numbers reported by the authors, not measured by timm-pushpull: "
            f"{results.source_name} ({results.source_url})."
        )
    return "Measured with `timm-pushpull evaluate`."


def _registered_hub_id(model_name: str) -> str | None:
    """The repository of the registered tag ``model_name`` per its hub config (the tag's Hub id
    once the config says ``published: true``, which follows the upload)."""
    path = HUB_CONFIGS_DIR / f"{model_name}.yaml"
    return HubConfig.load(path).repo_id if path.is_file() else None


def _training_facts(source: Path, hub_config: HubConfig) -> dict[str, Any]:
    """'How it was trained': the hub config's entries, then what the run directory recorded
    (``train_config.yaml`` and ``metrics.jsonl`` of ``timm-pushpull train``)."""
    facts = dict(hub_config.training)
    run_config = source / "train_config.yaml" if source.is_dir() else None
    if run_config is not None and run_config.is_file():
        cfg = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
        crop = {
            "pad": f"random crop with {cfg.get('padding')} px padding",
            "rrc": "random resized crop",
        }
        augmentation = [crop.get(cfg.get("crop"), "")] + [
            f"{key} {cfg[key]}"
            for key in ("hflip", "auto_augment", "cutout", "color_jitter")
            if cfg.get(key) not in (None, 0, 0.0, False)
        ]
        recorded = {
            "Dataset": cfg.get("dataset")
            + (f" ({cfg['train_samples']} training images)" if cfg.get("train_samples") else ""),
            "Epochs": cfg.get("epochs"),
            "Optimizer": f"{cfg.get('opt')}, lr {cfg.get('lr')}, momentum {cfg.get('momentum')}, "
            f"weight decay {cfg.get('weight_decay')}, batch {cfg.get('batch_size')}",
            "Schedule": f"{cfg.get('sched')}, milestones {cfg.get('milestones')}, gamma {cfg.get('gamma')}",
            "Augmentation": ", ".join(a for a in augmentation if a) or "none",
            "Label smoothing": cfg.get("label_smoothing") or None,
            "Started from": cfg.get("init_from"),
            "Seed": cfg.get("seed"),
        }
        facts.update({k: v for k, v in recorded.items() if v is not None and k not in facts})
    metrics_log = source / "metrics.jsonl" if source.is_dir() else None
    if metrics_log is not None and metrics_log.is_file():
        records = [
            json.loads(line) for line in metrics_log.read_text().splitlines() if line.strip()
        ]
        if records:
            last = records[-1]
            facts.setdefault(
                "Trained for",
                f"{last.get('epoch')} epochs, {last.get('step')} steps; final validation accuracy "
                f"{last.get('val_acc', float('nan')):.2f}%",
            )
    if not facts:
        raise ValueError(
            f"nothing says how {source} was trained: add a 'training' mapping to the hub config "
            "(recipe, epochs, augmentation)"
        )
    return facts


def _training_dataset(source: Path, hub_config: HubConfig) -> str:
    """The hub config's dataset, else the one the run directory was trained on."""
    dataset = hub_config.dataset
    if dataset is None and source.is_dir() and (source / "train_config.yaml").is_file():
        dataset = (yaml.safe_load((source / "train_config.yaml").read_text()) or {}).get("dataset")
    if dataset not in DATASETS:
        raise ValueError(
            f"the card needs the training dataset, one of {sorted(DATASETS)}: set 'dataset' in "
            f"the hub config (found {dataset!r})"
        )
    return dataset


def _collect_results(
    source: Path,
    architecture: str,
    hub_config: HubConfig,
    results_path: Path | None,
    official_dir: Path,
) -> RobustnessResults:
    spec = hub_config.results
    if results_path is not None:
        results = evaluation_results(results_path)
    elif spec.get("official"):
        flip_baseline = spec.get("flip_baseline")
        results = official_results(
            architecture,
            official_dir / "results" / spec["official"],
            official_dir / "results" / flip_baseline if flip_baseline else None,
        )
    elif source.is_dir() and (source / "results.json").is_file():
        results = evaluation_results(source / "results.json")
    else:
        results = RobustnessResults()
    results.source_name = spec.get("attribution", results.source_name)
    results.source_url = spec.get("source_url", results.source_url)
    if results.clean_error is None or not results.has_robustness():
        raise ValueError(
            f"refusing to publish {source} without results: a card needs the clean error and "
            "robustness results. Pass --results results.json (from `timm-pushpull evaluate`), put "
            "results.json in the run directory, or name them under 'results' in the hub config."
        )
    return results


def check_card(path: Path) -> ModelCard:
    """Parse a written card back and require timm metadata and a model-index with results."""
    card = ModelCard.load(path)
    if card.data.library_name != "timm" or not card.data.eval_results:
        raise ValueError(f"{path} lacks library_name: timm or a model-index with results")
    return card


def _check_repo_id(repo_id: str | None) -> str:
    if not repo_id or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id) or ".." in repo_id:
        raise ValueError(
            f"--repo-id must look like ORG/NAME (letters, digits, - _ .), got {repo_id!r}"
        )
    return repo_id


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite and not (target.is_dir() and not any(target.iterdir())):
        raise FileExistsError(f"--dry-run {target} already exists; pass --overwrite to replace it")


def _write_folder(
    folder: Path,
    model: nn.Module,
    source: Path,
    repo_id: str,
    hub_config: HubConfig,
    results: RobustnessResults,
    training: Mapping[str, Any],
    card_template: Path,
) -> None:
    """model.safetensors + config.json (timm's save_for_hf), LICENSE, plot and README.md."""
    cfg = model.pretrained_cfg
    tag = split_model_name_tag(hub_config.model)[1] if hub_config.model else ""
    dataset = DATASETS[hub_config.dataset]
    paper_ids = cfg.get("paper_ids") or ()
    paper_ids = [paper_ids] if isinstance(paper_ids, str) else list(paper_ids)
    papers = _papers(model)
    paper_ids += [_PAPER_IDS[k] for k in ("pushpull", "antialias") if papers[k]]
    pretrained_cfg = {
        "tag": tag or cfg.get("tag"),
        "license": hub_config.license or cfg.get("license"),
        "paper_ids": list(dict.fromkeys(paper_ids)),
        "description": (hub_config.summary or "").strip() or cfg.get("description"),
    }
    model_config: dict[str, Any] = {
        "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v},
        VERSION_KEY: __version__,
    }
    label_names = cfg.get("label_names") or dataset.label_names
    if label_names and len(label_names) == model.num_classes:
        model_config["label_names"] = list(label_names)
    save_for_hf(model, folder, model_config=model_config, safe_serialization=True)
    if source.is_dir() and (source / "LICENSE").is_file():
        shutil.copyfile(source / "LICENSE", folder / "LICENSE")
    elif pretrained_cfg["license"] == "mit":
        raise ValueError(f"MIT-licensed weights travel with their LICENSE, and {source} has none")
    title = hub_config.title or repo_id.split("/")[-1]
    plot = PLOT_NAME if plot_robustness(results, folder / PLOT_NAME, title) else None
    card = render_card(model, repo_id, hub_config, results, training, plot, card_template)
    card.save(folder / CARD_NAME)


def publish(
    source: str | Path,
    repo_id: str | None = None,
    *,
    hub_config: str | Path | HubConfig | None = None,
    results: str | Path | None = None,
    dry_run: str | Path | None = None,
    private: bool = False,
    overwrite: bool = False,
    model: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    official_dir: str | Path = OFFICIAL_DIR,
    card_template: str | Path = MODEL_CARD_TEMPLATE,
    token: str | None = None,
) -> str:
    """Write a Hub model folder for ``source`` and upload it (or, with ``dry_run``, keep it there).

    ``source``: a model folder (training run, converted official model) or a weights file, or a
    folder an earlier ``dry_run`` wrote (uploaded as it is). Refuses weights that do not load back
    strictly into the declared architecture, a card without results, an existing ``dry_run``
    folder or an existing repository README unless ``overwrite``. Returns the folder path
    (``dry_run``) or the URL of the upload commit.
    """
    source = Path(source)
    if hub_config is None and repo_id:
        default = HUB_CONFIGS_DIR / f"{repo_id.split('/')[-1]}.yaml"
        if default.is_file() and HubConfig.load(default).repo_id == repo_id:
            hub_config = default
    if not isinstance(hub_config, HubConfig):
        hub_config = HubConfig.load(hub_config) if hub_config else HubConfig()
    if repo_id and hub_config.repo_id and repo_id != hub_config.repo_id:
        raise ValueError(
            f"--repo-id {repo_id} differs from {hub_config.path}'s {hub_config.repo_id}"
        )
    repo_id = _check_repo_id(repo_id or hub_config.repo_id)
    prepared = source.is_dir() and (source / CARD_NAME).is_file()
    if prepared and dry_run is not None:
        raise ValueError(f"{source} is already a written Hub folder: upload it without --dry-run")

    if dry_run is not None:
        target = Path(dry_run)
        _check_target(target, overwrite)
    else:
        if is_offline_mode():
            raise ConnectionError(
                "cannot upload: the Hugging Face Hub is offline (HF_HUB_OFFLINE=1). Write the "
                "folder with --dry-run DIR, then upload it when online with "
                f"`timm-pushpull publish DIR --repo-id {repo_id}`."
            )
        api = HfApi(token=token, library_name="timm", library_version=timm.__version__)
        if api.file_exists(repo_id, CARD_NAME) and not overwrite:
            raise FileExistsError(
                f"{repo_id} already has a README.md; pass --overwrite to replace its card"
            )

    if prepared:
        net = load_checkpoint_model(source, hub_config.model)
        verify_folder(source, net)
        if f"hf-hub:{repo_id}" not in check_card(source / CARD_NAME).text:
            raise ValueError(
                f"the card in {source} was written for another repository: write the folder "
                f"again with --repo-id {repo_id} --dry-run DIR"
            )
        return _upload(api, source, repo_id, private)

    net = load_checkpoint_model(
        source, hub_config.model or model, model_args or hub_config.model_args
    )
    hub_config = replace(hub_config, dataset=_training_dataset(source, hub_config))
    architecture = net.pretrained_cfg["architecture"]
    robustness = _collect_results(
        source,
        architecture,
        hub_config,
        None if results is None else Path(results),
        Path(official_dir),
    )
    training = _training_facts(source, hub_config)
    parent = target.parent if dry_run is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=parent))
    try:
        _write_folder(
            staging, net, source, repo_id, hub_config, robustness, training, Path(card_template)
        )
        verify_folder(staging, net)
        check_card(staging / CARD_NAME)
        if dry_run is None:
            return _upload(api, staging, repo_id, private)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        staging.rename(target)
        return str(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _upload(api: HfApi, folder: Path, repo_id: str, private: bool) -> str:
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, PLOT_NAME, "LICENSE"],
        commit_message=f"Publish {repo_id} with timm-pushpull {__version__}",
    )
    return str(commit)


# ---------------------------------------------------------------------------------------------
# Command line: timm-pushpull publish
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        type=Path,
        help="a run directory or model folder (config.json + model.safetensors), a weights file "
        "(.safetensors, .pth), or a folder an earlier --dry-run wrote (uploaded as is)",
    )
    parser.add_argument("--repo-id", help="ORG/NAME on the Hub (default: the hub config's repo_id)")
    parser.add_argument(
        "--hub-config",
        type=Path,
        help="repo id, card fields, results (default: hub_configs/NAME.yaml for --repo-id ORG/NAME)",
    )
    parser.add_argument("--results", type=Path, help="results.json of `timm-pushpull evaluate`")
    parser.add_argument(
        "--dry-run", type=Path, metavar="DIR", help="write the folder to DIR instead of uploading"
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repository private")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --dry-run DIR or the repo's README",
    )
    parser.add_argument("--model", help="architecture[.tag] of a weights file")
    parser.add_argument(
        "--model-args", type=json.loads, default=None, help="JSON model kwargs of a weights file"
    )
    parser.add_argument(
        "--official-dir",
        type=Path,
        default=OFFICIAL_DIR,
        help="the authors' release (for 'official' results)",
    )
    parser.add_argument(
        "--card-template", type=Path, default=MODEL_CARD_TEMPLATE, help="model card template"
    )


def main(args: argparse.Namespace) -> int:
    try:
        where = publish(
            args.source,
            args.repo_id,
            hub_config=args.hub_config,
            results=args.results,
            dry_run=args.dry_run,
            private=args.private,
            overwrite=args.overwrite,
            model=args.model,
            model_args=args.model_args,
            official_dir=args.official_dir,
            card_template=args.card_template,
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{'wrote' if args.dry_run else 'uploaded'} {where}")
    return 0
