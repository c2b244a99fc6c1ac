"""The authors' released CIFAR-10 push-pull models, converted to timm model folders.

Strisciuglio, Lopez-Antequera, Petkov, "Enhanced robustness of convolutional networks with a
push-pull inhibition layer", Neural Computing and Applications 32 (2020),
doi:10.1007/s00521-020-04751-8; checkpoints from github.com/nicstrisc/Push-Pull-CNN-layer (MIT).

Each ``<arch>[-pp].pth.tar`` holds ``{"epoch", "best_prec1", "state_dict"}`` whose keys match our
``resnet20..56[_pp]`` / ``densenet40_12, densenet100_12[_pp]`` by name. ``timm-pushpull
convert-official SRC DST`` writes ``model.safetensors`` + ``config.json`` (+ the authors' LICENSE)
into DST, a folder ``timm.create_model("local-dir:DST")`` loads after ``import timm_pushpull``.
"""

import argparse
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import save_for_hf

from ..constants import LICENSE_FILE
from ..errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingFileError,
    OutputExistsError,
)
from ._cfg import OFFICIAL_C10, published_hub_id

_logger = logging.getLogger(__name__)

ORIGIN_URL = "https://github.com/nicstrisc/Push-Pull-CNN-layer"
PAPER_ID = "doi:10.1007/s00521-020-04751-8"
TAG = OFFICIAL_C10
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt")


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One released model: its file, our architecture, and what the authors report for it."""

    file: str  # file name in the release
    model_name: str  # our timm architecture
    top1: float  # clean CIFAR-10 test accuracy in % (the checkpoint's best_prec1)
    epoch: int


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    ckpt.model_name: ckpt
    for ckpt in (
        OfficialCheckpoint("resnet-20.pth.tar", "resnet20", 92.43, 143),
        OfficialCheckpoint("resnet-20-pp.pth.tar", "resnet20_pp", 91.71, 161),
        OfficialCheckpoint("resnet-32.pth.tar", "resnet32", 92.70, 140),
        OfficialCheckpoint("resnet-32-pp.pth.tar", "resnet32_pp", 92.84, 193),
        OfficialCheckpoint("resnet-44.pth.tar", "resnet44", 93.23, 124),
        OfficialCheckpoint("resnet-44-pp.pth.tar", "resnet44_pp", 93.13, 189),
        OfficialCheckpoint("resnet-56.pth.tar", "resnet56", 93.36, 139),
        OfficialCheckpoint("resnet-56-pp.pth.tar", "resnet56_pp", 92.99, 159),
        OfficialCheckpoint("densenet-40-12.pth.tar", "densenet40_12", 93.67, 335),
        OfficialCheckpoint("densenet-40-12-pp.pth.tar", "densenet40_12_pp", 92.87, 231),
        OfficialCheckpoint("densenet-100-12.pth.tar", "densenet100_12", 95.30, 317),
        OfficialCheckpoint("densenet-100-12-pp.pth.tar", "densenet100_12_pp", 94.96, 278),
    )
}


def official_c10_cfg(model_name: str) -> dict[str, Any]:
    """Pretrained-cfg fields of a released model: Hub id (once published), license, origin,
    reported accuracy."""
    ckpt = OFFICIAL_CHECKPOINTS[model_name]
    return dict(
        hf_hub_id=published_hub_id(f"{model_name}.{TAG}"),
        license="mit",
        origin_url=ORIGIN_URL,
        description=f"{ckpt.file} released by Strisciuglio et al., converted to timm",
        notes=(
            f"CIFAR-10 clean top-1 {ckpt.top1:.2f}%: the checkpoint's best_prec1 (epoch {ckpt.epoch})",
        ),
    )


def checkpoint_for_file(path: str | Path) -> OfficialCheckpoint:
    """The released model a checkpoint file is, by its file name."""
    name = Path(path).name
    for ckpt in OFFICIAL_CHECKPOINTS.values():
        stem = ckpt.file.removesuffix(".pth.tar")
        if name in (stem + suffix for suffix in CHECKPOINT_SUFFIXES):
            return ckpt
    known = ", ".join(c.file for c in OFFICIAL_CHECKPOINTS.values())
    raise InvalidArgumentError(
        f"{name!r} is not one of the released checkpoints ({known}); pass model_name"
    )


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(
            f"{path}: expected a state dict or a dict with 'state_dict', got {type(checkpoint)}"
        )
    # checkpoints saved from nn.DataParallel prefix every key
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def _check_keys(
    state_dict: dict[str, torch.Tensor], model: torch.nn.Module, src: Path, model_name: str
) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unknown = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    problems = [
        f"{label}: {', '.join(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unknown keys", unknown),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(f"{src} does not match {model_name}: " + "; ".join(problems))


def _find_license(src: Path) -> Path | None:
    real = src.resolve()
    for folder in (src.parent, src.parent.parent, real.parent, real.parent.parent):
        if (folder / LICENSE_FILE).is_file():
            return folder / LICENSE_FILE
    return None


def _check_destination(dst: Path, overwrite: bool) -> None:
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())) and not overwrite:
        raise OutputExistsError(
            f"{dst} already exists; pass overwrite=True (--overwrite) to replace it"
        )


def convert_official_checkpoint(
    src: str | Path, dst: str | Path, overwrite: bool = False, model_name: str | None = None
) -> Path:
    """Convert one released checkpoint into a timm model folder ``dst``; returns ``dst``.

    The model is found from the file name (``resnet-20-pp.pth.tar`` -> ``resnet20_pp``) unless
    ``model_name`` is given. Refuses checkpoints with missing, unknown or misshapen keys, and an
    existing non-empty ``dst`` unless ``overwrite``; ``dst`` is replaced only once the new folder
    is complete.
    """
    src, dst = Path(src), Path(dst)
    if model_name is None:
        model_name = checkpoint_for_file(src).model_name
    elif model_name not in OFFICIAL_CHECKPOINTS:
        raise InvalidArgumentError(
            f"model_name must be one of {sorted(OFFICIAL_CHECKPOINTS)}, got {model_name!r}"
        )
    if not src.is_file():
        raise MissingFileError(f"checkpoint {src} not found")
    _check_destination(dst, overwrite)

    state_dict = _load_state_dict(src)
    model = timm.create_model(f"{model_name}.{TAG}")
    _check_keys(state_dict, model, src, model_name)
    model.load_state_dict(state_dict)
    model.eval()

    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        save_for_hf(model, staging, safe_serialization=True)
        license_file = _find_license(src)
        if license_file is not None:
            shutil.copyfile(license_file, staging / LICENSE_FILE)
        else:
            _logger.warning("no LICENSE beside %s: add the authors' MIT license to %s", src, dst)
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        staging.rename(dst)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dst


def convert_official_folder(
    src: str | Path, dst: str | Path, overwrite: bool = False
) -> list[Path]:
    """Convert every released checkpoint found in folder ``src`` into ``dst/<model_name>``."""
    src, dst = Path(src), Path(dst)
    found = [
        (ckpt, src / ckpt.file)
        for ckpt in OFFICIAL_CHECKPOINTS.values()
        if (src / ckpt.file).is_file()
    ]
    if not found:
        raise MissingFileError(
            f"no released checkpoint ({', '.join(c.file for c in OFFICIAL_CHECKPOINTS.values())}) in {src}"
        )
    for ckpt, _ in found:  # check them all before writing anything
        _check_destination(dst / ckpt.model_name, overwrite)
    return [
        convert_official_checkpoint(path, dst / ckpt.model_name, overwrite) for ckpt, path in found
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", type=Path, help="a released checkpoint file, or the folder holding them"
    )
    parser.add_argument(
        "dst", type=Path, help="output model folder (for a SRC folder: one sub-folder per model)"
    )
    parser.add_argument(
        "--model",
        choices=sorted(OFFICIAL_CHECKPOINTS),
        help="architecture of a SRC file whose name is not the released one",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output folders")


def main(args: argparse.Namespace) -> int:
    if args.src.is_dir():
        if args.model:
            raise InvalidArgumentError("--model applies to a single checkpoint file, not a folder")
        written = convert_official_folder(args.src, args.dst, args.overwrite)
    else:
        written = [convert_official_checkpoint(args.src, args.dst, args.overwrite, args.model)]
    for path in written:
        print(f"wrote {path}")
    return 0
