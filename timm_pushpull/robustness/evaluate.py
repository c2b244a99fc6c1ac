"""``timm-pushpull evaluate``: the robustness benchmark of any timm model, resumable.

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
most the unit in progress and a rerun of the same run skips what is done. The file records what
the numbers depend on (architecture, model args, a hash of the weights evaluated, data set and
subset, random generator, device, versions, settings); a rerun that differs in any of them stops
with an error naming each difference instead of mixing results, unless ``overwrite`` starts over.
Beside it, ``OUT/per_image.npz`` keeps what each image did in every finished unit (wrong or right
per severity / level, shift agreement per trial, -P predictions per frame), in step with
results.json, for paired comparisons of models on the same images (``load_per_image``).

Under ``torchrun`` / ``accelerate launch`` the processes share every unit (:mod:`.parallel`):
each evaluates its own whole blocks of images, reading only those, and the first process writes
the unit once all of them finished it. The numbers are those of one process, so a run may resume
with another number of processes; ``world_size`` in the file only records how many wrote it last.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
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
from ..version import __version__
from . import metrics
from .baselines import Baseline, get_baseline
from .corruptions import ALL_CORRUPTIONS, OUTPUTS, SPATTER_MODES, corrupt
from .datasets import (
    ArrayImageDataset,
    CifarCFolder,
    CifarPFolder,
    ImageNetCFolder,
    ImageNetPFolder,
    check_severity,
    detect_dataset_kind,
    open_clean_dataset,
    read_npy,
    to_unit_images,
)
from .frost import FROST_SOURCES, resolve_frost_source
from .parallel import Processes
from .perturbations import NOISE_PERTURBATIONS, PERTURBATIONS, perturbation_sequence
from .results import (
    SCHEMA,
    SCHEMA_VERSION,
    ResultsFile,
    RunIdentity,
    UnitOutcomes,
    array_sha256,
    state_dict_sha256,
    summarize,
)

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

__all__ = [
    "SUITES",
    "NOISE_SWEEPS",
    "add_gaussian_noise",
    "add_speckle_noise",
    "contrast_poisson_noise",
    "shift_images",
    "evaluate_model",
    "noise_seed",
    "add_arguments",
    "main",
]

SUITES = ("c", "p", "shift", "noise")
SHIFT_MODES = ("circular", "crop")
# --precision: the dtype the model runs in (autocast for the half ones)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SCALES = ("cifar", "imagenet")
# sweep -> (parameter, default levels); variances on [0, 1] images, contrast factors
NOISE_SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "gaussian": ("variance", (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03)),
    "speckle": ("variance", (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03)),
    "contrast_poisson": ("contrast", (0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5)),
}
# photon count of a full-scale pixel: Poisson noise of an 8-bit sensor, as scikit-image's
# random_noise(mode="poisson") gives for 8-bit images
_POISSON_PEAK = 255.0
# Random draws are made per block of this many consecutive images (sequences for the p suite),
# seeded by the block's position: small enough that an extra partial block costs little memory,
# large enough that the corruptions stay batched (blocks of 32 CIFAR images cost ~6 % more than
# batches of 256 on the CPU).
NOISE_BLOCK = 32
SEQUENCE_BLOCK = 4


def add_gaussian_noise(images: torch.Tensor, variance: float, noise: torch.Tensor) -> torch.Tensor:
    """``clip(I + sqrt(variance) * n)`` for a standard normal draw ``n`` (reused across levels)."""
    return (images + math.sqrt(variance) * noise).clamp_(0, 1)


def add_speckle_noise(images: torch.Tensor, variance: float, noise: torch.Tensor) -> torch.Tensor:
    """``clip(I + I * sqrt(variance) * n)``: multiplicative noise, as scikit-image's ``speckle``."""
    return (images + images * math.sqrt(variance) * noise).clamp_(0, 1)


