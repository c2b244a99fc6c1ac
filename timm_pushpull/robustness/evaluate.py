"""The robustness benchmark of any timm model, resumable: :func:`evaluate_model` runs what an
:class:`EvalSettings` asks for (its command line, ``timm-pushpull evaluate``: :mod:`.cli.evaluate`).
It completes the settings once, before any work (:func:`~.plan.plan_evaluation`), and runs the
finished plan (:func:`run_evaluation`): each unit by the evaluator of its results.json section
(:data:`_UNIT_EVALUATORS`; what a suite runs: :data:`~.settings.SUITES`).

Suites:
- ``c``: error per corruption and severity (official CIFAR-10/100-C or ImageNet-C files, or
  corruptions generated on the fly from a clean test set with :func:`corrupt`), CE / rCE / mCE
  against a baseline (Hendrycks & Dietterich, ICLR 2019).
- ``p``: flip probability per perturbation sequence (official CIFAR-10-P / ImageNet-P files or
  sequences generated with :func:`perturbation_sequence`), mFR against a baseline that has flip
  probabilities.
- ``shift``: consistency of the top-1 class under two random shifts of each image (Zhang, ICML 2019),
  circular (``torch.roll``) or crop-based (zero padding, then a crop at the shifted position).
- ``noise``: error curves under Gaussian and speckle noise of variance 0..0.03 on [0, 1] images and
  under Poisson noise after a contrast change ``I_C = (I - 0.5) * C + 0.5``, C in 0.4..2.5
  (Strisciuglio, Lopez-Antequera & Petkov, "A push-pull layer improves robustness of
  convolutional neural networks", 2019).

Images are corrupted in [0, 1] and normalised with the model's mean/std afterwards. Random draws
(generated corruptions, perturbation sequences, shifts, noise sweeps) are seeded per block of
:data:`NOISE_BLOCK` consecutive images by the position of the block's first image
(:func:`noise_seed`), so they do not depend on the batch size, and a process that evaluates a
shard of whole blocks draws what a single process draws for them.

Results go to ``OUT/results.json`` (format: :mod:`timm_pushpull.robustness.results`) after every
finished corruption / perturbation / sweep, written atomically, so an interrupted run loses at
most the unit in progress and a rerun of the same run skips what is done. The run holds ``OUT``
from start to end (:func:`hold_output`): a second run into it is refused at once. The file
records what the numbers depend on (architecture, model args, a hash of the weights evaluated,
data set and subset, random generator, device, versions, settings, and per unit the fingerprint
of every input it read: :mod:`.fingerprint`); a rerun that differs in any of them, or finds a
kept unit contradicting its per-image outcomes, stops with an error naming each difference
instead of mixing results, unless ``overwrite`` starts over. Before the first unit, one image
goes through the model: a model that cannot take the images, or labels outside its classes,
are refused before anything is computed.
Beside it, ``OUT/per_image.npz`` keeps what each image did in every finished unit (wrong or right
per severity / level, shift agreement per trial, -P predictions per frame), in step with
results.json, for paired comparisons of models on the same images (``load_per_image``).

Under ``torchrun`` / ``accelerate launch`` the processes share every unit (:mod:`.parallel`):
each evaluates its own whole blocks of images, reading only those, and the first process writes
the unit once all of them finished it. The numbers are those of one process, so a run may resume
with another number of processes; ``world_size`` in the file only records how many wrote it last.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from .. import native
from ..errors import FolderInUseError, InvalidArgumentError
from ..locking import exclusive_folder
from ..version import __version__
from . import metrics
from .corruptions import corrupt
from .corruptions.frost import FrostSource
from .corruptions.noise import add_gaussian_noise, add_speckle_noise, contrast_poisson_noise
from .datasets import (
    ArrayImageDataset,
    CifarCFolder,
    CifarPFolder,
    ImageNetCFolder,
    ImageNetPFolder,
    read_npy,
    to_unit_images,
)
from .fingerprint import dataset_sha256, files_sha256, folder_inputs
from .parallel import Processes
from .perturbations import NOISE_PERTURBATIONS, perturbation_sequence
from .plan import EvalData, EvalPlan, plan_evaluation, subset_indices
from .results import (
    SCHEMA,
    SCHEMA_VERSION,
    ResultsFile,
    RunIdentity,
    UnitOutcomes,
    array_sha256,
    state_dict_sha256,
    summarize,
    unit_key,
)
from .settings import NOISE_SWEEPS, SHIFT_MODES, SUITES, EvalSettings, RunOptions

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

__all__ = [
    "SUITES",
    "NOISE_SWEEPS",
    "EvalData",
    "EvalPlan",
    "EvalSettings",
    "RunOptions",
    "add_gaussian_noise",
    "add_speckle_noise",
    "contrast_poisson_noise",
    "shift_images",
    "evaluate_model",
    "hold_output",
    "noise_seed",
    "plan_evaluation",
    "run_evaluation",
]

# EvalSettings.precision -> the dtype the model runs in (autocast for the half ones)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Random draws are made per block of this many consecutive images (sequences for the p suite),
# seeded by the block's position: small enough that an extra partial block costs little memory,
# large enough that the corruptions stay batched (what smaller batches cost: BENCHMARKS.md,
# "Numbers once quoted in code comments").
NOISE_BLOCK = 32
SEQUENCE_BLOCK = 4


def shift_images(
    images: torch.Tensor, offsets: torch.Tensor, mode: str = "circular"
) -> torch.Tensor:
    """Shift each image of ``images [B, C, H, W]`` by its own ``offsets[b] = (dy, dx)`` pixels.

    ``circular`` wraps around (``torch.roll`` per image); ``crop`` moves the content over a zero
    background, i.e. crops the zero-padded image at the shifted position, keeping the size.
    """
    if mode not in SHIFT_MODES:
        raise InvalidArgumentError(f"shift mode must be one of {SHIFT_MODES}, got {mode!r}")
    batch, _, height, width = images.shape
    offsets = offsets.to(images.device)
    rows = torch.arange(height, device=images.device)[None] - offsets[:, :1]  # [B, H]
    cols = torch.arange(width, device=images.device)[None] - offsets[:, 1:]  # [B, W]
    if mode == "circular":
        rows, cols = rows % height, cols % width
        valid = None
    else:
        valid = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
            :, None
        ]
        rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    index = torch.arange(batch, device=images.device)[:, None, None]
    shifted = images.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    if valid is not None:
        shifted = shifted * valid[..., None]
    return shifted.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------
# evaluation


class _Classifier:
    """A model behind the [0, 1] -> normalised input convention; returns top-1 classes on its
    device. ``precision`` other than fp32 runs the model under ``torch.autocast``; channels-last
    memory suits convolutions with tensor cores (and oneDNN on the CPU)."""

    def __init__(
        self,
        model: nn.Module,
        mean,
        std,
        device: torch.device,
        batch_size: int,
        precision: str = "fp32",
        channels_last: bool = False,
    ):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format).eval()
        self.device = device
        self.batch_size = batch_size
        self.dtype = _DTYPES[precision]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's output for one batch of at most ``batch_size`` images in [0, 1]."""
        images = (images.to(self.device, non_blocking=True) - self.mean) / self.std
        images = images.contiguous(memory_format=self.memory_format)
        autocast = self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            return self.model(images)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.logits(chunk).argmax(dim=1) for chunk in images.split(self.batch_size)]
        )


