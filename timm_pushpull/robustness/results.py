"""results.json of ``timm-pushpull evaluate``: the one format, its reader, writer and summaries.

Every reader (``compare``, baselines, model cards) goes through :func:`load_results`, so they agree
on what a file means. Error rates and probabilities are fractions in [0, 1]; CE, rCE and FR are
ratios where 1.0 = the baseline; reports print them in %::

    {
      "schema": "timm-pushpull-robustness", "version": 2, "timm_pushpull_version": "0.1.0",
      "model": "resnet20_pp", "checkpoint": null | "path",      (labels: not part of the identity)
      "n_images": 10000, "seed": 0, "world_size": 2,   (processes of the run that wrote it last)
      "identity": {"architecture": ..., "model_args": {...}, "weights_sha256": ..., ...},
      "settings": {"datasets": {"clean": ..., "c": ..., "p": ...}, "scale": "cifar", "seed": 0,
                   "n_images": 10000, "severities": [1, 2, 3, 4, 5], "input_size": [3, 32, 32],
                   "mean": [...], "std": [...], "shift": {"mode": "circular", "max_shift": 4,
                   "trials": 1}, "noise_levels": {...}, "num_frames": null,
                   "frost": null | {"kind": "photos" | "procedural", "origin": ..., "folder": ...,
                                    "comparable": bool}, "spatter": "wrap" | "clip",
                   "corruption_output": "released" | "float"},
      "clean_error": 0.0756 | null,
      "corruptions": {"gaussian_noise": {"errors": [one per severity], "mean_error": e,
                                         "source": "generated" | "official"}, ...,
                      "frost": {..., "comparable": false}  (generated, not the reference photos)},
      "perturbations": {"translate": {"flip_probability": p, "noise": false, "n_sequences": n,
                                      "n_frames": 16, "source": ...}, ...},
      "shift": {"consistency": c, "mode": "circular", "max_shift": 4, "n_pairs": n} | null,
      "noise_sweeps": {"gaussian": {"parameter": "variance", "levels": [...], "errors": [...]},
                       "speckle": {...}, "contrast_poisson": {"parameter": "contrast", ...}},
      "baseline": null | {"name": ..., "source": ..., "clean_error": e, "severities": [...],
                          "corruption_errors": {name: mean error}, "flip_probabilities": {...}},
      "summary": {"mean_corruption_error": e | null (1-channel images: saturate left out),
                  "ce": {name: r}, "rce": {name: r},
                  "ce_severities": {name: [severities both have]}, "mce": r | null,
                  "mce_corruptions": [...], "mce_complete": bool, "relative_mce": r | null,
                  "relative_mce_corruptions": [...], "relative_mce_complete": bool,
                  "mean_flip_probability": p | null, "flip_rates": {name: r}, "mfr": r | null},
      "inputs": {"<unit>": {"clean" | "frost" | "fog.npy" | "labels.npy" | "fog/1" | ...: sha256}}
    }

``identity`` and ``settings`` together say what the numbers depend on (:class:`RunIdentity`; the
``settings`` block is :meth:`.settings.EvalSettings.record`, read back by
:meth:`~.settings.EvalSettings.from_record`): a rerun into the same folder resumes only when both
are equal, see :func:`run_differences`. Version 1
files (no ``identity``) are read for reports and baselines but never resumed into.
``world_size`` (processes of the run that wrote the file last) is provenance, not identity: the
numbers do not depend on it, and a run resumes with any number of processes. ``inputs`` holds, per
finished unit (:func:`unit_key`), a fingerprint of every input it read (:mod:`.fingerprint`): a
rerun recomputes them for the units it keeps and refuses the folder when the data changed
(:func:`input_differences`); units of a file written before inputs were recorded (older
timm-pushpull) are evaluated again. Readers that only report (``compare``, baselines) ignore it.

Beside it, ``per_image.npz`` (:data:`PER_IMAGE_FILE`) keeps what each image did in every finished
unit, for paired comparisons of models on the same images (:mod:`.stats`); the numbers of
results.json are means of these arrays. Images are the last axis; ``<unit>/indices`` holds the
positions of those images in the data set they come from (the clean test set, or an official -C
/ -P folder)::

    clean_error                  bool [N]: wrong
    corruptions/<name>           bool [severities, N]: wrong, severities as settings.severities
    noise_sweeps/<name>          bool [levels, N]: wrong, levels as the entry's levels
    shift                        bool [trials, N]: the two shifted copies get the same class
    perturbations/<name>         int32 [frames, N sequences]: top-1 class of each frame
    <unit>/indices               int64 [N]
    run                          str: :func:`run_key` of the results.json it belongs to

Both files are written by the first process only, atomically, per-image outcomes first: a crash
between the two leaves outcomes of one unit results.json does not list, which are ignored. A
resumed run keeps the outcomes of the units results.json lists and evaluates again any finished
unit without them (e.g. of a file written before per-image outcomes were kept); outcomes whose
``run`` is not that of results.json (another run's) are never read (:func:`load_per_image`).
The numbers of every unit read back must be those its outcomes give (:func:`check_outcomes`): a
results.json edited by hand (or damaged) is refused, naming the unit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..constants import PER_IMAGE_FILE, RESULTS_FILE
from ..errors import InvalidArgumentError, MissingFileError
from . import metrics

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "RESULTS_FILE",
    "PER_IMAGE_FILE",
    "UnitOutcomes",
    "unit_key",
    "run_key",
    "finished_units",
    "save_per_image",
    "load_per_image",
    "RunIdentity",
    "ResultsFile",
    "state_dict_sha256",
    "array_sha256",
    "empty_results",
    "validate_results",
    "load_results",
    "save_results",
    "run_differences",
    "check_outcomes",
    "input_differences",
    "severities",
    "summarize",
]

SCHEMA = "timm-pushpull-robustness"
SCHEMA_VERSION = 2
_SECTIONS = ("corruptions", "perturbations", "noise_sweeps")  # name -> entry objects
_ALL_SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class RunIdentity:
    """What a run's numbers depend on besides its ``settings``: a rerun differing in any field
    is another run. Add a field here (with a default) for anything new that changes a number.

    The batch size and the number of workers are deliberately absent: the numbers do not depend
    on them (random draws are seeded per image block, see ``evaluate.noise_seed``).
    """

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""  # of the state dict actually evaluated, not of a file
    labels_sha256: str | None = None  # of the clean test set's labels, all of them
    subset_sha256: str | None = None  # of the indices of the images evaluated
    c_labels_sha256: str | None = None  # of an official -C folder's labels
    random_generator: str = "torch"  # "c-kernel" (csrc/random.c) or "torch": other draws
    device: str = "cpu"  # torch draws and arithmetic differ between device types
    timm_pushpull_version: str = ""
    torch_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        # through JSON, so that a fresh identity compares equal to one read back from a file
        return json.loads(json.dumps(asdict(self)))


def _digest_update(digest, value: torch.Tensor | np.ndarray) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        header = f"{value.dtype}:{tuple(value.shape)}"
        value = value.reshape(-1).view(torch.uint8).numpy()  # any dtype, bfloat16 included
    else:
        value = np.ascontiguousarray(value)
        header = f"{value.dtype.str}:{value.shape}"
    digest.update(header.encode() + b"\n")
    digest.update(value.tobytes())


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and values of parameters and
    buffers): the weights actually evaluated, whatever file or Hub repository they came from."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode() + b"\n")
        if isinstance(value, torch.Tensor):
            _digest_update(digest, value)
        else:  # a module's extra state
            digest.update(repr(value).encode() + b"\n")
    return digest.hexdigest()


def array_sha256(values: torch.Tensor | np.ndarray | Sequence[int]) -> str:
    """SHA-256 of an array's dtype, shape and values (labels, subset indices)."""
    digest = hashlib.sha256()
    values = values if isinstance(values, torch.Tensor | np.ndarray) else np.asarray(values)
    _digest_update(digest, values)
    return digest.hexdigest()