def contrast_poisson_noise(
    images: torch.Tensor, contrast: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Contrast change ``I_C = (I - 0.5) * C + 0.5`` (clipped to [0, 1]), then Poisson noise."""
    contrasted = ((images - 0.5) * contrast + 0.5).clamp_(0, 1)
    return (torch.poisson(contrasted * _POISSON_PEAK, generator=generator) / _POISSON_PEAK).clamp_(
        0, 1
    )


def shift_images(
    images: torch.Tensor, offsets: torch.Tensor, mode: str = "circular"
) -> torch.Tensor:
    """Shift each image of ``images [B, C, H, W]`` by its own ``offsets[b] = (dy, dx)`` pixels.

    ``circular`` wraps around (``torch.roll`` per image); ``crop`` moves the content over a zero
    background, i.e. crops the zero-padded image at the shifted position, keeping the size.
    """
    if mode not in SHIFT_MODES:
        raise ValueError(f"shift mode must be one of {SHIFT_MODES}, got {mode!r}")
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
        self.dtype = PRECISIONS[precision]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        predictions = []
        autocast = self.dtype != torch.float32
        for chunk in images.split(self.batch_size):
            chunk = (chunk.to(self.device, non_blocking=True) - self.mean) / self.std
            chunk = chunk.contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
                predictions.append(self.model(chunk).argmax(dim=1))
        return torch.cat(predictions)


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


def _subset(length: int, max_images: int | None, seed: int) -> np.ndarray:
    """Indices of the images evaluated: all, or a fixed random subset (sorted) of ``max_images``."""
    if max_images is None or max_images >= length:
        return np.arange(length)
    generator = torch.Generator().manual_seed(seed)
    return np.sort(torch.randperm(length, generator=generator)[:max_images].numpy())


def _image_size(dataset: Dataset) -> tuple[int, int, int]:
    image = dataset.batch(np.array([0]))[0][0] if isinstance(dataset, ArrayImageDataset) else (
        to_unit_images(dataset[0][0].unsqueeze(0))[0])  # fmt: skip
    return tuple(image.shape[-3:])


def _sample_images(dataset: Dataset, count: int = 4) -> torch.Tensor:
    """The first ``count`` images of a dataset, in [0, 1] (for the report's response maps)."""
    indices = np.arange(min(count, len(dataset)))
    if isinstance(dataset, ArrayImageDataset):
        return dataset.batch(indices)[0]
    return to_unit_images(torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in indices]))


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


def _resolve_normalization(model: nn.Module, mean, std) -> tuple[list[float], list[float]]:
    if mean is None or std is None:
        from timm.data import resolve_data_config

        config = resolve_data_config({}, model=model)
        mean = config["mean"] if mean is None else mean
        std = config["std"] if std is None else std
    return [float(m) for m in mean], [float(s) for s in std]


