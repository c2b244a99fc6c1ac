"""The study folder on disk: ``study.json`` (the grid and settings it holds), a folder per cell
(:attr:`.grid.Cell.folder`), when a cell is finished, and where the corrupted images are."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..constants import PER_IMAGE_FILE, RESULTS_FILE
from ..errors import MissingFileError, OutputExistsError
from ..experiments import STUDY_FULL, STUDY_SCALES, ExperimentSettings
from ..locking import user_files
from .grid import GROUPS, Cell, group_settings

STUDY_FILE, DONE_FILES = "study.json", (RESULTS_FILE, PER_IMAGE_FILE)


def corrupted_folder(out: Path, test_samples: int) -> Path:
    """The corrupted copies of the seeded subset of ``test_samples`` test images: one folder per
    subset, shared by every group tested on it."""
    return out / "data" / f"fashion-mnist-c-{test_samples}"


def open_study(out: Path, cells: Sequence[Cell], settings: ExperimentSettings) -> None:
    """Create ``out/study.json``, or check the one there declares this grid and settings.

    A grid that only adds cells (more seeds, more settings, new groups) to the stored one, with
    the same settings, and the same test subsets and group settings for the groups it has cells
    of, extends the study: its finished cells are the same experiments."""
    # each group's test subset too: its corrupted images are generated once for the whole folder
    test_samples = {name: group_settings(g, settings).test_samples for name, g in GROUPS.items()}
    own = {name: dict(settings=asdict(group_settings(g, settings)), train=g.train)
           for name, g in GROUPS.items() if g.settings or g.train}  # fmt: skip
    identity = dict(settings=asdict(settings), cells=[asdict(c) for c in cells],
                    test_samples=test_samples, group_settings=own)  # fmt: skip
    identity = json.loads(json.dumps(identity))  # tuples -> lists, as read back
    path = out / STUDY_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored == identity:
            return
        stored_groups = {c["group"] for c in stored.get("cells", [])}
        same_protocol = stored.get("settings") == identity["settings"] and all(
            identity[key].get(name) == stored.get(key, {}).get(name)
            for key in ("test_samples", "group_settings")
            for name in stored_groups
        )
        if not same_protocol or any(c not in identity["cells"] for c in stored.get("cells", [])):
            raise OutputExistsError(
                f"{out} holds a study of another grid or settings ({path}): choose another --out "
                "(results of different grids are never mixed in one folder)"
            )
        added = len(identity["cells"]) - len(stored["cells"])
        print(f"study: extending {path} by {added} cell(s)", flush=True)
        path.write_text(json.dumps(identity, indent=1))
        return
    if user_files(out):
        raise OutputExistsError(
            f"{out} already holds files that are not a study: choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=1))


def stored_study(out: Path) -> tuple[list[Cell], dict[str, Any]]:
    """The cells and settings ``out/study.json`` declares (``group_settings``: each group's
    settings, as stored, or as this grid gives them for a study.json from before they were)."""
    path = out / STUDY_FILE
    if not path.is_file():
        raise MissingFileError(
            f"no {STUDY_FILE} in {out}: not a study folder (run the study first)"
        )
    stored = json.loads(path.read_text())
    scale = STUDY_SCALES.get(stored["settings"]["name"], replace(STUDY_FULL, **stored["settings"]))
    groups = {
        name: stored.get("group_settings", {}).get(name, {}).get("settings")
        or asdict(group_settings(group, scale))
        for name, group in GROUPS.items()
    }
    settings = dict(stored["settings"], group_test_samples=stored.get("test_samples", {}),
                    group_settings=groups)  # fmt: skip
    return [Cell(**c) for c in stored["cells"]], settings


def cell_finished(folder: Path) -> bool:
    """The cell's results.json and per_image.npz are present and its results valid."""
    from ..robustness.results import load_results

    if not all((folder / name).is_file() for name in DONE_FILES):
        return False
    try:
        load_results(folder / RESULTS_FILE)
    except (ValueError, OSError):
        return False
    return True


def finished_cells(out: Path, cells: Sequence[Cell]) -> dict[tuple[str, int], Path]:
    """(label, seed) -> folder of each finished cell of ``cells``."""
    return {(c.label, c.seed): out / c.folder for c in cells if cell_finished(out / c.folder)}