class _BatchReader(Dataset):
    """Batches of an :class:`ArrayImageDataset` as items (item ``k``: the images ``batches[k]``
    as stored, and their labels), so DataLoader workers read whole batches ahead of the model."""

    def __init__(self, dataset: ArrayImageDataset, batches: Sequence[np.ndarray]):
        self.dataset = dataset
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.read(self.batches[number])


def _class_count(model: nn.Module, classify: _Classifier, image: torch.Tensor) -> int:
    """How many classes the model tells apart: the width of its logits for one image of the data
    (``[1, C, H, W]``), run before any unit so that a model that does not fit the data fails
    with one clear message."""
    if getattr(model, "num_classes", None) == 0:
        raise InvalidArgumentError(
            "the model has no classifier (num_classes 0): its outputs are features, and the "
            "arg-max of features is no class; create it with its number of classes"
        )
    try:
        logits = classify.logits(image)
    except RuntimeError as error:
        raise InvalidArgumentError(
            f"the model cannot classify the data's images of size {list(image.shape[1:])}: "
            f"{str(error).splitlines()[0]}"
        ) from error
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise InvalidArgumentError(
            f"the model must return logits [batch, classes], got shape {list(logits.shape)}"
        )
    return int(logits.shape[1])


def _check_labels(labels: np.ndarray | torch.Tensor | None, num_classes: int, what: str) -> None:
    """Labels must be classes of the model: one outside ``[0, num_classes)`` would only ever
    count as an error."""
    if labels is None:
        return
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    outside = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if outside.size:
        shown = ", ".join(map(str, outside[:5])) + (", ..." if outside.size > 5 else "")
        raise InvalidArgumentError(
            f"{what} has labels outside [0, {num_classes}), the classes of the model: {shown}; "
            "evaluate a model of that data's classes (--num-classes, or other weights)"
        )


