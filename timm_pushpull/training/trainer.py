"""The training loop: Accelerate for devices, processes and mixed precision; timm for models and
optimizers; exact resume from ``checkpoint.pth``.

The same code runs on a CPU, one GPU, or many GPUs/nodes (``accelerate launch`` / ``torchrun``).
Batches are split over processes (``split_batches``): ``batch_size`` is the global batch, so N
processes take the same optimisation steps as one, and the data order and augmentation of every
sample are functions of (seed, epoch, index) only (:mod:`timm_pushpull.data.reproducible`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..constants import CONVERSION_KEY
from ..data import (
    EpochShuffleSampler,
    SeededTransformDataset,
    collate_uint8,
    create_dataset,
    create_eval_transform,
    create_train_transform,
    normalize_batch,
    subset,
)
from ..errors import CheckpointError, InvalidArgumentError, TrainingDivergedError, UserError
from ..factory import create_model
from ..locking import exclusive_folder
from ..models._cfg import current_model_name
from .checkpoint import (
    METRICS_FILE,
    RESUME_FILE,
    TENSORBOARD_DIR,
    TRAIN_CONFIG_FILE,
    check_run_dir,
    load_config,
    load_resume_state,
    remove_paths,
    rng_state,
    run_files,
    save_config,
    save_model_folder,
    save_resume_state,
    set_rng_state,
    write_text_atomic,
)
from .config import RUN_CONTROL_FIELDS, TrainConfig, with_model_data_config


def default_run_dir(cfg: TrainConfig, recipe: str | None) -> Path:
    """``runs/<model>-<recipe>``: deterministic, so every process agrees on it and a second run
    with the same name is refused instead of silently getting a fresh folder."""
    name = f"{cfg.model_name}-{Path(recipe).stem if recipe else 'custom'}"
    return Path("runs") / re.sub(r"[^\w.+-]+", "_", name)


def create_train_model(cfg: TrainConfig) -> torch.nn.Module:
    """The model to train: ``cfg.model`` from timm, or started from ``cfg.init_from`` weights, then
    optionally converted to push-pull (``cfg.convert`` scope).

    ``init_from`` is a weights file (``.safetensors``, or ``.pth`` read with
    ``weights_only=True``), a timm model folder, a timm model name (``resnet50.a1_in1k``: its
    pretrained weights) or ``hf-hub:ORG/NAME`` (from the Hugging Face cache when offline). With
    ``model`` set, the weights go into ``model`` through its pretrained filter, which maps timm's
    ResNet keys onto the push-pull ones (push kernels from the conv weights); without it,
    ``init_from`` names the architecture too.

    Arguments the model or the conversion refuses (TypeError, ValueError) are a one-line
    :class:`~.errors.InvalidArgumentError` naming the settings that carried them."""
    try:
        return _create_train_model(cfg)
    except UserError:
        raise
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(
            f"model {cfg.model_name} (model_kwargs {cfg.model_kwargs}, convert {cfg.convert}, "
            f"convert_kwargs {cfg.convert_kwargs}): {type(error).__name__}: {error}"
        ) from None


def _create_train_model(cfg: TrainConfig) -> torch.nn.Module:
    kwargs = dict(num_classes=cfg.num_classes, **cfg.model_kwargs)
    if cfg.in_chans is not None:  # else the model's own, which its pretrained_cfg describes
        kwargs["in_chans"] = cfg.in_chans
    source = cfg.init_from
    if source is None:
        model = create_model(cfg.model_name, pretrained=cfg.pretrained, **kwargs)
    elif Path(source).is_file():
        if not cfg.model:
            raise InvalidArgumentError(
                f"init_from={source!r} is a weights file: set model to its architecture"
            )
        overlay = dict(file=str(Path(source).resolve()))
        model = create_model(cfg.model, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    else:
        if Path(source).is_dir():
            source = f"local-dir:{source}"
        elif "/" in source and not source.startswith("hf-hub:"):
            raise InvalidArgumentError(
                f"init_from={source!r} is not a file or folder; a Hugging Face Hub model is "
                f"written hf-hub:ORG/NAME"
            )
        if not cfg.model:
            model = create_model(source, pretrained=True, **kwargs)
        else:
            # the source as timm builds it, with our classes so that its head fits (timm resets
            # a head of another size); timm adapts the first conv to in_chans when loading
            donor = create_model(source, pretrained=True, num_classes=cfg.num_classes)
            overlay = dict(state_dict=donor.state_dict())
            del donor
            model = create_model(
                cfg.model, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
            )
            # timm keeps the overlay in pretrained_cfg: do not hold a second copy of the weights
            model.pretrained_cfg.pop("state_dict", None)
    if cfg.convert:
        from ..layers import convert_to_pushpull
        from ..layers.surgery import SCOPES

        scope = cfg.convert if cfg.convert in SCOPES else cfg.convert.split(",")
        convert_to_pushpull(model, scope=scope, **cfg.convert_kwargs)
    return model


def _unsubset(dataset: Dataset) -> Dataset:
    """The dataset under a ``train_samples`` subset: the one that knows the class names (an HF
    dataset wrapper's own ``.dataset`` is the HF table, which does not)."""
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def open_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """(training split, evaluation split) as stored, ``train_samples``/``val_samples`` subsets
    taken; the transforms come with :func:`create_datasets`. Empty splits, subsets larger than
    their split and a batch larger than the training images are refused."""
    data = dict(root=cfg.data_dir, download=cfg.download)
    opened = []
    for option, split in (("train_samples", cfg.train_split), ("val_samples", cfg.val_split)):
        dataset = create_dataset(cfg.dataset, split=split, **data)
        where = f"the {split!r} split of dataset {cfg.dataset!r}"
        if len(dataset) == 0:
            raise InvalidArgumentError(f"{where} holds no images")
        samples = getattr(cfg, option)
        if samples is not None and samples > len(dataset):
            raise InvalidArgumentError(
                f"{option}={samples}; allowed: at most the {len(dataset)} images of {where}"
            )
        opened.append(subset(dataset, samples, cfg.seed))
    train_set, val_set = opened
    if len(train_set) < cfg.batch_size:
        # every optimizer step takes a full (global) batch and drops the rest of an epoch, as the
        # papers' recipes do: a batch larger than the data would leave epochs of no step at all
        raise InvalidArgumentError(
            f"batch_size={cfg.batch_size} is larger than the {len(train_set)} training images; "
            "allowed: at most the number of training images"
        )
    return train_set, val_set


def _labels(dataset: Dataset) -> np.ndarray | None:
    """The labels of ``dataset`` (a split, or a ``Subset`` of one) where it holds them as a list."""
    base = _unsubset(dataset)
    targets = getattr(base, "targets", None)
    if targets is None:
        return None
    targets = np.asarray(targets)
    return targets[np.asarray(dataset.indices)] if isinstance(dataset, Subset) else targets


def with_dataset_classes(cfg: TrainConfig, train_set: Dataset, val_set: Dataset) -> TrainConfig:
    """``cfg`` with ``num_classes`` from the dataset's classes when unset; a ``num_classes`` that
    differs from the classes the dataset names, or labels outside [0, num_classes), are refused
    (naming both numbers) before the model is built."""
    base = _unsubset(train_set)
    classes = getattr(base, "classes", None)
    declared = len(classes) if classes else None
    if cfg.num_classes is None:
        if declared is None:
            raise InvalidArgumentError(
                f"dataset {cfg.dataset!r} does not name its classes: set num_classes"
            )
        cfg = dataclasses.replace(cfg, num_classes=declared)
    elif declared is not None and declared != cfg.num_classes:
        raise InvalidArgumentError(
            f"dataset {cfg.dataset!r} has {declared} classes but num_classes={cfg.num_classes}: "
            f"set num_classes={declared} (or leave it unset to follow the dataset)"
        )
    for split, dataset in ((cfg.train_split, train_set), (cfg.val_split, val_set)):
        labels = _labels(dataset)
        if labels is not None and (labels.min() < 0 or labels.max() >= cfg.num_classes):
            raise InvalidArgumentError(
                f"the {split!r} split of dataset {cfg.dataset!r} has labels {labels.min()} to "
                f"{labels.max()}; num_classes={cfg.num_classes} allows 0 to {cfg.num_classes - 1}"
            )
    return cfg


def create_datasets(
    cfg: TrainConfig, opened: tuple[Dataset, Dataset] | None = None
) -> tuple[SeededTransformDataset, SeededTransformDataset]:
    """(training set with seeded augmentation, evaluation set) as the recipe describes them, from
    ``opened`` (:func:`open_datasets`) or opened here; the data fields of ``cfg`` must be set."""
    common = dict(img_size=cfg.img_size, in_chans=cfg.in_chans, crop=cfg.crop)
    train_tf = create_train_transform(
        **common,
        mean=cfg.mean,
        padding=cfg.padding,
        hflip=cfg.hflip,
        auto_augment=cfg.auto_augment,
        cutout=cfg.cutout,
        color_jitter=cfg.color_jitter,
        interpolation=cfg.interpolation,
    )
    eval_tf = create_eval_transform(
        **common, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation
    )
    train_set, val_set = opened or open_datasets(cfg)
    randomized = (
        cfg.crop != "none" or cfg.hflip or cfg.auto_augment or cfg.cutout or cfg.color_jitter
    )
    train_set = SeededTransformDataset(
        train_set,
        train_tf,
        # deterministic transforms need no seeding, which costs time on every image
        # (BENCHMARKS.md, "Numbers once quoted in code comments")
        cfg.seed if randomized else None,
    )
    return train_set, SeededTransformDataset(val_set, eval_tf, None)


def _check_model_input(model: torch.nn.Module, val_set: Dataset, cfg: TrainConfig) -> None:
    """One evaluation image through ``model`` (in eval mode: no state or RNG touched), so that
    images the model cannot take fail here, naming the sizes, instead of in the first step."""
    images, _ = collate_uint8([val_set[0]])
    try:
        with torch.no_grad():
            model.eval()(normalize_batch(images, cfg.mean, cfg.std))
    except (RuntimeError, ValueError) as error:
        expected = getattr(model, "pretrained_cfg", {}).get("input_size")
        raise InvalidArgumentError(
            f"{cfg.model_name} fails on the {tuple(images.shape[1:])} images of this run "
            f"(in_chans={cfg.in_chans}, img_size={cfg.img_size}; its pretrained_cfg input_size "
            f"is {expected}): {str(error).splitlines()[0]}"
        ) from None
    finally:
        model.train()


def prepare_training(
    cfg: TrainConfig,
) -> tuple[TrainConfig, torch.nn.Module, SeededTransformDataset, SeededTransformDataset]:
    """(resolved config, model, training set, evaluation set) of ``cfg``, checked against each
    other before a run starts: ``num_classes`` from the dataset and the data fields from the
    model's pretrained_cfg where unset (:func:`~.config.with_model_data_config`), labels within
    ``num_classes``, one image of the pipeline through the model."""
    # the model first (its mistakes before the data's), unless the data must say how many classes
    model = None if cfg.num_classes is None else create_train_model(cfg)
    opened = open_datasets(cfg)
    cfg = with_dataset_classes(cfg, *opened)
    if model is None:
        model = create_train_model(cfg)
    cfg = with_model_data_config(cfg, model)
    train_set, val_set = create_datasets(cfg, opened)
    _check_model_input(model, val_set, cfg)
    return cfg, model, train_set, val_set


def create_train_loader(
    train_set: SeededTransformDataset, cfg: TrainConfig, pin_memory: bool = False
) -> DataLoader:
    """Full batches (global size) in the order of an :class:`EpochShuffleSampler` (set its and the
    dataset's ``epoch`` before each epoch), collated as uint8."""
    return DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=EpochShuffleSampler(len(train_set), seed=cfg.seed),
        drop_last=True,
        num_workers=cfg.workers,
        pin_memory=pin_memory,
        collate_fn=collate_uint8,
        # worker base seeds come from this generator, not the global RNG dropout draws from
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def create_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    extra = dict(nesterov=cfg.nesterov) if cfg.opt == "sgd" else {}
    return create_optimizer_v2(
        model,
        opt=cfg.opt,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        filter_bias_and_bn=cfg.filter_bias_and_bn,
        **extra,
    )


def create_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """(scheduler, stepped per optimizer step?): multistep milestones count epochs, as in the
    papers; cosine anneals to zero over every step of the run (smooth even for a 1-epoch run);
    onecycle (Smith & Topin, 2019, arXiv:1708.07120) warms up to ``lr`` over the first 30% of the
    steps and anneals far below it, which reaches a plateau in a few epochs."""
    if cfg.sched == "multistep":
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, gamma=cfg.gamma)
        return scheduler, False
    if cfg.sched == "cosine":
        total = cfg.epochs * steps_per_epoch
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if cfg.sched == "onecycle":
        # the recipe's momentum stays fixed: cycling it would make the config say something else
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, cycle_momentum=False
        )
        return scheduler, True
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), False


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    accelerator: Accelerator,
    mean: Sequence[float],
    std: Sequence[float],
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over the whole (gathered) evaluation set."""
    model.eval()
    loss_sum = correct = count = 0.0
    for images, targets in loader:
        logits = model(normalize_batch(images, mean, std))
        losses = F.cross_entropy(logits.float(), targets, reduction="none")
        hits = (logits.argmax(dim=1) == targets).float()
        losses, hits = accelerator.gather_for_metrics((losses, hits))
        loss_sum += losses.sum().item()
        correct += hits.sum().item()
        count += hits.numel()
    return dict(val_loss=loss_sum / max(count, 1), val_acc=100.0 * correct / max(count, 1))


@contextmanager
def stop_on_signal() -> Iterator[dict[str, bool]]:
    """First SIGINT/SIGTERM: finish the current step, save a checkpoint and stop; a second: abort."""
    flag = {"stop": False}
    previous = {}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig) -> None:
    current = cfg.to_dict()
    # a run started with a deprecated tag's name resumes under the new one, and the reverse
    for settings in (saved, current):
        if isinstance(settings.get("model"), str):
            settings["model"] = current_model_name(settings["model"])
    changed = {
        k: (saved.get(k), current[k])
        for k in current
        if k not in RUN_CONTROL_FIELDS and saved.get(k) != current[k]
    }
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise InvalidArgumentError(f"resume: the run was started with other settings ({detail})")


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [
        name
        for name, tensor in state_dict.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]


def _restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    path: Path,
) -> None:
    """Load a resume state into the run's objects; a state that does not fit them (another model,
    edited or damaged entries, non-finite weights) is a :class:`~.errors.CheckpointError`."""
    try:
        broken = non_finite_tensors(state["model"])
        if broken:
            raise ValueError(f"non-finite weights in {', '.join(broken[:3])}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        current = rng_state()
        set_rng_state(state["rng"])  # the format is checked here; it is set again after prepare
        set_rng_state(current)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"resume: {path} does not fit this run ({type(error).__name__}: {message}); "
            "start again with --overwrite, or restore the file"
        ) from None


def _trim_metrics(path: Path, global_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again).

    A last line cut short is one a killed run was writing: it is after the checkpoint too."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append((int(json.loads(line)["step"]), line))
            except (ValueError, KeyError, TypeError):
                if number < len(lines):
                    raise CheckpointError(
                        f"resume: line {number} of {path} is not a metrics record"
                    ) from None
        kept = [line for step, line in records if step <= global_step]
        write_text_atomic(path, "".join(f"{ln}\n" for ln in kept))


def _resumed_epoch_stats(saved: list, rank: int, num_processes: int) -> list[float] | None:
    """This process's sums (loss * n, correct, n) of the epoch a checkpoint interrupted.

    ``saved`` holds one list per process of the interrupted run (empty at an epoch boundary). With
    as many processes now, each takes its own, so the epoch's totals add up in the same order as in
    an uninterrupted run; with another number, process 0 takes the whole sum (totals stay right).
    """
    if not saved:
        return None
    if not isinstance(saved[0], list):  # older checkpoints: the sums of process 0 only
        saved = [saved]
    if len(saved) == num_processes:
        return list(saved[rank])
    return [sum(column) for column in zip(*saved)] if rank == 0 else None


def train(cfg: TrainConfig, recipe: str | None = None) -> dict[str, Any]:
    """Train ``cfg`` and return the final metrics (with ``run_dir``); see the module docstring.

    The run holds its folder's lock (:func:`~timm_pushpull.locking.exclusive_folder`) from start
    to end: a second run on the same folder is refused at once, naming this one. Settings, paths,
    data, model and resume checkpoint are all checked before anything is written, and a run that
    fails before its first checkpoint takes back the files it wrote: the corrected rerun finds the
    folder as it was. Training that diverges stops with :class:`~.errors.TrainingDivergedError`,
    keeping the last checkpoint saved before it.
    """
    if cfg.tensorboard:
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise InvalidArgumentError(
                "tensorboard=true needs the tensorboard package: pip install tensorboard"
            )
    run_dir = Path(cfg.output) if cfg.output else default_run_dir(cfg, recipe)
    accelerator = Accelerator(
        cpu=cfg.cpu,
        mixed_precision=cfg.mixed_precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        # our sampler and augmentation are already identical on every process: nothing to sync
        rng_types=[],
        log_with="tensorboard" if cfg.tensorboard else None,
        project_dir=run_dir,
    )
    procs = accelerator.num_processes
    for name in ("batch_size", "eval_batch_size"):
        if getattr(cfg, name) % procs:
            raise InvalidArgumentError(
                f"{name}={getattr(cfg, name)}; allowed: a multiple of the {procs} processes"
            )
    written: list[Path] = []  # files this run created, while it has no checkpoint
    lock = exclusive_folder(run_dir, "--output") if accelerator.is_main_process else nullcontext()
    with lock:
        try:
            return _train(cfg, run_dir, accelerator, written)
        except BaseException:
            if not (run_dir / RESUME_FILE).is_file():
                remove_paths(written)
            raise


@dataclasses.dataclass(eq=False)
class _Run:
    """One training run in its locked folder: its resolved settings, its objects and how far it
    got, shared by the steps of :func:`_train` (set-up, resume, one epoch, evaluation, checkpoint,
    finish)."""

    cfg: TrainConfig  # resolved against the model and data (:func:`prepare_training`)
    run_dir: Path
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step_scheduler: bool  # the scheduler steps per optimizer step (else per epoch)
    train_set: SeededTransformDataset
    sampler: EpochShuffleSampler  # the training loader's, which the epoch is set on
    train_loader: DataLoader
    val_loader: DataLoader
    epoch: int = 0  # in progress, counted from 0
    skip_steps: int = 0  # steps of the first epoch already taken (a resumed run)
    global_step: int = 0
    saved_step: int | None = None  # global step of the last checkpoint (None: none yet)
    partial: list[float] | None = None  # this process's sums of an interrupted epoch (resumed)
    final: dict[str, Any] = dataclasses.field(default_factory=dict)  # last epoch's record
    stopped_early: bool = False

    def diverged(self, what: str) -> TrainingDivergedError:
        """The error of a run whose training diverged (``what``) in the current epoch."""
        advice = "lower lr (or check the data) and start again"
        kept = (
            f"{self.run_dir} keeps the checkpoint of step {self.saved_step}: {advice} with "
            "--overwrite"
            if self.saved_step is not None
            else f"nothing was saved: {advice}"
        )
        return TrainingDivergedError(
            f"training diverged: {what} at epoch {self.epoch + 1}, step {self.global_step} "
            f"(lr {self.scheduler.get_last_lr()[0]:g}); {kept}"
        )


@dataclasses.dataclass(frozen=True)
class _EpochSums:
    """What one process's epoch of training adds up to."""

    sums: torch.Tensor  # float64 [loss * n, correct, n] over this process's images
    images: int  # images of all processes
    seconds: float
    stop: bool  # asked to stop (max_steps, a signal) at the epoch's last step