def _no_numbers() -> dict[str, Any]:
    """The sections of a run that has evaluated nothing yet (no numbers, no inputs read)."""
    return {"clean_error": None, "corruptions": {}, "perturbations": {}, "shift": None,
            "noise_sweeps": {}, "baseline": None, "summary": None, "inputs": {}}  # fmt: skip


def empty_results(header: Mapping[str, Any]) -> dict[str, Any]:
    """A results dict with ``header`` (schema, model, identity, settings, ...) and no numbers yet."""
    return {**header, **_no_numbers()}


# ----------------------------------------------------------------------------------------------
# validation


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidArgumentError(f"{where} must be a number in [0, 1], got {value!r}")
    return float(value)


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _fractions(values: Any, where: str, length: int | None = None) -> list[float]:
    if not isinstance(values, list) or not values:
        raise InvalidArgumentError(f"{where} must be a non-empty list of numbers, got {values!r}")
    if length is not None and len(values) != length:
        raise InvalidArgumentError(
            f"{where} has {len(values)} values but settings.severities {length}"
        )
    return [_fraction(value, f"{where}[{number}]") for number, value in enumerate(values)]


def _severities(settings: Mapping, where: str) -> list[int] | None:
    values = settings.get("severities")
    if values is None:
        return None
    if (
        not isinstance(values, list)
        or not values
        or any(
            isinstance(s, bool) or not isinstance(s, int) or s not in _ALL_SEVERITIES
            for s in values
        )
        or len(set(values)) != len(values)
    ):
        raise InvalidArgumentError(
            f"{where}: settings.severities must be distinct ints in 1..5, got {values!r}"
        )
    return values