def noise_seed(seed: int, first_image: int, *stream: int) -> int:
    """Seed of the random draws for the block of images starting at position ``first_image`` of
    the evaluated images (``stream`` tells draws of different purposes apart). A hash of all
    of them, so that neighbouring seeds and blocks do not share draws."""
    entropy = np.random.SeedSequence([seed, first_image, *stream]).generate_state(2, np.uint32)
    return int(entropy[0]) << 31 | int(entropy[1]) >> 1  # < 2**63: any torch generator takes it


def _per_block(
    images: torch.Tensor, start: int, block: int, seed: int, draw: Callable, *stream: int
) -> torch.Tensor:
    """``draw(block_images, seed=noise_seed(seed, first_image, *stream))`` over the blocks of a
    batch whose first image is image number ``start`` (a multiple of ``block``), concatenated."""
    return torch.cat([
        draw(chunk, seed=noise_seed(seed, start + number * block, *stream))
        for number, chunk in enumerate(images.split(block))
    ])  # fmt: skip


def _random_offsets(images: torch.Tensor, seed: int, max_shift: int) -> torch.Tensor:
    """Two (dy, dx) offsets per image, uniform in [-max_shift, max_shift]: ``[B, 2, 2]``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-max_shift, max_shift + 1, (len(images), 2, 2), generator=generator)


def _random_generator() -> str:
    """Which generator makes the large CPU draws of the corruptions (they differ, see corruptions)."""
    return "c-kernel" if native.load("random") is not None else "torch"


def _dataset_labels(dataset: Dataset) -> np.ndarray | None:
    """All labels of a test set when it holds them without reading images, else None."""
    if isinstance(dataset, ArrayImageDataset):
        return dataset.labels.numpy()
    targets = getattr(dataset, "targets", None)
    return None if targets is None else np.asarray(targets)


def run_identity(
    model: nn.Module,
    model_name: str | None,
    model_args: Mapping | None,
    clean: Dataset | None,
    clean_indices: np.ndarray | None,
    corrupted: CifarCFolder | ImageNetCFolder | None,
    device: torch.device,
) -> RunIdentity:
    """What the numbers of evaluating ``model`` on this data depend on, besides the settings."""
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    labels = _dataset_labels(clean) if clean is not None else None
    c_labels = None
    if isinstance(corrupted, CifarCFolder):
        c_labels = array_sha256(read_npy(corrupted.root / "labels.npy"))
    return RunIdentity(
        architecture=str(pretrained_cfg.get("architecture") or model_name or type(model).__name__),
        model_args=dict(model_args or {}),
        weights_sha256=state_dict_sha256(model),
        labels_sha256=None if labels is None else array_sha256(labels),
        subset_sha256=None if clean_indices is None else array_sha256(clean_indices),
        c_labels_sha256=c_labels,
        random_generator=_random_generator(),
        device=device.type,
        timm_pushpull_version=__version__,
        torch_version=torch.__version__,
    )


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor | np.ndarray | Dataset | None = None,
    labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    settings: EvalSettings | None = None,
    *,
    corrupted: CifarCFolder | ImageNetCFolder | None = None,
    sequences: CifarPFolder | ImageNetPFolder | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    model_name: str | None = None,
    model_args: Mapping[str, object] | None = None,
    checkpoint: str | None = None,
    dataset_names: Mapping[str, str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 128,
    workers: int = 0,
    accelerator: Accelerator | PartialState | None = None,
    progress: bool = True,
    out_dir_held: bool = False,
    **overrides,
) -> dict:
    """Run the robustness suites on ``model`` and return the results dict (format:
    :mod:`timm_pushpull.robustness.results`): the data and settings completed once
    (:func:`~.plan.plan_evaluation`), then :func:`run_evaluation`.

    Args:
        model: any classifier taking normalised ``[B, C, H, W]`` images (timm or plain torch).
        images / labels: the clean test set (:meth:`EvalData.from_images`): an array/tensor of
            uint8 or [0, 1] float images with labels, or a Dataset of ``(image, label)``.
        settings: what runs and how (:class:`EvalSettings`; default: its defaults), recorded in
            results.json. ``overrides`` are fields of it (e.g. ``suites=["c", "noise"]``)
            replacing the values of ``settings``.
        corrupted / sequences / dataset_names: official -C / -P files and a description of the
            data per role (the other fields of :class:`EvalData`).
        device / batch_size / workers / progress: :class:`RunOptions`.
        out_dir / overwrite / model_name / model_args / checkpoint / accelerator / out_dir_held:
            as :func:`run_evaluation`.
    """
    settings = (settings or EvalSettings()).replace(**overrides)
    options = RunOptions(device, batch_size, workers, progress)
    data = EvalData.from_images(images, labels, corrupted=corrupted, sequences=sequences,
                                names=dict(dataset_names or {}))  # fmt: skip
    return run_evaluation(
        model, data, plan_evaluation(model, data, settings), options, out_dir=out_dir,
        overwrite=overwrite, model_name=model_name, model_args=model_args, checkpoint=checkpoint,
        accelerator=accelerator, out_dir_held=out_dir_held,
    )  # fmt: skip


def run_evaluation(
    model: nn.Module,
    data: EvalData,
    plan: EvalPlan,
    options: RunOptions | None = None,
    *,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    model_name: str | None = None,
    model_args: Mapping[str, object] | None = None,
    checkpoint: str | None = None,
    accelerator: Accelerator | PartialState | None = None,
    out_dir_held: bool = False,
) -> dict:
    """Evaluate ``model`` on ``data`` as the finished ``plan`` (:func:`~.plan.plan_evaluation` of
    the same model and data) says, and return the results dict.

    Args:
        options: runtime options the numbers do not depend on (default: :class:`RunOptions`'s).
        out_dir: where results.json goes; None keeps everything in memory (no resume). The
            folder is held for the whole run (:func:`hold_output`; ``out_dir_held``: the caller
            holds it already).
        overwrite: start over when ``out_dir`` holds results of another run (they are replaced
            at the first save); without it such a run is refused.
        model_name / model_args / checkpoint: how the model was made (``model_args``: keyword
            arguments of ``timm.create_model`` such as ``pretrained``, ``num_classes``). The
            model args are part of the run's identity, and so is the architecture (the model's
            ``pretrained_cfg``, else ``model_name``); the checkpoint path is only a label (the
            identity has a hash of the weights themselves).
        accelerator: an ``accelerate`` ``Accelerator`` or ``PartialState`` of the processes
            evaluating together (``torchrun`` / ``accelerate launch``): each evaluates a shard of
            whole blocks of images on its device, and the first writes the file (its
            ``world_size`` records how many processes did). None: this process alone.
    """
    settings, options = plan.settings, options or RunOptions()
    processes = Processes(accelerator)
    device = _resolve_device(options.device, accelerator)
    classify = _Classifier(model, settings.mean, settings.std, device, options.batch_size,
                           settings.precision, settings.channels_last)  # fmt: skip
    identity = run_identity(
        model, model_name, model_args, data.clean, plan.clean_indices, data.corrupted, device
    )
    header = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "timm_pushpull_version": __version__,
        "model": model_name or type(model).__name__, "checkpoint": checkpoint,
        "n_images": plan.n_images, "seed": settings.seed, "identity": identity.to_dict(),
        "settings": json.loads(json.dumps(plan.record())), "world_size": processes.world_size,
    }  # fmt: skip
    run = _Evaluation(
        settings=settings, classify=classify, processes=processes, clean=data.clean,
        clean_indices=plan.clean_indices, corrupted=data.corrupted, sequences=data.sequences,
        frost=plan.frost, device=device, batch_size=options.batch_size, workers=options.workers,
        progress=options.progress,
    )  # fmt: skip
    baseline = plan.baseline
    stored_baseline = baseline.to_dict() if baseline is not None else None
    from tqdm.auto import tqdm

    with contextlib.nullcontext() if out_dir_held else hold_output(out_dir, accelerator):
        store = _open_results(processes, out_dir, header, overwrite, run.inputs)
        results = store.results
        todo = [
            (section, name) for section, name in plan.units
            if (results[section] is None if name is None else name not in results[section])
        ]  # fmt: skip
        if todo:  # the model must fit the data before anything is evaluated
            _check_model_fits(run, model, data, plan)
        disable = not (options.progress and processes.is_main)
        with tqdm(todo, disable=disable, desc=str(results["model"]), file=sys.stderr) as bar:
            for section, name in bar:
                bar.set_postfix_str(f"{section} {name or ''}".strip())
                # fingerprints of the data just before it is read; only the first process
                # records them
                inputs = run.inputs(unit_key(section, name)) if processes.is_main else {}
                value, outcomes = _UNIT_EVALUATORS[section](run, name)
                store.add(section, name, value, outcomes, inputs)
                # a unit is written whole, after all processes finished it (by the first only)
                store.save(summarize(results, baseline), stored_baseline)
        store.save(summarize(results, baseline), stored_baseline)
    return results


def _check_model_fits(run: _Evaluation, model: nn.Module, data: EvalData, plan: EvalPlan) -> None:
    """One image of the data through the model, and the data's labels against its classes
    (:attr:`_Evaluation.num_classes` is set here), before any unit is evaluated."""
    sample = plan.sample.reshape(-1, *plan.input_size)[:1]
    run.num_classes = _class_count(model, run.classify, sample)
    if data.clean is not None:
        labels = _dataset_labels(data.clean)
        _check_labels(None if labels is None else labels[plan.clean_indices], run.num_classes,
                      f"the clean test set ({plan.datasets['clean']})")  # fmt: skip
    if isinstance(data.corrupted, CifarCFolder) and plan.names("corruptions"):
        _check_labels(read_npy(data.corrupted.root / "labels.npy"), run.num_classes,
                      str(data.corrupted.root / "labels.npy"))  # fmt: skip


def _resolve_device(
    device: str | torch.device | None, accelerator: Accelerator | PartialState | None
) -> torch.device:
    """The device of this process: ``device``, else the accelerator's, else cuda when available;
    with several processes, the accelerator's (each its own GPU), which ``device`` may only name
    the type of."""
    if accelerator is None or (device is not None and accelerator.num_processes == 1):
        return _usable_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device is not None and _usable_device(device).type != accelerator.device.type:
        raise InvalidArgumentError(
            f"device {device!r} differs from the {accelerator.device.type} device of the "
            f"{accelerator.num_processes} processes; launch them for {torch.device(device).type}"
            " (e.g. a --cpu launch for cpu) or leave --device out"
        )
    return accelerator.device


def _usable_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this machine has, or a clear error naming it."""
    try:
        device = torch.device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:  # "Torch not compiled with CUDA" asserts
        raise InvalidArgumentError(
            f"device {str(device)!r} is not usable here (cpu, cuda, cuda:N, mps, ...): "
            f"{str(error).splitlines()[0]}"
        ) from None
    return device