def _train(
    cfg: TrainConfig, run_dir: Path, accelerator: Accelerator, written: list[Path]
) -> dict[str, Any]:
    """The run of :func:`train` in its locked folder; appends to ``written`` what it creates."""
    run = _set_up(cfg, run_dir, accelerator)
    state = _resume(run)
    _start_writing(run, written)  # every check has passed: from here on the run writes
    _prepare(run, state)
    with stop_on_signal() as signal_flag:
        for epoch in range(run.epoch, run.cfg.epochs):
            epoch_sums = _train_one_epoch(run, epoch, signal_flag)
            if epoch_sums is None:  # stopped within the epoch, its checkpoint saved
                run.stopped_early = True
                break
            _evaluate_epoch(run, epoch_sums)
            _save_checkpoint(run, epoch + 1, 0, [])
            if epoch_sums.stop:
                run.stopped_early = epoch + 1 < run.cfg.epochs
                break
    return _finish(run)


def _set_up(cfg: TrainConfig, run_dir: Path, accelerator: Accelerator) -> _Run:
    """The run's folder checked, then its model, data, loaders, optimizer and scheduler."""
    if accelerator.is_main_process:
        check_run_dir(run_dir, cfg.resume, cfg.overwrite)
    set_seed(cfg.seed)
    cfg, model, train_set, val_set = prepare_training(cfg)
    pin_memory = accelerator.device.type == "cuda"
    train_loader = create_train_loader(train_set, cfg, pin_memory)
    val_loader = DataLoader(
        val_set,
        batch_size=cfg.eval_batch_size,
        num_workers=cfg.workers,
        pin_memory=pin_memory,
        collate_fn=collate_uint8,
        generator=torch.Generator(),
    )
    optimizer = create_optimizer(model, cfg)
    scheduler, step_scheduler = create_scheduler(optimizer, cfg, len(train_loader))
    return _Run(
        cfg=cfg,
        run_dir=run_dir,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        step_scheduler=step_scheduler,
        train_set=train_set,
        sampler=train_loader.sampler,
        train_loader=train_loader,
        val_loader=val_loader,
    )