def validate_results(data: Any, where: str = "results") -> dict[str, Any]:
    """``data`` checked against the schema, with missing optional sections filled in.

    Raises ValueError naming ``where`` and the offending field. Accepts versions 1 and 2; a
    version 1 file gets ``identity: None`` (it recorded none).
    """
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise InvalidArgumentError(
            f"{where} is not a results.json of `timm-pushpull evaluate` (no schema {SCHEMA!r})"
        )
    version = data.get("version")
    if version not in range(1, SCHEMA_VERSION + 1):
        raise InvalidArgumentError(
            f"{where} has results format version {version!r}; this timm-pushpull reads versions "
            f"1..{SCHEMA_VERSION}"
            + (" (upgrade timm-pushpull)" if isinstance(version, int) else "")
        )
    results = dict(data)
    for key, default in {"identity": None, "settings": {}, **_no_numbers()}.items():
        if results.get(key) is None:
            results[key] = default
    settings = _mapping(results["settings"], f"{where}: settings")
    if version >= 2:
        _mapping(results["identity"], f"{where}: identity")
    world_size = results.get("world_size", 1)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise InvalidArgumentError(f"{where}: world_size must be an int >= 1, got {world_size!r}")
    evaluated = _severities(settings, where)
    if results["clean_error"] is not None:
        _fraction(results["clean_error"], f"{where}: clean_error")
    for section in _SECTIONS:
        _mapping(results[section], f"{where}: {section}")
    if results["corruptions"] and evaluated is None:
        raise InvalidArgumentError(
            f"{where}: corruption errors need settings.severities, which is missing"
        )
    for name, entry in results["corruptions"].items():
        entry = _mapping(entry, f"{where}: corruptions.{name}")
        _fractions(entry.get("errors"), f"{where}: corruptions.{name}.errors", len(evaluated))
        _fraction(entry.get("mean_error"), f"{where}: corruptions.{name}.mean_error")
    for name, entry in results["perturbations"].items():
        entry = _mapping(entry, f"{where}: perturbations.{name}")
        _fraction(entry.get("flip_probability"), f"{where}: perturbations.{name}.flip_probability")
    if results["shift"] is not None:
        shift = _mapping(results["shift"], f"{where}: shift")
        _fraction(shift.get("consistency"), f"{where}: shift.consistency")
    for name, entry in results["noise_sweeps"].items():
        entry = _mapping(entry, f"{where}: noise_sweeps.{name}")
        levels = entry.get("levels")
        if not isinstance(levels, list) or not levels:
            raise InvalidArgumentError(
                f"{where}: noise_sweeps.{name}.levels must be a non-empty list"
            )
        _fractions(entry.get("errors"), f"{where}: noise_sweeps.{name}.errors")
        if len(entry["errors"]) != len(levels):
            raise InvalidArgumentError(
                f"{where}: noise_sweeps.{name} has {len(levels)} levels but "
                f"{len(entry['errors'])} errors"
            )
    for key in ("baseline", "summary"):
        if results[key] is not None:
            _mapping(results[key], f"{where}: {key}")
    for key, inputs in _mapping(results["inputs"], f"{where}: inputs").items():
        inputs = _mapping(inputs, f"{where}: inputs.{key}")
        if not all(isinstance(v, str) for v in inputs.values()):
            raise InvalidArgumentError(f"{where}: inputs.{key} must map names to SHA-256 strings")
    return results


