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
        cfg.seed if randomized else None,  # deterministic transforms need no seeding (~25 us/image)
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


def _train(
    cfg: TrainConfig, run_dir: Path, accelerator: Accelerator, written: list[Path]
) -> dict[str, Any]:
    """The run of :func:`train` in its locked folder; appends to ``written`` what it creates."""
    procs = accelerator.num_processes
    if accelerator.is_main_process:
        check_run_dir(run_dir, cfg.resume, cfg.overwrite)
    set_seed(cfg.seed)
    cfg, model, train_set, val_set = prepare_training(cfg)
    pin_memory = accelerator.device.type == "cuda"
    train_loader = create_train_loader(train_set, cfg, pin_memory)
    sampler = train_loader.sampler
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

    start_epoch, skip_steps, global_step, partial, saved_step = 0, 0, 0, None, None
    if cfg.resume:
        if accelerator.is_main_process:
            _check_resumable(load_config(run_dir), cfg)
        state = load_resume_state(run_dir)
        _restore(state, model, optimizer, scheduler, run_dir / RESUME_FILE)
        start_epoch, skip_steps = state["epoch"], state["step_in_epoch"]
        global_step = saved_step = state["global_step"]
        partial = _resumed_epoch_stats(
            state["epoch_stats"], accelerator.process_index, accelerator.num_processes
        )
    # every check has passed: from here on the run writes into its folder
    if accelerator.is_main_process:
        if cfg.resume:
            _trim_metrics(run_dir / METRICS_FILE, global_step)
        else:
            if cfg.overwrite:  # none of the replaced run's files may mix with this run's
                remove_paths(run_files(run_dir))
            names = (TRAIN_CONFIG_FILE, METRICS_FILE, TENSORBOARD_DIR)
            written.extend(run_dir / name for name in names)
            (run_dir / METRICS_FILE).write_text("")
        save_config(run_dir, cfg.to_dict())
    accelerator.wait_for_everyone()

    model, optimizer, train_loader, val_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader
    )
    if cfg.resume:
        set_rng_state(state["rng"])
        if accelerator.scaler is not None and "scaler" in state:
            accelerator.scaler.load_state_dict(state["scaler"])
    if cfg.tensorboard:
        # TensorBoard's hparams take scalars and strings only
        hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in cfg.to_dict().items()
        }
        accelerator.init_trackers("tensorboard", config=hparams)

    steps_per_epoch = len(train_loader)
    final: dict[str, Any] = {}
    stopped_early = False

    def diverged(what: str) -> TrainingDivergedError:  # during the loop's current epoch
        advice = "lower lr (or check the data) and start again"
        kept = (
            f"{run_dir} keeps the checkpoint of step {saved_step}: {advice} with --overwrite"
            if saved_step is not None
            else f"nothing was saved: {advice}"
        )
        return TrainingDivergedError(
            f"training diverged: {what} at epoch {epoch + 1}, step {global_step} "
            f"(lr {scheduler.get_last_lr()[0]:g}); {kept}"
        )

    def checkpoint(epoch: int, step_in_epoch: int, stats: list[list[float]]) -> None:
        nonlocal saved_step
        broken = non_finite_tensors(accelerator.unwrap_model(model).state_dict())
        if broken:  # the weights are the same on every process: each stops here
            raise diverged(f"weights {', '.join(broken[:3])} became non-finite")
        saved_step = global_step
        if not accelerator.is_main_process:
            return
        state = dict(
            model=accelerator.unwrap_model(model).state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            global_step=global_step,
            epoch_stats=stats,
            rng=rng_state(),
        )
        if accelerator.scaler is not None:
            state["scaler"] = accelerator.scaler.state_dict()
        save_resume_state(run_dir, state)

    with stop_on_signal() as signal_flag:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.epoch = train_set.epoch = epoch
            loader = train_loader
            if skip_steps:
                loader = accelerator.skip_first_batches(train_loader, skip_steps)
            # local sums over this process: loss * n, correct, n (a resumed epoch starts from the saved ones)
            stats = torch.tensor(partial if partial else [0.0, 0.0, 0.0], dtype=torch.float64)
            partial = None
            model.train()
            bar = tqdm(
                total=steps_per_epoch,
                initial=skip_steps,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not (cfg.progress and accelerator.is_local_main_process),
                dynamic_ncols=True,
            )
            step_in_epoch, tic, seen_since_tic = skip_steps, time.perf_counter(), 0
            skip_steps, stop = 0, False
            for images, targets in loader:
                logits = model(normalize_batch(images, cfg.mean, cfg.std))
                loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                if step_scheduler:
                    scheduler.step()
                global_step += 1
                step_in_epoch += 1
                n = targets.numel()
                loss_value = loss.item()
                stats += torch.tensor(
                    [loss_value * n, (logits.argmax(1) == targets).sum().item(), n],
                    dtype=torch.float64,
                )
                seen_since_tic += n * procs
                bar.update(1)
                if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch:
                    bar.set_postfix(
                        loss=f"{stats[0] / stats[2]:.3f}",
                        acc=f"{100 * stats[1] / stats[2]:.1f}",
                        img_s=f"{seen_since_tic / (time.perf_counter() - tic):.0f}",
                    )
                stop = (cfg.max_steps is not None and global_step >= cfg.max_steps) or signal_flag[
                    "stop"
                ]
                failed = not math.isfinite(loss_value)
                if procs > 1:  # every process must stop (or fail) at the same step
                    flags = torch.tensor([stop, failed], dtype=torch.float32)
                    flags = accelerator.reduce(flags.to(accelerator.device), "max").tolist()
                    stop, failed = bool(flags[0]), bool(flags[1])
                if failed:
                    bar.close()
                    raise diverged(f"the training loss became {loss_value}")
                if stop and step_in_epoch < steps_per_epoch:
                    bar.close()
                    # every process's own sums, so that the resumed epoch adds up as one run would
                    per_process = accelerator.gather(stats.to(accelerator.device)[None]).cpu()
                    checkpoint(epoch, step_in_epoch, per_process.tolist())
                    stopped_early = True
                    break
            if stopped_early:
                break
            bar.close()
            elapsed = time.perf_counter() - tic
            if not step_scheduler:
                scheduler.step()
            totals = accelerator.reduce(stats.to(accelerator.device), "sum").cpu()
            record = dict(
                epoch=epoch + 1,
                step=global_step,
                lr=scheduler.get_last_lr()[0],  # for the next step
                train_loss=float(totals[0] / totals[2]),
                train_acc=float(100 * totals[1] / totals[2]),
                **evaluate(model, val_loader, accelerator, cfg.mean, cfg.std),
                images_per_s=seen_since_tic / elapsed,
                epoch_time_s=elapsed,
            )
            if not math.isfinite(record["val_loss"]):  # finite weights, non-finite outputs
                raise diverged(f"the validation loss became {record['val_loss']}")
            final = record
            if accelerator.is_main_process:
                with (run_dir / METRICS_FILE).open("a") as log:
                    log.write(json.dumps(record) + "\n")
            accelerator.log(
                {k: v for k, v in record.items() if k not in ("epoch", "step")}, step=global_step
            )
            accelerator.print(
                f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {record['train_acc']:.2f}% | val loss {record['val_loss']:.4f} "
                f"acc {record['val_acc']:.2f}% | {record['images_per_s']:.0f} img/s"
            )
            checkpoint(epoch + 1, 0, [])
            if stop:
                stopped_early = epoch + 1 < cfg.epochs
                break

    if accelerator.is_main_process and not stopped_early:
        data_config = dict(
            input_size=(cfg.in_chans, cfg.img_size, cfg.img_size),
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            crop_pct=cfg.crop_pct if cfg.crop == "rrc" else 1.0,
            interpolation=cfg.interpolation,
        )
        model_config: dict[str, Any] = {}
        classes = getattr(_unsubset(train_set.dataset), "classes", None)
        if classes and len(classes) == cfg.num_classes:
            model_config["label_names"] = list(classes)
        if cfg.convert:
            # the architecture in config.json is the unconverted one: record how to rebuild it
            model_config[CONVERSION_KEY] = dict(scope=cfg.convert, **cfg.convert_kwargs)
        save_model_folder(accelerator.unwrap_model(model), run_dir, data_config, model_config)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if stopped_early:
        accelerator.print(
            f"stopped at step {global_step}; continue with --resume --output {run_dir}"
        )
    return dict(final, run_dir=str(run_dir), global_step=global_step, stopped_early=stopped_early)