def _resume(run: _Run) -> dict[str, Any] | None:
    """The resume state of the run's folder loaded into its objects and position (checked first:
    same settings, a state that fits); None for a run that does not resume."""
    cfg, accelerator = run.cfg, run.accelerator
    if not cfg.resume:
        return None
    if accelerator.is_main_process:
        _check_resumable(load_config(run.run_dir), cfg)
    state = load_resume_state(run.run_dir)
    _restore(state, run.model, run.optimizer, run.scheduler, run.run_dir / RESUME_FILE)
    run.epoch, run.skip_steps = state["epoch"], state["step_in_epoch"]
    run.global_step = run.saved_step = state["global_step"]
    run.partial = _resumed_epoch_stats(
        state["epoch_stats"], accelerator.process_index, accelerator.num_processes
    )
    return state


def _start_writing(run: _Run, written: list[Path]) -> None:
    """The run's first writes: a resumed run's log trimmed to its checkpoint, a new run's files
    started (a replaced run's removed first); the settings saved. ``written``: what it creates."""
    cfg, run_dir = run.cfg, run.run_dir
    if run.accelerator.is_main_process:
        if cfg.resume:
            _trim_metrics(run_dir / METRICS_FILE, run.global_step)
        else:
            if cfg.overwrite:  # none of the replaced run's files may mix with this run's
                remove_paths(run_files(run_dir))
            names = (TRAIN_CONFIG_FILE, METRICS_FILE, TENSORBOARD_DIR)
            written.extend(run_dir / name for name in names)
            (run_dir / METRICS_FILE).write_text("")
        save_config(run_dir, cfg.to_dict())
    run.accelerator.wait_for_everyone()


