"""What the ``demo`` and ``study`` commands share: their settings and presets, the Fashion-MNIST data
and its corrupted copy, the training recipe of a cell, and the names of the paired tests.

Both train small models on Fashion-MNIST (Xiao et al., 2017; 28x28 grey, read from Debian's
``dataset-fashion-mnist`` files) with the package's trainer and benchmark them on a seeded subset
of its test images; :mod:`.demo` compares one run per model, :mod:`.study` a declared grid over
training seeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data.idx import FASHION_MNIST_SYSTEM_DIR, IdxImageDataset
from .errors import MissingFileError
from .models._cfg import DEMO_FMNIST, DEMO_FMNIST_MODELS

if TYPE_CHECKING:
    from .robustness.results import UnitOutcomes

FMNIST_MEAN, FMNIST_STD = [0.2860], [0.3530]
APT_PACKAGE = "dataset-fashion-mnist"
SEED = 0  # the test subset and the corrupted images every model of both commands is tested on
SHIFT_TEST, SWEEP_SUFFIX = "shift consistency", " noise sweep"  # names of the paired tests


@dataclass(frozen=True)
class ExperimentSettings:
    """How much of Fashion-MNIST each phase of a ``demo`` or ``study`` run uses."""

    name: str
    lenet_train_samples: int | None  # None = all 60000
    lenet_epochs: int
    resnet_train_samples: int | None
    resnet_epochs: int
    test_samples: int  # clean accuracy and every robustness test use these test images
    corruptions: tuple[str, ...] | None = None  # None = all 19 (15 standard + 4 extra)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    noise_levels: dict[str, list[float]] = field(default_factory=dict)  # {} = evaluate.py's levels
    eval_batch_size: int = 300
    workers: int = 0  # data loader processes for training


# The presets of both commands, defined here and nowhere else; what each run costs on a 2-core CPU
# is in BENCHMARKS.md ("Training throughput", "Study sizing").

# The demo, sized for < 20 minutes on 2 CPU cores; the benchmark classifies each test image about
# 120 times (19 corruptions x 5 severities, 3 noise sweeps x 7 levels, the shift pair, the clean
# image), and the paired verdicts read the per-image outcomes of that same robustness pass,
# classifying nothing again.
DEMO_FULL = ExperimentSettings(
    name="full",
    lenet_train_samples=None,
    lenet_epochs=2,
    resnet_train_samples=16_000,
    resnet_epochs=1,
    test_samples=300,
)
# checks the whole pipeline in about a minute; its models are barely trained
DEMO_QUICK = ExperimentSettings(
    name="quick",
    lenet_train_samples=512,
    lenet_epochs=1,
    resnet_train_samples=128,
    resnet_epochs=1,
    test_samples=64,
    corruptions=("gaussian_noise", "impulse_noise", "defocus_blur", "contrast"),
    severities=(1, 3, 5),
    noise_levels=dict(gaussian=[0.0, 0.03], speckle=[0.0, 0.03], contrast_poisson=[0.5, 1.0]),
    eval_batch_size=64,
)

# The study, sized to its budget of about 5 hours on a 2-core machine (two single-threaded
# workers), but for its resnet_plateau group, which trains to a plateau and sets its own sizes: the
# ResNet cells train on 10,000 images for 3 epochs and are tested on fewer images (the group's own
# test subset) because ResNet-20's training and its 19 corruptions are what cost most. The report's
# training curves show how close each model is to its plateau at these lengths.
STUDY_FULL = ExperimentSettings(
    name="full",
    lenet_train_samples=None,
    lenet_epochs=4,
    resnet_train_samples=10_000,
    resnet_epochs=3,
    test_samples=10_000,
    eval_batch_size=500,
)
# seconds: a check of the pipeline, barely trained models, 2 cells x 2 seeds per group
STUDY_QUICK = ExperimentSettings(
    name="quick",
    lenet_train_samples=256,
    lenet_epochs=1,
    resnet_train_samples=128,  # the recipe's batch size
    resnet_epochs=1,
    test_samples=64,
    corruptions=("gaussian_noise", "contrast"),
    severities=(1, 3),
    eval_batch_size=64,
)
# The papers' scale, for a machine with more cores: every model trained towards its plateau on all
# 60,000 training images and every group tested on all 10,000 test images.
STUDY_LARGE = replace(
    STUDY_FULL, name="large", lenet_epochs=20, resnet_train_samples=None, resnet_epochs=30
)
STUDY_SCALES = {settings.name: settings for settings in (STUDY_QUICK, STUDY_FULL, STUDY_LARGE)}


def ensure_fashion_mnist(data_dir: str | Path | None) -> Path:
    """The folder with Fashion-MNIST's IDX files; installs Debian's package when it is missing and
    this is a root shell with apt-get (announced, never silent)."""
    folder = Path(data_dir) if data_dir else FASHION_MNIST_SYSTEM_DIR
    if (folder / "t10k-labels-idx1-ubyte.gz").is_file() or (
        folder / "t10k-labels-idx1-ubyte"
    ).is_file():
        return folder
    install = ["apt-get", "install", "-y", APT_PACKAGE]
    if data_dir is None and shutil.which("apt-get") and os.geteuid() == 0:
        print(f"Fashion-MNIST is missing: running `{' '.join(install)}`", flush=True)
        subprocess.run(install, check=True)
        if (folder / "t10k-labels-idx1-ubyte.gz").is_file():
            return folder
    raise MissingFileError(
        f"no Fashion-MNIST IDX files in {folder}. Install them with `sudo {' '.join(install)}` "
        "(Debian/Ubuntu), or pass --data-dir with the four *-idx*-ubyte.gz files."
    )


def training_overrides(model: str, family: str, settings: ExperimentSettings, data_dir: Path,
                       run_dir: Path, resume: bool, progress: bool, seed: int = SEED,
                       model_kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """(recipe, overrides) for one model of the ``lenet`` or ``resnet`` family: the papers'
    recipes, shortened to the settings' budget, with the study's seeds and model kwargs."""
    common = dict(
        # the demo models' tag carries their pretrained cfg (Fashion-MNIST normalisation, Hub id);
        # the study's other models have no such tag and get the same values from the overrides
        model=f"{model}.{DEMO_FMNIST}" if model in DEMO_FMNIST_MODELS else model,
        dataset="fashion_mnist",
        data_dir=str(data_dir),
        num_classes=10,
        in_chans=1,
        img_size=28,
        mean=FMNIST_MEAN,
        std=FMNIST_STD,
        val_samples=settings.test_samples,
        eval_batch_size=settings.eval_batch_size,
        sched="cosine",  # a short run: anneal to zero per step instead of the papers' milestones
        workers=settings.workers,
        model_kwargs=dict(model_kwargs or {}),
        seed=seed,
        cpu=True,
        output=str(run_dir),
        resume=resume,
        progress=progress,
    )
    if family == "lenet":
        return "lenet_mnist", dict(
            common,
            train_samples=settings.lenet_train_samples,
            epochs=settings.lenet_epochs,
            lr=0.05,
        )
    return "cifar_resnet", dict(
        common,
        train_samples=settings.resnet_train_samples,
        epochs=settings.resnet_epochs,
        crop="none",
        hflip=0.5,
        lr=0.1,
        weight_decay=5e-4,
    )


def seeded_test_images(data_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The test images (uint8 [N, 28, 28]) and labels of the seeded subset (seed 0) every model is
    evaluated on. The trainer validates on the subset its training seed draws: these images for
    the demo's seed-0 runs and for all 10,000, other images for the study's other seeds."""
    from .data import subset

    test = IdxImageDataset(data_dir, "test")
    chosen = subset(test, count, SEED)
    indices = getattr(chosen, "indices", range(len(test)))
    index = np.asarray(list(indices))
    return test.data[index], test.targets[index]