@contextlib.contextmanager
def hold_output(
    out_dir: str | Path | None, accelerator: Accelerator | PartialState | None = None
) -> Iterator[None]:
    """The output folder of a run, held by its first process (the one that writes it) until the
    block ends (:func:`~timm_pushpull.locking.exclusive_folder`): a second run into the same
    folder is refused at once (:class:`~timm_pushpull.errors.FolderInUseError`, naming the
    holder), whatever it evaluates; so is a folder that is a file or cannot be written. A
    refusal is raised by every process alike. :func:`evaluate_model` holds its ``out_dir``
    itself unless told that the caller does (``out_dir_held``)."""
    processes = Processes(accelerator)
    with contextlib.ExitStack() as stack:
        error = None
        if out_dir is not None and processes.is_main:
            try:
                stack.enter_context(exclusive_folder(out_dir, "--out"))
            except FolderInUseError as exception:
                error = str(exception)
        error = processes.broadcast(error)
        if error is not None:
            raise FolderInUseError(error)
        yield


def _open_results(
    processes: Processes,
    out_dir: str | Path | None,
    header: dict,
    overwrite: bool,
    current_inputs: Callable[[str], Mapping[str, str]],
) -> ResultsFile:
    """The run's results.json, read by the first process only (the one that writes it; on
    several machines the others may not see it) and sent to the others, after checking that
    every process evaluates the same run; an error is raised by every process alike. The
    others' file has no path: their saves only update the summary. ``current_inputs`` gives
    the fingerprints of what a unit reads, to check those of the units kept."""
    identities = processes.all_values(header["identity"])
    differing = sorted({key for other in identities for key in other
                        if other[key] != header["identity"][key]})  # fmt: skip
    if differing:
        raise InvalidArgumentError(
            f"the {processes.world_size} processes evaluate different runs ({', '.join(differing)} "
            "differ): give every process the same weights (--checkpoint or --pretrained) and data"
        )
    error, store = None, ResultsFile(None, header)
    if processes.is_main:
        try:
            store = ResultsFile(out_dir, header, overwrite, current_inputs)
        except ValueError as exception:
            error = str(exception)
    error, stored = processes.broadcast((error, store.results))
    if error is not None:
        raise InvalidArgumentError(error)
    store.results.update(stored)
    return store