def _results_path(path: str | Path) -> Path:
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def _write_atomically(path: Path, write) -> Path:
    """``write(file)`` into a temporary file renamed over ``path``: never a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """A results.json (or a folder holding one), validated: see :func:`validate_results`."""
    file = _results_path(path)
    if not file.is_file():
        raise MissingFileError(f"{path}: no {RESULTS_FILE} there")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgumentError(f"{file} is not a readable results.json: {error}") from error
    return validate_results(data, str(file))


def save_results(results: Mapping[str, Any], path: str | Path) -> Path:
    """Validate and write ``results`` atomically (a temporary file renamed over the old one), so
    an interrupted write never leaves a truncated file."""
    validate_results(results, "results to save")
    text = (json.dumps(results, indent=2) + "\n").encode("utf-8")
    return _write_atomically(Path(path), lambda file: file.write(text))


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def run_differences(stored: Mapping, requested: Mapping) -> list[tuple[str, Any, Any]]:
    """(field, stored value, requested value) for every field of ``identity`` and ``settings``
    where two runs differ; a field one of them lacks counts as a difference."""
    differences = []
    for block in ("identity", "settings"):
        old, new = _flatten(stored.get(block), block), _flatten(requested.get(block), block)
        for key in list(old) + [key for key in new if key not in old]:
            if old.get(key, "absent") != new.get(key, "absent"):
                differences.append((key, old.get(key, "absent"), new.get(key, "absent")))
    return differences


# ----------------------------------------------------------------------------------------------
# per-image outcomes


@dataclass(frozen=True)
class UnitOutcomes:
    """What each image did in one unit: ``values [..., N]`` (see the module docstring) for the
    images at positions ``indices [N]`` of the data set the unit evaluated."""

    values: np.ndarray
    indices: np.ndarray

    def __post_init__(self):
        if self.indices.ndim != 1 or self.values.shape[-1:] != self.indices.shape:
            raise InvalidArgumentError(
                f"per-image values {self.values.shape} must end with the {len(self.indices)} "
                "images of indices"
            )


def unit_key(section: str, name: str | None = None) -> str:
    """Name of a unit's outcomes: ``clean_error``, ``shift`` or ``<section>/<name>``."""
    return section if name is None else f"{section}/{name}"


def finished_units(results: Mapping[str, Any]) -> list[str]:
    """:func:`unit_key` of every unit ``results`` holds a number for."""
    keys = [key for key in ("clean_error", "shift") if results.get(key) is not None]
    for section in _SECTIONS:
        keys += [unit_key(section, name) for name in results.get(section) or {}]
    return keys


def run_key(results: Mapping[str, Any]) -> str:
    """SHA-256 of a run's ``identity`` and ``settings``: the outcomes of one run carry its key."""
    run = {"identity": results.get("identity"), "settings": results.get("settings")}
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()


def save_per_image(outcomes: Mapping[str, UnitOutcomes], run: str, path: str | Path) -> Path:
    """Write per-image ``outcomes`` (by :func:`unit_key`) of the run ``run`` atomically."""
    arrays = {"run": np.array(run)}
    for key, unit in outcomes.items():
        arrays[key], arrays[f"{key}/indices"] = unit.values, unit.indices
    return _write_atomically(Path(path), lambda file: np.savez_compressed(file, **arrays))


def _read_per_image(path: Path) -> tuple[str, dict[str, UnitOutcomes]]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(f"{path} is not a readable {PER_IMAGE_FILE}: {error}") from error
    run = str(arrays.pop("run", ""))
    keys = [key for key in arrays if not key.endswith("/indices")]
    if not run or any(f"{key}/indices" not in arrays for key in keys):
        raise InvalidArgumentError(f"{path} is not a {PER_IMAGE_FILE} of `timm-pushpull evaluate`")
    return run, {key: UnitOutcomes(arrays[key], arrays[f"{key}/indices"]) for key in keys}


def _unit_entry(results: Mapping[str, Any], key: str) -> Any:
    section, _, name = key.partition("/")
    return results[section][name] if name else results[section]


