"""What ``timm-pushpull evaluate`` runs and how: :class:`EvalSettings`, checked when made.

Three kinds of input meet in an evaluation, kept apart on purpose:

- the **selection** (suites, corruptions, perturbations, baseline): which units run and what the
  summary is relative to. Not recorded under ``settings``: a rerun with more of them adds units to
  the same results.json, and the baseline has its own block there.
- the **protocol** (severities, scale, seed, subset, normalisation, shift, noise levels, frames,
  precision, memory format, options of generated corruptions): what each number depends on.
  :meth:`EvalSettings.record` is the ``settings`` block of results.json (format and resume rules:
  :mod:`timm_pushpull.robustness.results`), and :meth:`EvalSettings.from_record` reads one back.
- **runtime options** (:class:`RunOptions`: device, batch size, DataLoader workers, progress bar;
  and the processes evaluating together): the numbers do not depend on them (random draws are
  seeded per block of images), except the device type, which the run's identity records.

What each suite runs is one entry of :data:`SUITES`; :mod:`.plan` completes the settings of a run
from the model and the data, once, before any work.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from .corruptions import ALL_CORRUPTIONS, OUTPUTS, SCALES, SPATTER_MODES
from .corruptions.frost import FROST_SOURCES
from .perturbations import PERTURBATIONS

if TYPE_CHECKING:
    import torch

    from .baselines import Baseline

__all__ = [
    "SUITES",
    "SHIFT_MODES",
    "SCALES",
    "PRECISIONS",
    "NOISE_SWEEPS",
    "EvalSettings",
    "RunOptions",
    "Suite",
]

SHIFT_MODES = ("circular", "crop")
# dtypes the model may run in (bf16 / fp16 under autocast); evaluate maps them to torch dtypes
PRECISIONS = ("fp32", "bf16", "fp16")
# sweep -> (parameter, default levels); variances on [0, 1] images, contrast factors
NOISE_SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "gaussian": ("variance", (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03)),
    "speckle": ("variance", (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03)),
    "contrast_poisson": ("contrast", (0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5)),
}
_SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Suite:
    """What one suite runs: the results.json section its units fill, the data they read, and
    their names.

    ``reads``: ``"clean"`` (the clean test set), or ``"c"`` / ``"p"`` (official -C / -P files
    when given, else the clean images they are generated from). ``names``: every unit of the
    suite on generated data (official files hold their own); ``selection``: the
    :class:`EvalSettings` field choosing among them (None: every unit runs).
    """

    section: str
    reads: str
    names: tuple[str | None, ...]
    selection: str | None = None


# suite -> what it runs, in the order runs take them; its units are evaluated by the evaluator
# of its section (:mod:`.evaluate`)
SUITES: dict[str, Suite] = {
    "c": Suite("corruptions", "c", ALL_CORRUPTIONS, "corruptions"),
    "p": Suite("perturbations", "p", PERTURBATIONS, "perturbations"),
    "shift": Suite("shift", "clean", (None,)),
    "noise": Suite("noise_sweeps", "clean", tuple(NOISE_SWEEPS)),
}


def _names(value: Sequence[str] | None, field: str, allowed: Sequence[str] | None = None):
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(name, str) for name in names):
        raise InvalidArgumentError(f"{field} must be a non-empty list of names, got {value!r}")
    unknown = [name for name in names if allowed is not None and name not in allowed]
    if unknown:
        raise InvalidArgumentError(f"unknown {field} {unknown}; allowed: {', '.join(allowed)}")
    return names


def _choice(value: Any, field: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidArgumentError(
            f"{field} must be one of {', '.join(map(str, allowed))}, got {value!r}"
        )


def _count(value: Any, field: str, minimum: int = 1) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < minimum
    ):
        raise InvalidArgumentError(f"{field} must be an int >= {minimum} (or None), got {value!r}")


def _floats(value: Sequence[float] | None, field: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{field} must be a list of numbers, got {value!r}") from None
    if not values:
        raise InvalidArgumentError(f"{field} must not be empty")
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgumentError(f"{field} must be finite numbers, got {list(values)}")
    return values


@dataclass(frozen=True)
class EvalSettings:
    """Settings of one robustness evaluation; None means "derived from the model and data" where
    said. Lists are stored as tuples; bad values raise ValueError naming the field and what it
    allows. :meth:`replace` makes a changed copy, checked again.

    Selection (not recorded under ``settings``):
        suites: any of :data:`SUITES`.
        corruptions / perturbations: names to run (None: all available).
        baseline: built-in name (``alexnet-cifar10c``, ``alexnet-imagenetc``), a results.json, an
            authors' results folder, a :class:`Baseline`, or None (no CE/mFR).

    Protocol (recorded, part of the run's identity):
        severities: corruption severities, distinct, in 1..5.
        scale: parameters of generated corruptions, ``"cifar"`` or ``"imagenet"`` (None: cifar
            for images up to 64 px).
        seed: seed of the subset and of every random draw.
        max_images: evaluate a fixed random subset of this many images (None: all).
        mean / std: input normalisation (None: the model's timm data config).
        shift_mode / max_shift / shift_trials: shift suite: offsets uniform in
            [-max_shift, max_shift] (None: 1/7 of the image size: 4 px for CIFAR, 32 for 224 px).
        noise_levels: levels per noise sweep overriding :data:`NOISE_SWEEPS`'s defaults.
        num_frames: frames of generated perturbation sequences (None: the generator's).
        precision / channels_last: dtype of the forward pass (fp32, or bf16 / fp16 under
            autocast) and channels-last memory.
        frost / spatter / corruption_output: options of generated corruptions (``corrupt``):
            frost textures (the reference photos or procedural ones), the spatter variant, and
            whether images are stored like the released sets (8 bits, JPEG q85 at ImageNet
            scale) or kept as floats.
    """

    suites: tuple[str, ...] = ("c",)
    corruptions: tuple[str, ...] | None = None
    perturbations: tuple[str, ...] | None = None
    baseline: str | Path | Baseline | Mapping | None = None
    severities: tuple[int, ...] = _SEVERITIES
    scale: str | None = None
    seed: int = 0
    max_images: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    shift_mode: str = "circular"
    max_shift: int | None = None
    shift_trials: int = 1
    noise_levels: Mapping[str, tuple[float, ...]] | None = None
    num_frames: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    frost: str = "photos"
    spatter: str = "wrap"
    corruption_output: str = "released"

    def __post_init__(self):
        normalised = {
            "suites": _names(self.suites, "suites", SUITES),
            "corruptions": _names(self.corruptions, "corruptions"),
            "perturbations": _names(self.perturbations, "perturbations"),
            "severities": tuple(self.severities),
            "mean": _floats(self.mean, "mean"),
            "std": _floats(self.std, "std"),
        }
        severities = normalised["severities"]
        valid = all(not isinstance(s, bool) and s in _SEVERITIES for s in severities)
        if not severities or len(set(severities)) != len(severities) or not valid:
            raise InvalidArgumentError(
                f"severities must be distinct ints in 1..5, got {self.severities!r}"
            )
        if self.scale is not None:
            _choice(self.scale, "scale", SCALES)
        # the subset generator (torch) and the per-block draws (numpy) both take 0 <= seed < 2**63
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < 2**63
        ):
            raise InvalidArgumentError(f"seed must be an int in [0, 2**63), got {self.seed!r}")
        _count(self.max_images, "max_images")
        _count(self.max_shift, "max_shift", minimum=0)
        _count(self.num_frames, "num_frames", minimum=2)
        if self.shift_trials is None:
            raise InvalidArgumentError("shift_trials must be an int >= 1, got None")
        _count(self.shift_trials, "shift_trials")
        if (normalised["mean"] is None) != (normalised["std"] is None) or (
            normalised["mean"] is not None and len(normalised["mean"]) != len(normalised["std"])
        ):
            raise InvalidArgumentError(
                f"mean and std must both be given, with as many values, got {self.mean!r} and "
                f"{self.std!r}"
            )
        if normalised["std"] is not None and min(normalised["std"]) <= 0:
            raise InvalidArgumentError(
                f"std must be positive (images are divided by it), got {list(normalised['std'])}"
            )
        if self.noise_levels is not None:
            _names(tuple(self.noise_levels), "noise sweeps", tuple(NOISE_SWEEPS))
            normalised["noise_levels"] = {
                name: _floats(levels, f"noise_levels[{name!r}]")
                for name, levels in self.noise_levels.items()
            }
            for name, levels in normalised["noise_levels"].items():
                if min(levels) < 0:  # variances and contrast factors
                    raise InvalidArgumentError(
                        f"noise_levels[{name!r}] must be >= 0, got {list(levels)}"
                    )
        _choice(self.shift_mode, "shift_mode", SHIFT_MODES)
        _choice(self.precision, "precision", PRECISIONS)
        if not isinstance(self.channels_last, bool):
            raise InvalidArgumentError(
                f"channels_last must be True or False, got {self.channels_last!r}"
            )
        _choice(self.frost, "frost", FROST_SOURCES)
        _choice(self.spatter, "spatter", SPATTER_MODES)
        _choice(self.corruption_output, "corruption_output", OUTPUTS)
        for name, value in normalised.items():  # frozen: set once, here
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> EvalSettings:
        """A copy with ``changes`` (field names), checked like a new one."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"unknown evaluation settings {unknown}; settings are: "
                + ", ".join(field.name for field in dataclasses.fields(self))
            )
        return dataclasses.replace(self, **changes)

    def resolved(self, input_size: Sequence[int]) -> EvalSettings:
        """These settings with the values derived from images of ``input_size`` ``(C, H, W)``
        filled in: scale, largest shift, the levels of every noise sweep (``mean`` / ``std``: the
        caller's, :func:`~.plan.plan_evaluation` gives the model's)."""
        largest = max(input_size[1:])
        levels = self.noise_levels or {}
        sweeps = {name: levels.get(name, default) for name, (_, default) in NOISE_SWEEPS.items()}
        return self.replace(
            scale=self.scale or ("cifar" if largest <= 64 else "imagenet"),
            max_shift=max(1, round(largest / 7)) if self.max_shift is None else self.max_shift,
            noise_levels=sweeps,
        )

    def record(
        self,
        datasets: Mapping[str, str | None],
        n_images: int | None,
        input_size: Sequence[int],
        frost: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The ``settings`` block of results.json (format version 2) of resolved settings, with
        what the data adds: ``datasets`` (a description per role), ``n_images``, the
        ``input_size`` and the ``frost`` source of generated frost (None: none generated)."""
        return {
            "datasets": dict(datasets), "scale": self.scale, "seed": self.seed,
            "severities": list(self.severities), "n_images": n_images,
            "input_size": list(input_size), "mean": list(self.mean), "std": list(self.std),
            "shift": {"mode": self.shift_mode, "max_shift": self.max_shift,
                      "trials": self.shift_trials},
            "noise_levels": {name: list(levels) for name, levels in self.noise_levels.items()},
            "num_frames": self.num_frames, "precision": self.precision,
            "channels_last": self.channels_last, "frost": None if frost is None else dict(frost),
            "spatter": self.spatter, "corruption_output": self.corruption_output,
        }  # fmt: skip

    @classmethod
    def from_record(cls, settings: Mapping[str, Any], **selection: Any) -> EvalSettings:
        """The protocol a results.json's ``settings`` block records (versions 1 and 2; fields an
        older file lacks take their defaults), with ``selection`` (suites, corruptions, ...).
        Evaluating the same model and data with them again resumes that run."""
        shift = settings.get("shift") or {}
        frost = settings.get("frost")
        recorded = {
            "severities": settings.get("severities"), "scale": settings.get("scale"),
            "seed": settings.get("seed"), "max_images": settings.get("n_images"),
            "mean": settings.get("mean"), "std": settings.get("std"),
            "shift_mode": shift.get("mode"), "max_shift": shift.get("max_shift"),
            "shift_trials": shift.get("trials"), "noise_levels": settings.get("noise_levels"),
            "num_frames": settings.get("num_frames"), "precision": settings.get("precision"),
            "channels_last": settings.get("channels_last"),
            "frost": frost.get("kind") if isinstance(frost, Mapping) else None,
            "spatter": settings.get("spatter"),
            "corruption_output": settings.get("corruption_output"),
        }  # fmt: skip
        defaults = {field.name for field in dataclasses.fields(cls) if field.default is not None}
        return cls().replace(
            **{k: v for k, v in recorded.items() if v is not None or k not in defaults},
            **selection,
        )


@dataclass(frozen=True)
class RunOptions:
    """How a run computes, not what: the numbers do not depend on these, except the device type
    (which the run's identity records).

    device: where the model runs (None: cuda when available, else cpu; with several processes,
        each its own, which ``device`` may only name the type of).
    batch_size: images per forward pass.
    workers: DataLoader workers reading images ahead of the model.
    progress: progress bars.
    """

    device: str | torch.device | None = None
    batch_size: int = 128
    workers: int = 0
    progress: bool = True

    def __post_init__(self):
        for field, value, minimum in (("batch_size", self.batch_size, 1),
                                      ("workers", self.workers, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidArgumentError(f"{field} must be an int >= {minimum}, got {value!r}")