def _prepare(run: _Run, state: dict[str, Any] | None) -> None:
    """The run's objects handed to Accelerate; a resumed run's random state and loss scaler set
    (after ``prepare``, which may draw); the trackers started."""
    accelerator = run.accelerator
    run.model, run.optimizer, run.train_loader, run.val_loader = accelerator.prepare(
        run.model, run.optimizer, run.train_loader, run.val_loader
    )
    if state is not None:
        set_rng_state(state["rng"])
        if accelerator.scaler is not None and "scaler" in state:
            accelerator.scaler.load_state_dict(state["scaler"])
    if run.cfg.tensorboard:
        # TensorBoard's hparams take scalars and strings only
        hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in run.cfg.to_dict().items()
        }
        accelerator.init_trackers("tensorboard", config=hparams)


def _train_step(
    run: _Run, images: torch.Tensor, targets: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """One optimizer step on a batch: (its loss, its sums ``[loss * n, correct, n]``)."""
    cfg = run.cfg
    logits = run.model(normalize_batch(images, cfg.mean, cfg.std))
    loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    if run.step_scheduler:
        run.scheduler.step()
    run.global_step += 1
    n = targets.numel()
    loss_value = loss.item()
    sums = torch.tensor(
        [loss_value * n, (logits.argmax(1) == targets).sum().item(), n], dtype=torch.float64
    )
    return loss_value, sums


def _train_one_epoch(run: _Run, epoch: int, signal_flag: dict[str, bool]) -> _EpochSums | None:
    """Epoch ``epoch`` of training (the rest of it, for a resumed run); None when the run stops
    within it (``max_steps``, a signal): its checkpoint is saved then. A loss that is not finite
    stops every process at the same step with :class:`~.errors.TrainingDivergedError`."""
    cfg, accelerator = run.cfg, run.accelerator
    run.epoch = run.sampler.epoch = run.train_set.epoch = epoch
    steps_per_epoch = len(run.train_loader)
    loader = run.train_loader
    if run.skip_steps:
        loader = accelerator.skip_first_batches(run.train_loader, run.skip_steps)
    # local sums over this process: loss * n, correct, n (a resumed epoch starts from the saved ones)
    stats = torch.tensor(run.partial if run.partial else [0.0, 0.0, 0.0], dtype=torch.float64)
    run.partial = None
    run.model.train()
    bar = tqdm(
        total=steps_per_epoch,
        initial=run.skip_steps,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not (cfg.progress and accelerator.is_local_main_process),
        dynamic_ncols=True,
    )
    step_in_epoch, tic, seen_since_tic = run.skip_steps, time.perf_counter(), 0
    run.skip_steps, stop = 0, False
    for images, targets in loader:
        loss_value, sums = _train_step(run, images, targets)
        step_in_epoch += 1
        stats += sums
        seen_since_tic += int(sums[2]) * accelerator.num_processes
        bar.update(1)
        if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch:
            bar.set_postfix(
                loss=f"{stats[0] / stats[2]:.3f}",
                acc=f"{100 * stats[1] / stats[2]:.1f}",
                img_s=f"{seen_since_tic / (time.perf_counter() - tic):.0f}",
            )
        stop = (cfg.max_steps is not None and run.global_step >= cfg.max_steps) or signal_flag[
            "stop"
        ]
        stop, failed = _every_process(accelerator, stop, not math.isfinite(loss_value))
        if failed:
            bar.close()
            raise run.diverged(f"the training loss became {loss_value}")
        if stop and step_in_epoch < steps_per_epoch:
            bar.close()
            # every process's own sums, so that the resumed epoch adds up as one run would
            per_process = accelerator.gather(stats.to(accelerator.device)[None]).cpu()
            _save_checkpoint(run, epoch, step_in_epoch, per_process.tolist())
            return None
    bar.close()
    elapsed = time.perf_counter() - tic
    if not run.step_scheduler:
        run.scheduler.step()
    return _EpochSums(stats, seen_since_tic, elapsed, stop)


def _every_process(accelerator: Accelerator, stop: bool, failed: bool) -> tuple[bool, bool]:
    """(stop, failed) of any process, so that every process stops (or fails) at the same step."""
    if accelerator.num_processes == 1:
        return stop, failed
    flags = torch.tensor([stop, failed], dtype=torch.float32)
    flags = accelerator.reduce(flags.to(accelerator.device), "max").tolist()
    return bool(flags[0]), bool(flags[1])


def _evaluate_epoch(run: _Run, epoch_sums: _EpochSums) -> None:
    """The record of the epoch just trained (training sums of all processes, evaluation set),
    appended to the metrics log, logged to the trackers and printed; a validation loss that is
    not finite raises :class:`~.errors.TrainingDivergedError`."""
    cfg, accelerator, epoch = run.cfg, run.accelerator, run.epoch
    totals = accelerator.reduce(epoch_sums.sums.to(accelerator.device), "sum").cpu()
    record = dict(
        epoch=epoch + 1,
        step=run.global_step,
        lr=run.scheduler.get_last_lr()[0],  # for the next step
        train_loss=float(totals[0] / totals[2]),
        train_acc=float(100 * totals[1] / totals[2]),
        **evaluate(run.model, run.val_loader, accelerator, cfg.mean, cfg.std),
        images_per_s=epoch_sums.images / epoch_sums.seconds,
        epoch_time_s=epoch_sums.seconds,
    )
    if not math.isfinite(record["val_loss"]):  # finite weights, non-finite outputs
        raise run.diverged(f"the validation loss became {record['val_loss']}")
    run.final = record
    if accelerator.is_main_process:
        with (run.run_dir / METRICS_FILE).open("a") as log:
            log.write(json.dumps(record) + "\n")
    accelerator.log(
        {k: v for k, v in record.items() if k not in ("epoch", "step")}, step=run.global_step
    )
    accelerator.print(
        f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:.2f}% | val loss {record['val_loss']:.4f} "
        f"acc {record['val_acc']:.2f}% | {record['images_per_s']:.0f} img/s"
    )