def _outcome_numbers(results: Mapping[str, Any], key: str, values: np.ndarray) -> dict[str, Any]:
    """The numbers of the unit ``key`` of results.json that its per-image ``values`` give, and
    the shape the values must have (``rows``: their first axis, None for 1-d values)."""
    section = key.partition("/")[0]
    entry, count = _unit_entry(results, key), values.shape[-1]
    if section == "clean_error":
        return {"rows": None, "clean_error": int(values.sum()) / count}
    if section == "perturbations":
        predictions = values.T  # [sequences, frames]
        return {"rows": entry.get("n_frames", values.shape[0]),
                "flip_probability": metrics.flip_probability(predictions, bool(entry["noise"])),
                "n_sequences": count, "n_frames": values.shape[0]}  # fmt: skip
    if section == "shift":
        trials = (results["settings"].get("shift") or {}).get("trials", values.shape[0])
        return {"rows": trials, "consistency": int(values.sum()) / values.size,
                "n_pairs": int(values.size)}  # fmt: skip
    errors = [int(row.sum()) / count for row in values]
    if section == "noise_sweeps":
        return {"rows": len(entry["levels"]), "errors": errors}
    return {"rows": len(severities(results)), "errors": errors,
            "mean_error": float(np.mean(errors))}  # fmt: skip


def _same_number(stored: Any, computed: Any) -> bool:
    if isinstance(computed, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(computed)
            and all(_same_number(a, b) for a, b in zip(stored, computed, strict=True))
        )
    return (
        isinstance(stored, int | float)
        and not isinstance(stored, bool)
        and math.isclose(stored, computed, rel_tol=1e-9, abs_tol=1e-12)
    )


def check_outcomes(
    results: Mapping[str, Any], key: str, outcomes: UnitOutcomes, where: str = "results"
) -> None:
    """Raise a ValueError naming the unit ``key`` when its numbers in ``results`` are not those
    its per-image ``outcomes`` give (an edited or damaged file)."""
    values = outcomes.values
    expected = _outcome_numbers(results, key, values) if values.size else {"rows": -1}
    rows = expected.pop("rows")
    shape_ok = values.ndim == 1 if rows is None else values.ndim == 2 and values.shape[0] == rows
    entry = _unit_entry(results, key)
    stored = {"clean_error": entry} if key == "clean_error" else entry
    wrong = [name for name, value in expected.items() if not _same_number(stored.get(name), value)]
    if not shape_ok or not values.size or wrong:
        found = ", ".join(f"{n} {_short(stored.get(n))} vs {_short(expected[n])}" for n in wrong)
        raise InvalidArgumentError(
            f"{where}: the numbers of {key} contradict its per-image outcomes in {PER_IMAGE_FILE} "
            f"({found or f'outcomes of shape {values.shape}'}): the file was edited or damaged"
        )