def _check_names(names: Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    names = list(allowed if names is None else names)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(allowed)}")
    if not names:
        raise ValueError(f"no {what} selected")
    return names


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor | np.ndarray | Dataset | None = None,
    labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    *,
    suites: Sequence[str] = ("c",),
    corrupted: CifarCFolder | ImageNetCFolder | None = None,
    sequences: CifarPFolder | ImageNetPFolder | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    perturbations: Sequence[str] | None = None,
    scale: str | None = None,
    baseline: str | Path | Baseline | Mapping | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 128,
    max_images: int | None = None,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device | None = None,
    model_name: str | None = None,
    model_args: Mapping[str, object] | None = None,
    checkpoint: str | None = None,
    dataset_names: Mapping[str, str] | None = None,
    shift_mode: str = "circular",
    max_shift: int | None = None,
    shift_trials: int = 1,
    noise_levels: Mapping[str, Sequence[float]] | None = None,
    num_frames: int | None = None,
    workers: int = 0,
    precision: str = "fp32",
    channels_last: bool = False,
    accelerator: Accelerator | PartialState | None = None,
    progress: bool = True,
    overwrite: bool = False,
    frost: str = "photos",
    spatter: str = "wrap",
    output: str = "released",
) -> dict:
    """Run the robustness suites on ``model`` and return the results dict (format:
    :mod:`timm_pushpull.robustness.results`).

    Args:
        model: any classifier taking normalised ``[B, C, H, W]`` images (timm or plain torch).
        images / labels: the clean test set: an array/tensor of uint8 or [0, 1] float images (any
            layout :func:`to_unit_images` takes) with labels, or a Dataset of ``(image, label)``.
            Needed for the clean error, the shift and noise suites, and to generate corruptions
            and perturbation sequences when no official files are given.
        suites: any of ``"c"``, ``"p"``, ``"shift"``, ``"noise"``.
        corrupted / sequences: official -C / -P files (:mod:`timm_pushpull.robustness.datasets`).
        corruptions / perturbations: names to run (default: all available).
        scale: parameter set of generated corruptions, ``"cifar"`` or ``"imagenet"`` (default:
            ``"cifar"`` for images up to 64 px).
        baseline: built-in name (``alexnet-cifar10c``, ``alexnet-imagenetc``), results.json, an
            authors' results folder, or None (no CE/mFR).
        out_dir: where results.json goes; None keeps everything in memory (no resume).
        model_name / model_args / checkpoint: how the model was made (``model_args``: keyword
            arguments of ``timm.create_model`` such as ``pretrained``, ``num_classes``). The
            model args are part of the run's identity, and so is the architecture (the model's
            ``pretrained_cfg``, else ``model_name``); the checkpoint path is only a label (the
            identity has a hash of the weights themselves).
        batch_size: images per forward pass; the numbers do not depend on it.
        max_images: evaluate a fixed random subset (seeded by ``seed``) of this many images.
        mean / std: input normalisation (default: the model's timm data config).
        shift_mode / max_shift / shift_trials: shift suite: offsets uniform in
            [-max_shift, max_shift] (default: 1/7 of the image size: 4 px for CIFAR, 32 for 224 px).
        noise_levels: overrides of :data:`NOISE_SWEEPS` levels per sweep.
        num_frames: frames of generated perturbation sequences (default: the generator's).
        workers: DataLoader workers reading images ahead of the model.
        precision / channels_last: the model runs in ``precision`` (``"fp32"``, or ``"bf16"`` /
            ``"fp16"`` under autocast) and channels-last memory; both are settings of the run.
        accelerator: an ``accelerate`` ``Accelerator`` or ``PartialState`` of the processes
            evaluating together (``torchrun`` / ``accelerate launch``): each evaluates a shard of
            whole blocks of images on its device, and the first writes the file (its
            ``world_size`` records how many processes did). None: this process alone.
        overwrite: start over when ``out_dir`` holds results of another run (they are replaced
            at the first save); without it such a run is refused.
        frost / spatter / output: options of generated corruptions (:func:`corrupt`; ``output``
            ``"released"`` stores them as the released data sets: 8 bits, plus JPEG q85 at
            ImageNet scale, ``"float"`` keeps them as computed); the frost source
            used is recorded in ``settings["frost"]``, with ``"comparable": false`` unless it is
            the reference photos.
    """
    suites = _check_names(suites, SUITES, "suites")
    severities = [check_severity(s) for s in severities]
    if shift_mode not in SHIFT_MODES:
        raise ValueError(f"shift_mode must be one of {SHIFT_MODES}, got {shift_mode!r}")
    if scale is not None and scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if batch_size < 1 or (max_images is not None and max_images < 1) or shift_trials < 1:
        raise ValueError("batch_size, max_images and shift_trials must be >= 1")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    unknown_sweeps = set(noise_levels or {}) - set(NOISE_SWEEPS)
    if unknown_sweeps:
        raise ValueError(
            f"unknown noise sweeps {sorted(unknown_sweeps)}; allowed: {list(NOISE_SWEEPS)}"
        )
    if frost not in FROST_SOURCES or spatter not in SPATTER_MODES or output not in OUTPUTS:
        raise ValueError(
            f"frost must be one of {FROST_SOURCES}, spatter one of {SPATTER_MODES} and output one "
            f"of {OUTPUTS}, got {frost!r}, {spatter!r} and {output!r}"
        )
    baseline = get_baseline(baseline)

    clean = images
    if images is not None and not isinstance(images, Dataset):
        if labels is None:
            raise ValueError("labels are needed with an array of images")
        clean = ArrayImageDataset(images, labels)
    corruption_source = corrupted if corrupted is not None else clean
    sequence_source = sequences if sequences is not None else clean
    needs = {"c": corruption_source, "p": sequence_source, "shift": clean, "noise": clean}
    for suite in suites:
        if needs[suite] is None:
            raise ValueError(f"suite {suite!r} needs clean images (or official files for c / p)")
    available_c = corrupted.corruptions if corrupted is not None else ALL_CORRUPTIONS
    available_p = sequences.perturbations if sequences is not None else PERTURBATIONS
    corruptions = _check_names(corruptions, available_c, "corruptions") if "c" in suites else []
    perturbations = (
        _check_names(perturbations, available_p, "perturbations") if "p" in suites else []
    )
    if clean is not None:
        image_size = _image_size(clean)
    elif corrupted is not None:
        image_size = _image_size(corrupted.dataset(corruptions[0], severities[0]))
    else:
        image_size = _image_size(sequences.dataset(perturbations[0]))
    scale = scale or ("cifar" if max(image_size[1:]) <= 64 else "imagenet")
    max_shift = max(1, round(max(image_size[1:]) / 7)) if max_shift is None else int(max_shift)
    sweeps = {name: [float(v) for v in (noise_levels or {}).get(name, levels)]
              for name, (_, levels) in NOISE_SWEEPS.items()}  # fmt: skip
    mean, std = _resolve_normalization(model, mean, std)
    if len(mean) not in (1, image_size[0]) or len(std) != len(mean):
        raise ValueError(
            f"images have {image_size[0]} channels but the normalisation mean/std {len(mean)}/"
            f"{len(std)}: pass mean and std, or use the channels the model was trained on"
        )
    processes = Processes(accelerator)
    device = _resolve_device(device, accelerator)
    classify = _Classifier(model, mean, std, device, batch_size, precision, channels_last)
    clean_indices = _subset(len(clean), max_images, seed) if clean is not None else None

    names = dict(dataset_names or {})
    settings = {
        "datasets": {
            "clean": names.get("clean", "in-memory" if clean is not None else None),
            "c": names.get("c", "official" if corrupted is not None else "generated"),
            "p": names.get("p", "official" if sequences is not None else "generated"),
        },
        "scale": scale, "seed": seed, "severities": severities,
        "n_images": len(clean_indices) if clean_indices is not None else max_images,
        "input_size": list(image_size), "mean": mean, "std": std,
        "shift": {"mode": shift_mode, "max_shift": max_shift, "trials": shift_trials},
        "noise_levels": sweeps, "num_frames": num_frames, "precision": precision,
        "channels_last": channels_last,
        # which frost textures generated corruptions use (None: no frost generated)
        "frost": resolve_frost_source(frost).to_json()
        if corrupted is None and "frost" in corruptions else None,
        "spatter": spatter, "corruption_output": output,
    }  # fmt: skip
    identity = run_identity(model, model_name, model_args, clean, clean_indices, corrupted, device)
    header = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "timm_pushpull_version": __version__,
        "model": model_name or type(model).__name__, "checkpoint": checkpoint,
        "n_images": settings["n_images"], "seed": seed, "identity": identity.to_dict(),
        "settings": json.loads(json.dumps(settings)), "world_size": processes.world_size,
    }  # fmt: skip
    store = _open_results(processes, out_dir, header, overwrite)
    results = store.results
    stored_baseline = baseline.to_dict() if baseline is not None else None

    units = [("clean_error", None)] if clean is not None else []
    units += [("corruptions", name) for name in corruptions]
    units += [("perturbations", name) for name in perturbations]
    units += [("shift", None)] if "shift" in suites else []
    units += [("noise_sweeps", name) for name in NOISE_SWEEPS] if "noise" in suites else []
    todo = [
        (section, name) for section, name in units
        if (results[section] is None if name is None else name not in results[section])
    ]  # fmt: skip
    run = _Evaluation(
        classify=classify, processes=processes, clean=clean, clean_indices=clean_indices, corrupted=corrupted,
        sequences=sequences, severities=severities, scale=scale, seed=seed,
        batch_size=batch_size, max_images=max_images, device=device, workers=workers,
        shift_mode=shift_mode, max_shift=max_shift, shift_trials=shift_trials, sweeps=sweeps,
        num_frames=num_frames, progress=progress, frost=frost, spatter=spatter,
        output=output,
    )  # fmt: skip
    from tqdm.auto import tqdm

    disable = not (progress and processes.is_main)
    with tqdm(todo, disable=disable, desc=str(results["model"]), file=sys.stderr) as bar:
        for section, name in bar:
            bar.set_postfix_str(f"{section} {name or ''}".strip())
            value, outcomes = getattr(run, section)(name)
            store.add(section, name, value, outcomes)
            # a unit is written whole, after all processes finished it (by the first only)
            store.save(summarize(results, baseline), stored_baseline)
    store.save(summarize(results, baseline), stored_baseline)
    return results


