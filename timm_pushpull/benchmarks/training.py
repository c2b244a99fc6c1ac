"""Training throughput on this machine: images/s of a train step (forward, backward, SGD) for the
baseline and push-pull models, and what the data pipeline costs on top of it.

Per setting: the step alone on a fixed batch, the trainer's loader alone (read, augment, collate,
normalise) and the two together, as :func:`timm_pushpull.training.trainer.train` runs them.
``overhead`` is how much longer the full loop takes than the step alone; a loader slower than the
step is a bug. ``timm-pushpull bench --section training`` runs :func:`run`.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F

from ..data import normalize_batch
from ..training.config import TrainConfig, build_config
from ..training.trainer import create_datasets, create_train_loader


@dataclass(frozen=True)
class Setting:
    """A model trained with a recipe's data pipeline (CIFAR recipes read random CIFAR-layout files)."""

    model: str
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def pipeline(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        return self.recipe + (f" ({extra})" if extra else "")


SETTINGS = (
    Setting("lenet5_a", "lenet_mnist"),
    Setting("lenet5_a_pp", "lenet_mnist"),
    Setting("resnet20", "cifar_resnet"),
    Setting("resnet20_pp", "cifar_resnet"),
    Setting("resnet20_pp_b1", "cifar_resnet"),
    Setting("resnet20", "cifar_wrn_aa_cutout"),
)


def _write_cifar_batches(root: Path, count: int) -> None:
    """Random images in CIFAR-10's python-batch layout, read back through the real CIFAR reader."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_batch = -(-count // 5)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        with (folder / name).open("wb") as f:
            pickle.dump({"data": data, "labels": rng.integers(0, 10, per_batch).tolist()}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)


def _timed_steps(model, optimizer, batches: Iterable, cfg: TrainConfig) -> tuple[int, float]:
    seen, tic = 0, time.perf_counter()
    for images, targets in batches:
        if images.dtype == torch.uint8:
            images = normalize_batch(images, cfg.mean, cfg.std)
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(targets)
    return seen, time.perf_counter() - tic


def measure(
    setting: Setting, cifar_root: Path, batch_size: int, steps: int, workers: Sequence[int]
) -> list[dict]:
    """Images/s of the step alone, then of the loader alone and of both per worker count."""
    overrides = dict(
        model=setting.model,
        batch_size=batch_size,
        train_samples=batch_size * steps,
        **setting.overrides,
    )
    if setting.recipe.startswith("cifar"):
        overrides["data_dir"] = str(cifar_root)
    cfg = build_config(setting.recipe, overrides)
    torch.manual_seed(0)
    train_set, _ = create_datasets(cfg)
    model = timm.create_model(cfg.model, num_classes=cfg.num_classes, in_chans=cfg.in_chans)
    optimizer = torch.optim.SGD(model.train().parameters(), lr=0.01, momentum=0.9)
    shape = (cfg.in_chans, cfg.img_size, cfg.img_size)
    fixed = (torch.randn(batch_size, *shape), torch.randint(0, cfg.num_classes, (batch_size,)))
    _timed_steps(model, optimizer, [fixed] * 2, cfg)  # warm-up: allocator, oneDNN kernels
    n, step_s = _timed_steps(model, optimizer, [fixed] * steps, cfg)
    rows = []
    for count in workers:
        loader = create_train_loader(train_set, replace(cfg, workers=count))
        tic = time.perf_counter()
        loaded = sum(len(normalize_batch(x, cfg.mean, cfg.std)) for x, _ in loader)
        loader_s = time.perf_counter() - tic
        n_loop, loop_s = _timed_steps(model, optimizer, loader, cfg)
        rows.append(
            dict(
                model=setting.model,
                pipeline=setting.pipeline,
                input="x".join(map(str, shape)),
                workers=count,
                step=n / step_s,
                loader=loaded / loader_s,
                loop=n_loop / loop_s,
                overhead=(loop_s / n_loop) / (step_s / n) - 1,
            )
        )
    return rows


def format_table(rows: Sequence[dict], batch_size: int) -> str:
    lines = [
        f"Training throughput, images/s (batch {batch_size}, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__})",
        "",
        "| model | recipe data pipeline | input | loader workers | train step alone | "
        "loader alone | loader + step | data overhead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['pipeline']} | {r['input']} | {r['workers']} | {r['step']:.0f} | "
            f"{r['loader']:.0f} | {r['loop']:.0f} | {100 * r['overhead']:+.0f}% |"
        )
    return "\n".join(lines)


def run(
    settings: Sequence[Setting] = SETTINGS,
    batch_size: int = 128,
    steps: int = 10,
    workers: Sequence[int] = (0, 2),
) -> list[dict]:
    """Measure every setting side by side in this process; returns the rows (see ``format_table``)."""
    with tempfile.TemporaryDirectory() as tmp:
        if any(s.recipe.startswith("cifar") for s in settings):
            _write_cifar_batches(Path(tmp), batch_size * steps)
        rows = [r for s in settings for r in measure(s, Path(tmp), batch_size, steps, workers)]
    return rows