def build_corrupted_set(
    images: np.ndarray,
    labels: np.ndarray,
    folder: Path,
    corruptions: Sequence[str],
    severities: Sequence[int],
) -> None:
    """Write Fashion-MNIST-C in the CIFAR-10-C layout: ``<corruption>.npy`` uint8 [5N, H, W, 1] + labels.

    Generated once and shared by every model, so all are tested on the very same corrupted images.
    Severities the run skips are stored as copies of the clean images (never read).
    """
    from .robustness.corruptions import corrupt

    folder.mkdir(parents=True, exist_ok=True)
    clean = torch.from_numpy(images).float().div(255).unsqueeze(1)
    for name in corruptions:
        path = folder / f"{name}.npy"
        if path.is_file():
            continue
        stack = []
        for severity in range(1, 6):
            out = (
                corrupt(clean, name, severity, scale="cifar", seed=SEED)
                if severity in severities
                else clean
            )
            stack.append(out.mul(255).round().to(torch.uint8).squeeze(1).unsqueeze(-1).numpy())
        tmp = folder / f".{name}.npy.tmp"
        with tmp.open("wb") as f:
            np.save(f, np.concatenate(stack))
        os.replace(tmp, path)
    np.save(folder / "labels.npy", labels.astype(np.int64))


def load_trained_model(folder: Path) -> torch.nn.Module:
    """The model of a training run folder (or a Hub folder), in eval mode."""
    import timm

    import timm_pushpull  # noqa: F401  (registers the architectures local-dir: builds)

    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


def outcomes_by_test(outcomes: Mapping[str, UnitOutcomes]) -> dict[str, UnitOutcomes]:
    """The paired tests (``clean``, each corruption, ``<sweep> noise sweep``, ``shift
    consistency``) from a run's per-image outcomes, by :func:`~.robustness.results.unit_key`."""
    tests = {}
    for key, unit in outcomes.items():
        section, _, name = key.partition("/")
        if section == "clean_error":
            tests["clean"] = unit
        elif section == "corruptions":
            tests[name] = unit
        elif section == "noise_sweeps":
            tests[f"{name}{SWEEP_SUFFIX}"] = unit
        elif section == "shift":
            tests[SHIFT_TEST] = unit
    return tests