def _save_checkpoint(run: _Run, epoch: int, step_in_epoch: int, stats: list[list[float]]) -> None:
    """The resume state at ``step_in_epoch`` of ``epoch`` (``stats``: every process's sums of the
    epoch so far), saved by the first process; weights that are not finite are never saved
    (:class:`~.errors.TrainingDivergedError`, raised by every process alike)."""
    accelerator = run.accelerator
    broken = non_finite_tensors(accelerator.unwrap_model(run.model).state_dict())
    if broken:  # the weights are the same on every process: each stops here
        raise run.diverged(f"weights {', '.join(broken[:3])} became non-finite")
    run.saved_step = run.global_step
    if not accelerator.is_main_process:
        return
    state = dict(
        model=accelerator.unwrap_model(run.model).state_dict(),
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        epoch=epoch,
        step_in_epoch=step_in_epoch,
        global_step=run.global_step,
        epoch_stats=stats,
        rng=rng_state(),
    )
    if accelerator.scaler is not None:
        state["scaler"] = accelerator.scaler.state_dict()
    save_resume_state(run.run_dir, state)


def _finish(run: _Run) -> dict[str, Any]:
    """A run that trained all its epochs saves its model folder (weights, config with the data
    settings and label names); the final metrics with ``run_dir``, ``global_step`` and
    ``stopped_early``."""
    cfg, accelerator = run.cfg, run.accelerator
    if accelerator.is_main_process and not run.stopped_early:
        data_config = dict(
            input_size=(cfg.in_chans, cfg.img_size, cfg.img_size),
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            crop_pct=cfg.crop_pct if cfg.crop == "rrc" else 1.0,
            interpolation=cfg.interpolation,
        )
        model_config: dict[str, Any] = {}
        classes = getattr(_unsubset(run.train_set.dataset), "classes", None)
        if classes and len(classes) == cfg.num_classes:
            model_config["label_names"] = list(classes)
        if cfg.convert:
            # the architecture in config.json is the unconverted one: record how to rebuild it
            model_config[CONVERSION_KEY] = dict(scope=cfg.convert, **cfg.convert_kwargs)
        save_model_folder(
            accelerator.unwrap_model(run.model), run.run_dir, data_config, model_config
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if run.stopped_early:
        accelerator.print(
            f"stopped at step {run.global_step}; continue with --resume --output {run.run_dir}"
        )
    return dict(
        run.final,
        run_dir=str(run.run_dir),
        global_step=run.global_step,
        stopped_early=run.stopped_early,
    )