@dataclass
class _Evaluation:
    """One run's resolved settings, model and data; its methods evaluate one unit each
    (:data:`_UNIT_EVALUATORS` says which method computes the units of which results.json
    section).

    Every method evaluates this process's shard of the images (:mod:`.parallel`), gathers the
    per-image results of all processes in image order and returns the unit's value computed
    from all of them and those per-image outcomes (:class:`UnitOutcomes`), the same on every
    process.
    """

    settings: EvalSettings  # resolved: no derived value left None
    classify: _Classifier
    processes: Processes
    clean: Dataset | None
    clean_indices: np.ndarray | None
    corrupted: CifarCFolder | ImageNetCFolder | None
    sequences: CifarPFolder | ImageNetPFolder | None
    frost: FrostSource | None  # the textures of generated frost
    device: torch.device
    batch_size: int
    workers: int
    progress: bool
    # of the model, found before the first unit: labels outside [0, num_classes) are refused
    num_classes: int = 0

    @functools.cached_property
    def clean_sha256(self) -> str:
        return dataset_sha256(self.clean)

    def inputs(self, key: str) -> dict[str, str]:
        """Fingerprints of every input the unit ``key`` reads (:mod:`.fingerprint`)."""
        section, _, name = key.partition("/")
        if section == "corruptions" and self.corrupted is not None:
            return folder_inputs(self.corrupted, name, self.settings.severities)
        if section == "perturbations" and self.sequences is not None:
            return folder_inputs(self.sequences, name)
        inputs = {"clean": self.clean_sha256}
        if key == "corruptions/frost" and self.frost is not None and self.frost.files:
            inputs["frost"] = files_sha256(self.frost.files)
        return inputs

    def batches(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        size: int | None = None,
        block: int = NOISE_BLOCK,
        labelled: bool = False,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(position of the batch's first image in ``indices``, images in [0, 1], labels), both on
        the device, over this process's shard of ``indices``, in batches of whole ``block``s of
        at least ``size`` (default ``batch_size``) images; the classifier splits them into its
        own batches. Only the shard's images are read, by ``workers`` DataLoader workers ahead
        of the model, into pinned memory for a GPU. ``labelled``: the labels are used, and must
        be classes of the model."""
        from tqdm.auto import tqdm

        batch_size = -(-(size or self.batch_size) // block) * block
        positions = self.processes.shard(len(indices), block)
        starts = range(positions.start, positions.stop, batch_size)
        pin_memory = self.device.type == "cuda"
        if isinstance(dataset, ArrayImageDataset):
            reader = _BatchReader(
                dataset, [indices[s : min(s + batch_size, positions.stop)] for s in starts]
            )
            loader = DataLoader(reader, batch_size=None, num_workers=self.workers,
                                pin_memory=pin_memory)  # fmt: skip
        else:
            shard = Subset(dataset, indices[positions.start : positions.stop].tolist())
            loader = DataLoader(shard, batch_size=batch_size, num_workers=self.workers,
                                pin_memory=pin_memory)  # fmt: skip
        disable = not (self.progress and self.processes.is_main)
        batches = tqdm(loader, total=len(starts), leave=False, disable=disable, file=sys.stderr)
        for start, (images, labels) in zip(starts, batches, strict=True):
            if labelled:  # on the CPU still: no wait for the device
                where = f"{type(dataset).__name__} {getattr(dataset, 'root', '')}".strip()
                _check_labels(torch.as_tensor(labels), self.num_classes, where)
            images = to_unit_images(images.to(self.device, non_blocking=True))
            yield start, images, torch.as_tensor(labels).to(self.device, non_blocking=True)

    def clean_batches(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        return self.batches(self.clean, self.clean_indices)

    def gather(self, rows: list[torch.Tensor], dtype: torch.dtype, ndim: int = 1) -> torch.Tensor:
        """This process's per-image ``rows`` joined with all others', in image order, on the CPU."""
        local = torch.cat(rows) if rows else torch.zeros((0,) * ndim, dtype=dtype)
        return self.processes.gather(local.to(self.device, dtype)).cpu()

    def wrong(
        self, dataset: Dataset, indices: np.ndarray, draw: Callable | None = None
    ) -> torch.Tensor:
        """Which of ``dataset[indices]`` are misclassified (bool ``[N]``), the images first
        changed by ``draw`` per block."""
        wrong = []
        for start, images, labels in self.batches(dataset, indices, labelled=True):
            if draw is not None:
                images = _per_block(images, start, NOISE_BLOCK, self.settings.seed, draw)
            wrong.append(self.classify(images) != labels)
        return self.gather(wrong, torch.uint8).bool()

    def evaluate_clean(self, _name: None) -> tuple[float, UnitOutcomes]:
        wrong = self.wrong(self.clean, self.clean_indices)
        return int(wrong.sum()) / len(wrong), UnitOutcomes(wrong.numpy(), self.clean_indices)

    def evaluate_corruption(self, name: str) -> tuple[dict, UnitOutcomes]:
        wrong, indices = [], self.clean_indices
        for severity in self.settings.severities:
            if self.corrupted is not None:
                dataset = self.corrupted.dataset(name, severity)
                indices = subset_indices(len(dataset), self.settings.max_images, self.settings.seed)
                wrong.append(self.wrong(dataset, indices))
            else:
                settings = self.settings
                draw = functools.partial(
                    corrupt, name=name, severity=severity, scale=settings.scale,
                    frost=settings.frost, spatter=settings.spatter,
                    output=settings.corruption_output,
                )  # fmt: skip
                wrong.append(self.wrong(self.clean, self.clean_indices, draw))
        if len({len(row) for row in wrong}) > 1:
            raise InvalidArgumentError(
                f"the severities of {name} hold different numbers of images "
                f"({[len(row) for row in wrong]}): per-image outcomes need the same images"
            )
        errors = [int(row.sum()) / len(row) for row in wrong]
        source = "official" if self.corrupted is not None else "generated"
        result = {"errors": errors, "mean_error": float(np.mean(errors)), "source": source}
        if name == "frost" and self.corrupted is None:
            result["comparable"] = self.frost.reference
        return result, UnitOutcomes(torch.stack(wrong).numpy(), indices)

    def generate_sequences(self, images: torch.Tensor, name: str, seed: int) -> torch.Tensor:
        """Sequences at the run's scale. ImageNet-P warps the 256-px image and keeps 224-px crops;
        the clean images here are already the model's input size, so they stand in for the
        resized image and the 7/8 crops are resized back to it (bilinear, antialiased)."""
        frames = perturbation_sequence(images, name, seed=seed, scale=self.settings.scale,
                                       num_frames=self.settings.num_frames)  # fmt: skip
        if frames.shape[-2:] == images.shape[-2:]:
            return frames
        resized = F.interpolate(frames.flatten(0, 1), size=images.shape[-2:], mode="bilinear",
                                antialias=True, align_corners=False)  # fmt: skip
        return resized.clamp_(0, 1).view(*frames.shape[:3], *images.shape[-2:])

    def evaluate_perturbation(self, name: str) -> tuple[dict, UnitOutcomes]:
        if self.sequences is not None:
            dataset = self.sequences.dataset(name)
            indices = subset_indices(len(dataset), self.settings.max_images, self.settings.seed)
        else:
            dataset, indices = self.clean, self.clean_indices
        predictions = []
        # batch_size // 8 sequences per batch: each sequence multiplies the images by its frames
        sequences = max(1, self.batch_size // 8)
        for start, images, _ in self.batches(dataset, indices, sequences, SEQUENCE_BLOCK):
            if self.sequences is None:
                draw = functools.partial(self.generate_sequences, name=name)
                images = _per_block(images, start, SEQUENCE_BLOCK, self.settings.seed, draw)
            count, frames = images.shape[:2]
            predictions.append(self.classify(images.flatten(0, 1)).view(count, frames))
        predictions = self.gather(predictions, torch.int64, ndim=2)
        noise = name in NOISE_PERTURBATIONS
        result = {
            "flip_probability": metrics.flip_probability(predictions, noise=noise),
            "noise": noise,
            "n_sequences": int(predictions.shape[0]),
            "n_frames": int(predictions.shape[1]),
            "source": "official" if self.sequences is not None else "generated",
        }
        frames = predictions.T.numpy().astype(np.int32)  # [frames, sequences]: images last
        return result, UnitOutcomes(frames, indices)

    def evaluate_shift(self, _name: None) -> tuple[dict, UnitOutcomes]:
        agree, settings = [], self.settings
        for trial in range(settings.shift_trials):
            same = []
            for start, images, _ in self.clean_batches():
                draw = functools.partial(_random_offsets, max_shift=settings.max_shift)
                offsets = _per_block(images, start, NOISE_BLOCK, settings.seed, draw, 1, trial)
                offsets = offsets.transpose(0, 1)  # [2, B, 2]
                first = self.classify(shift_images(images, offsets[0], settings.shift_mode))
                second = self.classify(shift_images(images, offsets[1], settings.shift_mode))
                same.append(first == second)
            agree.append(self.gather(same, torch.uint8).bool())
        agree = torch.stack(agree)  # [trials, images]
        result = {"consistency": int(agree.sum()) / agree.numel(), "mode": settings.shift_mode,
                  "max_shift": settings.max_shift, "n_pairs": agree.numel()}  # fmt: skip
        return result, UnitOutcomes(agree.numpy(), self.clean_indices)

    def evaluate_noise_sweep(self, name: str) -> tuple[dict, UnitOutcomes]:
        levels = list(self.settings.noise_levels[name])
        wrong = []  # [images, levels] per batch
        for start, images, labels in self.clean_batches():
            blocks = images.split(NOISE_BLOCK)
            generators = [
                torch.Generator(device=self.device).manual_seed(
                    noise_seed(self.settings.seed, start + number * NOISE_BLOCK, 2)
                )
                for number in range(len(blocks))
            ]
            # one draw per image for all levels: the curve then varies only with the level
            noise = torch.cat([torch.randn(block.shape, generator=generator, device=self.device)
                               for block, generator in zip(blocks, generators, strict=True)])  # fmt: skip
            batch_wrong = []
            for level in levels:
                if name == "gaussian":
                    noisy = add_gaussian_noise(images, level, noise)
                elif name == "speckle":
                    noisy = add_speckle_noise(images, level, noise)
                else:
                    noisy = torch.cat([contrast_poisson_noise(block, level, generator)
                                       for block, generator in zip(blocks, generators, strict=True)])  # fmt: skip
                batch_wrong.append(self.classify(noisy) != labels)
            wrong.append(torch.stack(batch_wrong, dim=1))
        wrong = self.gather(wrong, torch.uint8, ndim=2).bool()
        result = {
            "parameter": NOISE_SWEEPS[name][0],
            "levels": levels,
            "errors": (wrong.sum(dim=0).numpy() / len(wrong)).tolist(),
        }
        return result, UnitOutcomes(wrong.T.numpy(), self.clean_indices)


# results.json section -> the method evaluating one of its units (named, or None for the
# sections of a single unit). A new suite is its entry in settings.SUITES and its evaluator here.
_UNIT_EVALUATORS: dict[str, Callable[[_Evaluation, str | None], tuple[object, UnitOutcomes]]] = {
    "clean_error": _Evaluation.evaluate_clean,
    "corruptions": _Evaluation.evaluate_corruption,
    "perturbations": _Evaluation.evaluate_perturbation,
    "shift": _Evaluation.evaluate_shift,
    "noise_sweeps": _Evaluation.evaluate_noise_sweep,
}