def _resolve_device(
    device: str | torch.device | None, accelerator: Accelerator | PartialState | None
) -> torch.device:
    """The device of this process: ``device``, else the accelerator's, else cuda when available;
    with several processes, the accelerator's (each its own GPU), which ``device`` may only name
    the type of."""
    if accelerator is None or (device is not None and accelerator.num_processes == 1):
        return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device is not None and torch.device(device).type != accelerator.device.type:
        raise ValueError(
            f"device {device!r} differs from the {accelerator.device.type} device of the "
            f"{accelerator.num_processes} processes; launch them for {torch.device(device).type}"
            " (e.g. a --cpu launch for cpu) or leave --device out"
        )
    return accelerator.device


def _open_results(
    processes: Processes, out_dir: str | Path | None, header: dict, overwrite: bool
) -> ResultsFile:
    """The run's results.json, read by the first process only (the one that writes it; on
    several machines the others may not see it) and sent to the others, after checking that
    every process evaluates the same run; an error is raised by every process alike. The
    others' file has no path: their saves only update the summary."""
    identities = processes.all_values(header["identity"])
    differing = sorted({key for other in identities for key in other
                        if other[key] != header["identity"][key]})  # fmt: skip
    if differing:
        raise ValueError(
            f"the {processes.world_size} processes evaluate different runs ({', '.join(differing)} "
            "differ): give every process the same weights (--checkpoint or --pretrained) and data"
        )
    error, store = None, ResultsFile(None, header)
    if processes.is_main:
        try:
            store = ResultsFile(out_dir, header, overwrite=overwrite)
        except ValueError as exception:
            error = str(exception)
    error, stored = processes.broadcast((error, store.results))
    if error is not None:
        raise ValueError(error)
    store.results.update(stored)
    return store


