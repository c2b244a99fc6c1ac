"""Run folders and checkpoints: atomic writes, ``weights_only`` resume state, timm model folders.

A run folder holds ``checkpoint.pth`` (everything needed to resume, rewritten atomically after every
epoch and when a run stops early), ``metrics.jsonl``, ``train_config.yaml`` and, at the end,
``model.safetensors`` + ``config.json`` (``timm.create_model("local-dir:RUN")`` loads them).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

# the run folder's file names live in ..constants; trainer and study import them from here too
from ..constants import METRICS_FILE, MODEL_FILES, RESUME_FILE, TRAIN_CONFIG_FILE  # noqa: F401
from ..errors import CheckpointError, MissingFileError, OutputExistsError
from ..locking import user_files

TENSORBOARD_DIR = "tensorboard"  # Accelerate's tracker folder under the run folder


def check_run_dir(path: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that ``path`` may not be used for: never take over another run silently.

    The lock's own files (:data:`~timm_pushpull.locking.LOCK_FILES`) are not a run's files.
    """
    path = Path(path)
    if resume:
        if not (path / RESUME_FILE).is_file():
            raise MissingFileError(f"resume: no {RESUME_FILE} in {path} to continue from")
    elif user_files(path) and not overwrite:
        raise OutputExistsError(
            f"output {path} already holds files (another run?). Pass --resume to continue that run, "
            "--overwrite to replace its files, or choose another --output."
        )


def run_files(run_dir: Path) -> list[Path]:
    """The files and folders a run writes into ``run_dir`` (those present)."""
    names = (TRAIN_CONFIG_FILE, METRICS_FILE, RESUME_FILE, *MODEL_FILES, TENSORBOARD_DIR)
    return [Path(run_dir) / name for name in names if (Path(run_dir) / name).exists()]


def remove_paths(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers see the old or the new file, whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def save_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_text_atomic(run_dir / TRAIN_CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


def load_config(run_dir: Path) -> dict[str, Any]:
    """The settings a run was started with; a missing or unreadable file is a user error naming it."""
    path = Path(run_dir) / TRAIN_CONFIG_FILE
    if not path.is_file():
        raise MissingFileError(f"resume: no {TRAIN_CONFIG_FILE} in {run_dir}: not a run folder")
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointError(f"resume: {path} cannot be read: {error}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"resume: {path} is not a mapping of settings")
    return config


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain types (loadable with weights_only)."""
    version, words, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(words), gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically (a crash mid-write leaves the previous checkpoint intact)."""
    atomic_write_bytes(Path(run_dir) / RESUME_FILE, lambda tmp: torch.save(state, tmp))


def load_resume_state(run_dir: Path) -> dict[str, Any]:
    """The resume state; ``weights_only=True`` so a checkpoint cannot run code when loaded.

    A file that cannot be read, or does not hold this trainer's state, is a
    :class:`~timm_pushpull.errors.CheckpointError` naming it.
    """
    path = Path(run_dir) / RESUME_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # a damaged file fails in whichever layer notices first (zip, pickle, storage: RuntimeError,
    # UnpicklingError, EOFError, ValueError, ...): each means the same to the user
    except Exception as error:
        raise CheckpointError(
            f"resume: {path} cannot be read ({type(error).__name__}: {error}); "
            "start again with --overwrite, or restore the file"
        ) from None
    expected = dict(
        model=dict, optimizer=dict, scheduler=dict, epoch=int, step_in_epoch=int,
        global_step=int, epoch_stats=list, rng=dict,
    )  # fmt: skip
    wrong = [
        k
        for k, kind in expected.items()
        if not isinstance(state, dict) or not isinstance(state.get(k), kind)
    ]
    if wrong or min(state["epoch"], state["step_in_epoch"], state["global_step"]) < 0:
        raise CheckpointError(
            f"resume: {path} is not a checkpoint of timm-pushpull train "
            f"(missing or invalid: {wrong or 'negative epoch or step'})"
        )
    return state


def save_model_folder(
    model: torch.nn.Module,
    run_dir: Path,
    data_config: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
) -> None:
    """``model.safetensors`` + ``config.json`` via timm's ``save_for_hf``, each file replaced atomically."""
    from timm.models import save_for_hf

    run_dir = Path(run_dir)
    staging = Path(tempfile.mkdtemp(prefix=".model.", dir=run_dir))
    try:
        save_for_hf(
            model,
            staging,
            model_config=model_config,
            safe_serialization=True,
            data_config=data_config,
        )
        for name in MODEL_FILES:
            os.replace(staging / name, run_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