def input_differences(
    stored: Mapping[str, str], current: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """(input, stored SHA-256, current SHA-256) of every input of a unit that differs now; an
    input one of them lacks counts, as ``absent``."""
    names = list(stored) + [name for name in current if name not in stored]
    return [
        (name, stored.get(name, "absent"), current.get(name, "absent"))
        for name in names
        if stored.get(name) != current.get(name)
    ]


def load_per_image(
    path: str | Path, results: Mapping[str, Any] | None = None
) -> dict[str, UnitOutcomes]:
    """The per-image outcomes of the run in folder ``path``, by :func:`unit_key`, of exactly the
    units its results.json (or ``results``) lists.

    Raises FileNotFoundError when the folder has none, ValueError when they belong to another
    run than the results, miss one of its units (written before outcomes were kept) or give
    other numbers than the results (:func:`check_outcomes`).
    """
    folder = Path(path)
    results = load_results(folder) if results is None else results
    file = folder / PER_IMAGE_FILE
    if not file.is_file():
        raise MissingFileError(f"{path}: no {PER_IMAGE_FILE} there")
    run, units = _read_per_image(file)
    if run != run_key(results):
        raise InvalidArgumentError(f"{file} holds the outcomes of another run than {RESULTS_FILE}")
    missing = [key for key in finished_units(results) if key not in units]
    if missing:
        raise InvalidArgumentError(f"{file} has no per-image outcomes of {', '.join(missing)}")
    for key in finished_units(results):
        check_outcomes(results, key, units[key], str(folder / RESULTS_FILE))
    return {key: units[key] for key in finished_units(results)}


def _drop_unit(results: dict[str, Any], key: str) -> None:
    section, _, name = key.partition("/")
    if name:
        del results[section][name]
    else:
        results[section] = None
    results["inputs"].pop(key, None)


class ResultsFile:
    """results.json and per_image.npz of one run: resumed when the stored run is the same
    (:func:`run_differences`), refused when not; ``overwrite=True`` starts over (both files are
    replaced at the first save). A resumed unit without per-image outcomes or recorded inputs is
    dropped, to be evaluated again; one whose numbers contradict its outcomes
    (:func:`check_outcomes`), or whose inputs differ from ``current_inputs(unit_key)`` (the
    fingerprints of what this run would read), is refused. Without ``out_dir`` nothing is
    written and no per-image outcome kept."""

    def __init__(
        self,
        out_dir: str | Path | None,
        header: Mapping[str, Any],
        overwrite: bool = False,
        current_inputs: Callable[[str], Mapping[str, str]] | None = None,
    ):
        self.path = Path(out_dir) / RESULTS_FILE if out_dir is not None else None
        self.results = empty_results(header)
        self.per_image: dict[str, UnitOutcomes] = {}
        if self.path is None or not self.path.is_file() or overwrite:
            return
        try:
            stored = load_results(self.path)
        except ValueError as error:
            raise InvalidArgumentError(
                f"{error}; choose another --out, or pass --overwrite to start over"
            ) from error
        if stored["identity"] is None:
            raise InvalidArgumentError(
                f"{self.path} was written by an older timm-pushpull (results format version "
                f"{stored['version']}) that did not record what its numbers depend on, so this "
                "run cannot resume it; choose another --out, or pass --overwrite to start over"
            )
        differences = run_differences(stored, header)
        if differences:
            lines = "\n".join(
                f"  {key}: {_short(old)} (stored) vs {_short(new)} (this run)"
                for key, old, new in differences
            )
            raise InvalidArgumentError(
                f"{self.path} holds the results of another run; they differ in:\n{lines}\n"
                "Choose another --out, or pass --overwrite to start over (replacing those results)"
            )
        self.results = empty_results(header)
        self.results.update({key: value for key, value in stored.items() if key not in header})
        per_image = self.path.with_name(PER_IMAGE_FILE)
        if per_image.is_file():
            try:
                run, units = _read_per_image(per_image)
            except ValueError:  # damaged, or not evaluate's: no outcome of this run
                run, units = None, {}
            if run == run_key(self.results):
                self.per_image = units
        inputs = self.results["inputs"] = dict(self.results["inputs"])
        for key in finished_units(self.results):
            if key not in self.per_image or key not in inputs:
                _drop_unit(self.results, key)
        kept = finished_units(self.results)
        self.per_image = {key: self.per_image[key] for key in kept}
        self.results["inputs"] = {key: inputs[key] for key in kept}
        start_over = "choose another --out, or pass --overwrite to start over"
        for key in kept:
            try:
                check_outcomes(self.results, key, self.per_image[key], str(self.path))
            except ValueError as error:
                raise InvalidArgumentError(f"{error}; {start_over}") from None
            changed = [] if current_inputs is None else input_differences(
                inputs[key], current_inputs(key)
            )  # fmt: skip
            if changed:
                raise InvalidArgumentError(
                    f"{self.path}: {key} was evaluated on other data than this run reads: "
                    + "; ".join(
                        f"{name} {_digest(old)} (stored) vs {_digest(new)} (now)"
                        for name, old, new in changed
                    )
                    + f". Restore that data, {start_over} (replacing those results)"
                )

    def add(
        self,
        section: str,
        name: str | None,
        value: Any,
        outcomes: UnitOutcomes,
        inputs: Mapping[str, str],
    ) -> None:
        """A finished unit: its entry of results.json, its per-image outcomes and the
        fingerprints of the inputs it read."""
        if name is None:
            self.results[section] = value
        else:
            self.results[section][name] = value
        self.results["inputs"][unit_key(section, name)] = dict(inputs)
        if self.path is not None:
            self.per_image[unit_key(section, name)] = outcomes

    def save(self, summary: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> None:
        self.results["summary"] = dict(summary)
        self.results["baseline"] = None if baseline is None else dict(baseline)
        if self.path is not None:
            # outcomes first: results.json never lists a unit whose outcomes are not written
            save_per_image(
                self.per_image, run_key(self.results), self.path.with_name(PER_IMAGE_FILE)
            )
            save_results(self.results, self.path)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _digest(value: str) -> str:
    return value if value == "absent" else f"sha256 {value[:12]}"


# ----------------------------------------------------------------------------------------------
# summaries


def severities(results: Mapping) -> list[int]:
    """The severities the corruption errors of ``results`` are for, in their order."""
    return list((results.get("settings") or {}).get("severities") or _ALL_SEVERITIES)


# saturate scales the saturation of HSV colours: a 1-channel image has none, and comes back as it
# was (:mod:`.corruptions.digital`)
IDENTITY_ON_GREY = ("saturate",)


def _common_pairs(
    errors: Sequence[float],
    model_severities: Sequence[int],
    baseline_errors: Sequence[float] | float,
    baseline_severities: Sequence[int],
) -> tuple[list[int], list[float], list[float] | float] | None:
    """(severities, model errors, baseline errors) on the severities both have, or None.

    A baseline known only by its mean over all five severities pairs with a model that has all
    five (its mean is over them); per-severity errors pair severity by severity.
    """
    if np.ndim(baseline_errors) == 0:
        if not set(_ALL_SEVERITIES) <= set(model_severities):
            return None
        common = list(_ALL_SEVERITIES)
        return common, [errors[model_severities.index(s)] for s in common], float(baseline_errors)
    common = [s for s in model_severities if s in baseline_severities]
    if not common:
        return None
    model = [errors[model_severities.index(s)] for s in common]
    baseline = [baseline_errors[list(baseline_severities).index(s)] for s in common]
    return common, model, baseline


def mean_error_corruptions(results: Mapping) -> list[str]:
    """The corruptions of ``results`` that its mean corruption error averages: all of them, but on
    1-channel images not those that leave such an image as it is (:data:`IDENTITY_ON_GREY`), whose
    "error" is the clean error again."""
    channels = (results.get("settings") or {}).get("input_size", [3])[0]
    return [
        name for name in results["corruptions"] if channels != 1 or name not in IDENTITY_ON_GREY
    ]


def summarize(results: Mapping, baseline=None) -> dict[str, Any]:
    """The summary block of results.json from its raw per-unit results and a baseline.

    ``mean_corruption_error`` averages :func:`mean_error_corruptions`. CE and rCE are computed on
    the (corruption, severity) pairs both the run and the baseline have (``ce_severities``); an
    mCE is ``complete`` (comparable with published ones) when it covers every corruption the
    baseline averages, each over all five severities.
    """
    corruptions, perturbations = results["corruptions"], results["perturbations"]
    averaged = mean_error_corruptions(results)
    summary = {
        "mean_corruption_error": (
            float(np.mean([corruptions[name]["mean_error"] for name in averaged]))
            if averaged else None
        ),
        "ce": {}, "rce": {}, "ce_severities": {}, "mce": None, "mce_corruptions": [],
        "mce_complete": False, "relative_mce": None, "relative_mce_corruptions": [],
        "relative_mce_complete": False,
        "mean_flip_probability": (
            float(np.mean([p["flip_probability"] for p in perturbations.values()]))
            if perturbations else None
        ),
        "flip_rates": {}, "mfr": None,
    }  # fmt: skip
    if baseline is None:
        return summary
    model_severities = severities(results)
    paired: dict[str, tuple[list[int], list[float], list[float] | float]] = {}
    for name, entry in corruptions.items():
        if name in baseline.corruption_errors:
            pairs = _common_pairs(entry["errors"], model_severities,
                                  baseline.corruption_errors[name], baseline.severities)  # fmt: skip
            if pairs is not None:
                paired[name] = pairs
    wanted = list(baseline.mce_corruptions or baseline.corruption_errors)
    summary.update(
        metrics.summarize_corruptions(
            {name: model for name, (_, model, _) in paired.items()},
            results["clean_error"],
            {name: base for name, (_, _, base) in paired.items()},
            baseline.clean_error,
            wanted,
        )
    )
    summary["ce_severities"] = {name: paired[name][0] for name in summary["ce"]}
    # all five severities everywhere, else the means are not the published kind
    every_severity = all(
        summary["ce_severities"][name] == list(_ALL_SEVERITIES) for name in summary["ce"]
    )
    summary["mce_complete"] = summary["mce_complete"] and every_severity
    summary["relative_mce_complete"] = summary["relative_mce_complete"] and every_severity
    rates = metrics.flip_rates(
        {name: p["flip_probability"] for name, p in perturbations.items()},
        baseline.flip_probabilities,
    )
    summary["flip_rates"] = rates
    summary["mfr"] = metrics.mean_corruption_error(rates) if rates else None
    return summary