@dataclass
class _Evaluation:
    """One run's model, data and settings; one method per section of results.json.

    Every method evaluates this process's shard of the images (:mod:`.parallel`), gathers the
    per-image results of all processes in image order and returns the section's value computed
    from all of them and those per-image outcomes (:class:`UnitOutcomes`), the same on every
    process.
    """

    classify: _Classifier
    processes: Processes
    clean: Dataset | None
    clean_indices: np.ndarray | None
    corrupted: CifarCFolder | ImageNetCFolder | None
    sequences: CifarPFolder | ImageNetPFolder | None
    severities: list[int]
    scale: str
    seed: int
    batch_size: int
    max_images: int | None
    device: torch.device
    workers: int
    shift_mode: str
    max_shift: int
    shift_trials: int
    sweeps: dict[str, list[float]]
    num_frames: int | None
    progress: bool
    frost: str
    spatter: str
    output: str

    def batches(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        size: int | None = None,
        block: int = NOISE_BLOCK,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(position of the batch's first image in ``indices``, images in [0, 1], labels), both on
        the device, over this process's shard of ``indices``, in batches of whole ``block``s of
        at least ``size`` (default ``batch_size``) images; the classifier splits them into its
        own batches. Only the shard's images are read, by ``workers`` DataLoader workers ahead
        of the model, into pinned memory for a GPU."""
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
        for start, images, labels in self.batches(dataset, indices):
            if draw is not None:
                images = _per_block(images, start, NOISE_BLOCK, self.seed, draw)
            wrong.append(self.classify(images) != labels)
        return self.gather(wrong, torch.uint8).bool()

    def clean_error(self, _name: None) -> tuple[float, UnitOutcomes]:
        wrong = self.wrong(self.clean, self.clean_indices)
        return int(wrong.sum()) / len(wrong), UnitOutcomes(wrong.numpy(), self.clean_indices)

    def corruptions(self, name: str) -> tuple[dict, UnitOutcomes]:
        wrong, indices = [], self.clean_indices
        for severity in self.severities:
            if self.corrupted is not None:
                dataset = self.corrupted.dataset(name, severity)
                indices = _subset(len(dataset), self.max_images, self.seed)
                wrong.append(self.wrong(dataset, indices))
            else:
                draw = functools.partial(
                    corrupt, name=name, severity=severity, scale=self.scale,
                    frost=self.frost, spatter=self.spatter, output=self.output,
                )  # fmt: skip
                wrong.append(self.wrong(self.clean, self.clean_indices, draw))
        if len({len(row) for row in wrong}) > 1:
            raise ValueError(
                f"the severities of {name} hold different numbers of images "
                f"({[len(row) for row in wrong]}): per-image outcomes need the same images"
            )
        errors = [int(row.sum()) / len(row) for row in wrong]
        source = "official" if self.corrupted is not None else "generated"
        result = {"errors": errors, "mean_error": float(np.mean(errors)), "source": source}
        if name == "frost" and self.corrupted is None:
            result["comparable"] = resolve_frost_source(self.frost).reference
        return result, UnitOutcomes(torch.stack(wrong).numpy(), indices)

    def generate_sequences(self, images: torch.Tensor, name: str, seed: int) -> torch.Tensor:
        """Sequences at the run's scale. ImageNet-P warps the 256-px image and keeps 224-px crops;
        the clean images here are already the model's input size, so they stand in for the
        resized image and the 7/8 crops are resized back to it (bilinear, antialiased)."""
        frames = perturbation_sequence(images, name, seed=seed, num_frames=self.num_frames,
                                       scale=self.scale)  # fmt: skip
        if frames.shape[-2:] == images.shape[-2:]:
            return frames
        resized = F.interpolate(frames.flatten(0, 1), size=images.shape[-2:], mode="bilinear",
                                antialias=True, align_corners=False)  # fmt: skip
        return resized.clamp_(0, 1).view(*frames.shape[:3], *images.shape[-2:])

    def perturbations(self, name: str) -> tuple[dict, UnitOutcomes]:
        if self.sequences is not None:
            dataset = self.sequences.dataset(name)
            indices = _subset(len(dataset), self.max_images, self.seed)
        else:
            dataset, indices = self.clean, self.clean_indices
        predictions = []
        # batch_size // 8 sequences per batch: each sequence multiplies the images by its frames
        sequences = max(1, self.batch_size // 8)
        for start, images, _ in self.batches(dataset, indices, sequences, SEQUENCE_BLOCK):
            if self.sequences is None:
                draw = functools.partial(self.generate_sequences, name=name)
                images = _per_block(images, start, SEQUENCE_BLOCK, self.seed, draw)
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

    def shift(self, _name: None) -> tuple[dict, UnitOutcomes]:
        agree = []
        for trial in range(self.shift_trials):
            same = []
            for start, images, _ in self.clean_batches():
                draw = functools.partial(_random_offsets, max_shift=self.max_shift)
                offsets = _per_block(images, start, NOISE_BLOCK, self.seed, draw, 1, trial)
                offsets = offsets.transpose(0, 1)  # [2, B, 2]
                first = self.classify(shift_images(images, offsets[0], self.shift_mode))
                second = self.classify(shift_images(images, offsets[1], self.shift_mode))
                same.append(first == second)
            agree.append(self.gather(same, torch.uint8).bool())
        agree = torch.stack(agree)  # [trials, images]
        result = {"consistency": int(agree.sum()) / agree.numel(), "mode": self.shift_mode,
                  "max_shift": self.max_shift, "n_pairs": agree.numel()}  # fmt: skip
        return result, UnitOutcomes(agree.numpy(), self.clean_indices)

    def noise_sweeps(self, name: str) -> tuple[dict, UnitOutcomes]:
        levels = self.sweeps[name]
        wrong = []  # [images, levels] per batch
        for start, images, labels in self.clean_batches():
            blocks = images.split(NOISE_BLOCK)
            generators = [
                torch.Generator(device=self.device).manual_seed(
                    noise_seed(self.seed, start + number * NOISE_BLOCK, 2)
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


# ----------------------------------------------------------------------------------------------
# command line


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="timm model name (ours are registered), or local-dir:DIR / hf-hub:ID",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--pretrained", action="store_true", help="load the model's pretrained weights"
    )
    weights.add_argument(
        "--checkpoint", help="weights file: .safetensors or a torch checkpoint (weights_only)"
    )
    parser.add_argument(
        "--num-classes", type=int, help="classifier size when it differs from the model default"
    )
    parser.add_argument(
        "--dataset", action="append", required=True, metavar="SPEC",
        help="repeatable: a CIFAR-10/100-C folder, an ImageNet-C folder, a CIFAR-10-P or ImageNet-P "
        "folder (<perturbation>/<wnid>/*.mp4), and/or "
        "a clean test set (cifar10:ROOT, cifar100:ROOT, fashion_mnist[:ROOT], mnist:ROOT, hf:PATH, "
        "folder:PATH, an image folder; @SPLIT picks a split other than test) from which missing "
        "corruptions are generated",
    )  # fmt: skip
    parser.add_argument(
        "--suite", type=_comma_list, default=["c"], help=f"comma list of {', '.join(SUITES)}"
    )
    parser.add_argument(
        "--corruptions", type=_comma_list, help="comma list (default: all available)"
    )
    parser.add_argument(
        "--severities", type=lambda s: [int(v) for v in _comma_list(s)], default=[1, 2, 3, 4, 5]
    )
    parser.add_argument(
        "--perturbations", type=_comma_list, help="comma list (default: all available)"
    )
    parser.add_argument(
        "--scale",
        choices=SCALES,
        help="parameters of generated corruptions (default: by image size)",
    )
    parser.add_argument(
        "--baseline", help="alexnet-cifar10c, alexnet-imagenetc, a results.json or a folder with the "
        "authors' C_details.txt (default: none, no CE/mFR)",
    )  # fmt: skip
    parser.add_argument(
        "--out", required=True, help="output folder: results.json, report.md, plots"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--max-images", type=int, help="evaluate a fixed random subset of this many images"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers reading images ahead"
    )
    parser.add_argument(
        "--precision", choices=list(PRECISIONS), default="fp32",
        help="dtype of the model's forward pass (bf16 / fp16 under autocast)",
    )  # fmt: skip
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last memory for model and inputs"
    )
    parser.add_argument(
        "--img-size", type=int, help="input size for image folders (default: the model's)"
    )
    parser.add_argument("--shift-mode", choices=SHIFT_MODES, default="circular")
    parser.add_argument(
        "--max-shift", type=int, help="largest shift in pixels (default: image size / 7)"
    )
    parser.add_argument("--shift-trials", type=int, default=1, help="random shift pairs per image")
    parser.add_argument("--num-frames", type=int, help="frames of generated perturbation sequences")
    parser.add_argument(
        "--frost", choices=FROST_SOURCES, default="photos", help="frost textures of generated "
        "corruptions: the reference photos (found or downloaded once) or procedural ones",
    )  # fmt: skip
    parser.add_argument(
        "--spatter", choices=SPATTER_MODES, default="wrap", help="generated spatter: the released "
        "data's 8-bit wrap of the water layer, or clipped",
    )  # fmt: skip
    parser.add_argument(
        "--corruption-output", choices=OUTPUTS, default="released", help="generated corruptions "
        "stored like the released sets (8 bits; JPEG q85 at ImageNet scale) or kept as floats",
    )  # fmt: skip
    parser.add_argument(
        "--device", help="default: cuda when available, else cpu; under torchrun / accelerate "
        "launch each process takes its own GPU, and --device cpu runs the processes on CPUs (gloo)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="write results.json only")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over when --out holds the results of another run (they are replaced); "
        "without it such a run is refused",
    )  # fmt: skip


def _open_datasets(specs: Sequence[str], data_config: dict) -> dict:
    """{"clean" | "c" | "p": (source, description)} from the --dataset values."""
    from timm.data.transforms import MaybePILToTensor
    from timm.data.transforms_factory import transforms_imagenet_eval

    size = data_config["input_size"][1:]
    interpolation = data_config["interpolation"]
    # ImageNet-C images are already cropped to the evaluation size: no extra resize margin
    corrupted_transform = transforms_imagenet_eval(
        size, crop_pct=1.0, interpolation=interpolation, normalize=False
    )
    clean_transform = transforms_imagenet_eval(
        size, crop_pct=data_config["crop_pct"], crop_mode=data_config.get("crop_mode"),
        interpolation=interpolation, normalize=False,
    )  # fmt: skip
    opened = {}
    for spec in specs:
        kind = detect_dataset_kind(spec) if Path(spec).is_dir() else "clean"
        if kind == "cifar-c":
            role, source = "c", CifarCFolder(spec)
        elif kind == "imagenet-c":
            role, source = "c", ImageNetCFolder(spec, transform=corrupted_transform)
        elif kind == "cifar-p":
            role, source = "p", CifarPFolder(spec)
        elif kind == "imagenet-p":
            role, source = "p", ImageNetPFolder(spec)
        else:
            role, source = "clean", open_clean_dataset(spec, clean_transform, MaybePILToTensor())
        if role in opened:
            raise ValueError(
                f"--dataset {spec!r} and {opened[role][1]!r} both give the {role!r} data; give one"
            )
        description = f"{kind}:{spec}" if kind != "clean" else spec
        if not isinstance(
            source, ArrayImageDataset | CifarCFolder | CifarPFolder | ImageNetPFolder
        ):
            # images resized and cropped on loading: how is part of what the numbers depend on
            crop_pct = 1.0 if kind == "imagenet-c" else data_config["crop_pct"]
            description += (f" (resized to {list(size)}, crop_pct {crop_pct}, "
                            f"crop_mode {data_config.get('crop_mode')}, {interpolation})")  # fmt: skip
        opened[role] = (source, description)
    return opened


def _processes_state(device: str | None) -> PartialState:
    """Accelerate's state of the processes launched together (one alone without a launcher);
    ``cpu`` makes torchrun's processes a gloo group on CPUs."""
    from accelerate import PartialState

    cpu = torch.device(device).type == "cpu" if device else not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def main(args: argparse.Namespace) -> int:
    state = _processes_state(args.device)
    try:
        results = _run(args, state)
    except (ValueError, FileNotFoundError) as error:
        print(f"timm-pushpull evaluate: error: {error}", file=sys.stderr)
        return 2
    if state.is_main_process:
        from .report import format_comparison

        print(format_comparison([results]))
    return 0


def _run(args: argparse.Namespace, state: PartialState) -> dict:
    from timm.data import resolve_data_config

    from ..factory import create_model, load_weights  # clear errors for unknown models, bad files

    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist")
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    # weights not loaded are the same in every process and rerun; the caller's generator is kept
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = create_model(args.model, pretrained=args.pretrained, **kwargs)
    if args.checkpoint is not None:
        load_weights(model, args.checkpoint, args.model)
    overrides = {} if args.img_size is None else {"input_size": (model.pretrained_cfg.get("input_size", (3,))[0],
                                                                   args.img_size, args.img_size)}  # fmt: skip
    data_config = resolve_data_config(overrides, model=model)
    opened = _open_datasets(args.dataset, data_config)
    clean = opened.get("clean", (None, None))
    results = evaluate_model(
        model, clean[0],
        suites=args.suite, corrupted=opened.get("c", (None,))[0], sequences=opened.get("p", (None,))[0],
        corruptions=args.corruptions, severities=args.severities, perturbations=args.perturbations,
        scale=args.scale, baseline=args.baseline, out_dir=args.out, batch_size=args.batch_size,
        max_images=args.max_images, seed=args.seed, mean=data_config["mean"], std=data_config["std"],
        device=args.device, model_name=args.model, checkpoint=args.checkpoint,
        model_args={"pretrained": args.pretrained, **kwargs}, overwrite=args.overwrite,
        dataset_names={role: description for role, (_, description) in opened.items()},
        shift_mode=args.shift_mode, max_shift=args.max_shift, shift_trials=args.shift_trials,
        num_frames=args.num_frames, workers=args.workers, precision=args.precision,
        channels_last=args.channels_last, accelerator=state, progress=not args.no_progress,
        frost=args.frost, spatter=args.spatter, output=args.corruption_output,
    )  # fmt: skip
    if not args.no_report and state.is_main_process:
        from .report import write_report

        sample = None
        if clean[0] is not None:
            sample = _sample_images(clean[0])
        write_report([results], args.out, models={args.model: model}, sample_images=sample,
                     normalization={args.model: (data_config["mean"], data_config["std"])})  # fmt: skip
    return results
