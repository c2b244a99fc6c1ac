"""One evaluation, completed before any work: its data (:class:`EvalData`) and its finished
settings (:class:`EvalPlan`, made by :func:`plan_evaluation`).

A run is asked for with an :class:`~.settings.EvalSettings`, in which "None" often means "derived
from the model and data". :func:`plan_evaluation` derives all of it in one place, checking the
request against the data as it goes: the baseline, the units each suite runs, the input size, the
normalisation (the model's timm data config unless given), the scale, largest shift and noise
levels (:meth:`~.settings.EvalSettings.resolved`), the images evaluated, the frost textures of
generated frost and the description of the data. What follows (:mod:`.evaluate`) only reads the
plan; :meth:`EvalPlan.record` is the ``settings`` block of results.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InvalidArgumentError
from .baselines import Baseline, get_baseline
from .corruptions.frost import FrostSource, resolve_frost_source
from .datasets import (
    ArrayImageDataset,
    CifarCFolder,
    CifarPFolder,
    ImageNetCFolder,
    ImageNetPFolder,
    to_unit_images,
)
from .settings import SUITES, EvalSettings, Suite

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["EvalData", "EvalPlan", "plan_evaluation", "subset_indices"]


@dataclass(frozen=True)
class EvalData:
    """What a run evaluates on.

    clean: the clean test set, a Dataset of ``(image, label)`` (:meth:`from_images` takes arrays).
        Needed for the clean error, the shift and noise suites, and to generate corruptions and
        perturbation sequences where no official files are given.
    corrupted / sequences: official -C / -P files (:mod:`timm_pushpull.robustness.datasets`).
    names: a description per role (``clean``, ``c``, ``p``), recorded in results.json.
    """

    clean: Dataset | None = None
    corrupted: CifarCFolder | ImageNetCFolder | None = None
    sequences: CifarPFolder | ImageNetPFolder | None = None
    names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_images(
        cls,
        images: torch.Tensor | np.ndarray | Dataset | None,
        labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
        **official_and_names,
    ) -> EvalData:
        """The data with ``images`` as the clean set: an array/tensor of uint8 or [0, 1] float
        images (any layout :func:`~.datasets.to_unit_images` takes) with ``labels``, or a
        Dataset; ``official_and_names``: the other fields."""
        if images is not None and not isinstance(images, Dataset):
            if labels is None:
                raise InvalidArgumentError("labels are needed with an array of images")
            images = ArrayImageDataset(images, labels)
        return cls(images, **official_and_names)

    def official(self, reads: str) -> CifarCFolder | ImageNetCFolder | CifarPFolder | None:
        """The official files a suite that ``reads`` them (:class:`~.settings.Suite`) uses."""
        return {"c": self.corrupted, "p": self.sequences}.get(reads)

    def source(self, reads: str) -> Dataset | CifarCFolder | ImageNetCFolder | CifarPFolder | None:
        """What a suite that ``reads`` (:class:`~.settings.Suite`) takes its images from: the
        official files where given, else the clean set (None: neither)."""
        official = self.official(reads)
        return official if official is not None else self.clean

    def descriptions(self) -> dict[str, str | None]:
        """The description of the data per role, as results.json records it."""
        return {
            "clean": self.names.get("clean", "in-memory" if self.clean is not None else None),
            "c": self.names.get("c", "official" if self.corrupted is not None else "generated"),
            "p": self.names.get("p", "official" if self.sequences is not None else "generated"),
        }


@dataclass(frozen=True, eq=False)
class EvalPlan:
    """The finished settings of one run (:func:`plan_evaluation`): nothing left to derive."""

    settings: EvalSettings  # resolved: no derived value left None
    units: tuple[tuple[str, str | None], ...]  # (results.json section, unit name), in run order
    baseline: Baseline | None
    frost: FrostSource | None  # the textures of generated frost (None: no frost generated)
    # the first image of the first unit's data, [1, ..., C, H, W]: the model must take it
    sample: torch.Tensor
    clean_indices: np.ndarray | None  # the clean images evaluated (None: no clean set)
    n_images: int  # images evaluated per unit
    datasets: Mapping[str, str | None]  # a description of the data per role

    @property
    def input_size(self) -> tuple[int, ...]:
        """``(C, H, W)`` of the images evaluated."""
        return tuple(self.sample.shape[-3:])

    def names(self, section: str) -> list[str | None]:
        """The names of the units of ``section`` that run."""
        return [name for unit_section, name in self.units if unit_section == section]

    def record(self) -> dict:
        """The ``settings`` block of results.json (:meth:`~.settings.EvalSettings.record`)."""
        frost = None if self.frost is None else self.frost.to_json()
        return self.settings.record(self.datasets, self.n_images, self.input_size, frost)


def subset_indices(length: int, max_images: int | None, seed: int) -> np.ndarray:
    """Indices of the images evaluated: all, or a fixed random subset (sorted) of ``max_images``."""
    if max_images is None or max_images >= length:
        return np.arange(length)
    generator = torch.Generator().manual_seed(seed)
    return np.sort(torch.randperm(length, generator=generator)[:max_images].numpy())


def _first_image(dataset: Dataset) -> torch.Tensor:
    """The first item's image (or sequence) in [0, 1], with a batch axis: ``[1, ..., C, H, W]``."""
    if isinstance(dataset, ArrayImageDataset):
        return dataset.batch(np.array([0]))[0]
    return to_unit_images(torch.as_tensor(dataset[0][0]).unsqueeze(0))


