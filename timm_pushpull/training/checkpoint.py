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
from ..errors import MissingFileError, OutputExistsError


def prepare_run_dir(path: str | Path, resume: bool, overwrite: bool) -> Path:
    """Check ``path`` may be used and create it; never take over another run's folder silently."""
    path = Path(path)
    has_content = path.is_dir() and any(path.iterdir())
    if resume:
        if not (path / RESUME_FILE).is_file():
            raise MissingFileError(f"resume: no {RESUME_FILE} in {path} to continue from")
    elif has_content and not overwrite:
        raise OutputExistsError(
            f"output {path} already holds files (another run?). Pass --resume to continue that run, "
            "--overwrite to replace its files, or choose another --output."
        )
    elif path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    return yaml.safe_load((Path(run_dir) / TRAIN_CONFIG_FILE).read_text())


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
    """The resume state; ``weights_only=True`` so a checkpoint cannot run code when loaded."""
    return torch.load(Path(run_dir) / RESUME_FILE, map_location="cpu", weights_only=True)


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