def _model_normalization(model: nn.Module) -> tuple[list[float], list[float]]:
    """The model's input mean and std from its timm data config."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    return [float(m) for m in config["mean"]], [float(s) for s in config["std"]]


def _unit_names(suite: Suite, settings: EvalSettings, data: EvalData) -> list[str | None]:
    """The names of the units ``suite`` runs: those its selection asks for (all by default),
    which the official files must hold where given."""
    if suite.selection is None:
        return list(suite.names)
    official = data.official(suite.reads)
    allowed = suite.names if official is None else getattr(official, suite.selection)
    requested = getattr(settings, suite.selection)
    names = list(allowed if requested is None else requested)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"unknown {suite.selection} {unknown}; allowed: {', '.join(allowed)}"
        )
    return names


def _first_dataset(data: EvalData, first_unit: tuple[str, str | None], severity: int) -> Dataset:
    """The data set of the first unit: its images give the input size, and without a clean set
    its length gives the number of images evaluated."""
    if data.clean is not None:
        return data.clean
    section, name = first_unit
    if section == "corruptions":
        return data.corrupted.dataset(name, severity)
    return data.sequences.dataset(name)


def plan_evaluation(model: nn.Module, data: EvalData, settings: EvalSettings) -> EvalPlan:
    """The finished settings of evaluating ``model`` on ``data`` as ``settings`` ask (see the
    module docstring); bad settings, and settings the data cannot serve, raise a one-line
    :class:`~timm_pushpull.errors.InvalidArgumentError` here, before any work."""
    baseline = get_baseline(settings.baseline)
    for suite in settings.suites:
        if data.source(SUITES[suite].reads) is None:
            raise InvalidArgumentError(
                f"suite {suite!r} needs clean images (or official files for c / p)"
            )
    units = [("clean_error", None)] if data.clean is not None else []
    for name, suite in SUITES.items():
        if name in settings.suites:
            units += [(suite.section, unit) for unit in _unit_names(suite, settings, data)]
    first = _first_dataset(data, units[0], settings.severities[0])
    sample = _first_image(first)
    input_size = tuple(sample.shape[-3:])
    if settings.mean is None:
        mean, std = _model_normalization(model)
        settings = settings.replace(mean=mean, std=std)
    settings = settings.resolved(input_size)
    if len(settings.mean) not in (1, input_size[0]):
        raise InvalidArgumentError(
            f"images have {input_size[0]} channels but the normalisation mean/std "
            f"{len(settings.mean)}: pass mean and std, or use the channels the model was trained on"
        )
    generates_frost = data.corrupted is None and ("corruptions", "frost") in units
    return EvalPlan(
        settings=settings,
        units=tuple(units),
        baseline=baseline,
        frost=resolve_frost_source(settings.frost) if generates_frost else None,
        sample=sample,
        clean_indices=(
            None
            if data.clean is None
            else subset_indices(len(data.clean), settings.max_images, settings.seed)
        ),
        n_images=min(len(first), settings.max_images or len(first)),
        datasets=data.descriptions(),
    )
