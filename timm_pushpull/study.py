"""``timm-pushpull study``: the papers' push-pull and blur-pool experiments on Fashion-MNIST, over seeds.

Runs a declared grid (:data:`GROUPS`) of cells, each one (model, model kwargs, training seed):
train with the package's trainer (the demo's recipes, :func:`.demo._train_overrides`), then
:func:`~.robustness.evaluate.evaluate_model` on the Fashion-MNIST test set with the protocol of
the paper the group reproduces:

- ``lenet``: LeNet-5 A-D vs PA-PD (Strisciuglio et al., "Enhanced robustness of convolutional
  networks with a push-pull inhibition layer", NCAA 2020; its MNIST tables are in the
  supplementary material of the preprint, arXiv:1901.10208): Gaussian and speckle noise of
  variance 0..0.5 and Poisson noise after a contrast drop C = 1, 0.5, 0.4, 0.3, 0.2.
- ``h_alpha``: pull scale h x inhibition alpha of LeNet-5 PA (LeNet only), at evaluate's
  CIFAR-scale noise levels (Poisson noise after contrast changes C = 0.4-2.5).
- ``variants``: learned per-channel alpha, unrectified, SE / SimAM attention, multi-scale pull.
- ``resnet``: ResNet-20, _pp, _pp_b1, with and without anti-aliasing, briefly trained (10,000
  images, 3 epochs): the 19 corruptions, noise sweeps and shift consistency.
- ``resnet_plateau``: ResNet-20, _pp, _pp_b1 and +aa trained to a plateau (all 60,000 images,
  a one-cycle schedule), tested on 2,000 images: the same tests.
- ``blurpool``: LeNet-5 with blur-pool filters rect / tri / bin of size 2-7 (Zhang, "Making
  Convolutional Networks Shift-Invariant Again", ICML 2019): clean accuracy, shift consistency.

Every model is evaluated on the same test images with the same noise draws (evaluation seed 0),
so models of one training seed are compared image by image. Some cells of different labels train
the same model (e.g. ``A`` of ``lenet``, ``A cifar-levels`` and ``A no-blur``): the report counts
the distinct trainings by their weights. The output folder holds::

    study.json                      the grid and settings (another grid is refused here; one
                                    that only adds cells, e.g. seeds or groups, extends it)
    cells/<group>/<label>-s<seed>/  training/ (run folder), results.json, per_image.npz
    data/fashion-mnist-c-<n>/       the corrupted copies of the n test images of the groups
                                    tested on n images, shared by their cells
    report/README.md, report/*.png  tables (mean and 95% interval over seeds), paired
                                    comparisons, plots with error bands, the papers' numbers

A cell is finished when its results.json is present and valid; an interrupted cell restarts
(training from its last checkpoint, the evaluation from its last finished test).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .constants import METRICS_FILE, PER_IMAGE_FILE, RESULTS_FILE, WEIGHTS_FILE
from .demo import DemoSettings
from .errors import InvalidArgumentError, MissingFileError, OutputExistsError
from .locking import exclusive_folder, user_files

# The MNIST levels of the push-pull paper: variances on [0, 1] images, and contrast factors of
# the Poisson test. Its MNIST results are tables of the supplementary material of the preprint
# arXiv:1901.10208 (Tables 1-3, as issue 27 locates them), not of the journal (whose Tables 2-4
# are CIFAR results). The supplementary table heads its Poisson columns "0.5 / 1 / 1.5 / 2 / 2.5",
# which contradicts the journal's Fig. 5 and text (contrast falling 0.5 -> 0.2, accuracy falling
# with it); we follow the figure, and read the table's first column (accuracy ~ the clean one) as
# no contrast change, C = 1.
MNIST_VARIANCES = (0.0, 0.001, 0.01, 0.1, 0.2, 0.3, 0.4, 0.5)
MNIST_CONTRASTS = (1.0, 0.5, 0.4, 0.3, 0.2)
MNIST_NOISE_LEVELS = dict(
    gaussian=list(MNIST_VARIANCES),
    speckle=list(MNIST_VARIANCES),
    contrast_poisson=list(MNIST_CONTRASTS),
)

# The paper's accuracies (%, MNIST) at the levels above as issue 15 transcribed them (the paper
# itself was not reachable offline to check them), None where that transcription elides a value
# the table has; sweep -> label -> accuracies.
PAPER_MNIST: dict[str, dict[str, list[float | None]]] = {
    "gaussian": {
        "A": [98.93, 98.94, 98.73, 94.61, 86.5, 76.83, 68.2, 61.6],
        "PA": [99.11, 99.1, 98.93, 95.27, 87.09, 78.38, 69.71, 62.8],
        "B": [98.85, None, None, 90.24, 73.91, 62.62, 53.55, 45.67],
        "PB": [98.74, None, None, 95.24, 87.2, 78.72, 71.43, 63.1],
        "D": [None, None, None, 90.02, 78.62, 68.63, 60.34, 53.97],
        "PD": [None, None, None, 93.41, 81.99, 71.27, 63.88, 57.24],
    },
    "contrast_poisson": {
        "A": [98.96, 80.36, 69.07, 52.79, 30.8],
        "PA": [99.11, 97.53, 95.09, 89.1, 62.84],
        "D": [98.55, 79.94, 63.61, 46.18, 37.46],
        "PD": [98.66, 97.44, 95.72, 90.8, 71.9],
    },
}
# Rows the paper's tables report that no transcription here has, with what issue 27 says of them
# (not checked against the paper): sweep -> [(labels, note)].
PAPER_MNIST_NOT_TRANSCRIBED: dict[str, list[tuple[str, str]]] = {
    "gaussian": [("C, PC", "issue 27: PC 0.1-3.0 points less accurate than C at variance >= 0.1, "
                           "the paper's own negative pair")],
    "contrast_poisson": [("B, PB, C, PC", "issue 27: the paper's level-averaged gaps over all "
                                          "four pairs are 3.0-25.8 points")],
}  # fmt: skip
# The authors' CIFAR-10-C errors (%, mean over the 5 severities) of their released ResNet-20 and
# ResNet-20-PP (push-pull first conv), from the result files of their release
# (github.com/nicstrisc/Push-Pull-CNN-layer, results/resnet/resnet-20{,-pp}/C_average.txt);
# issue 27 quotes the same values from the journal's Table 2. corruption -> (R20, R20-PP).
PAPER_CIFAR10C_RESNET20: dict[str, tuple[float, float]] = {
    "gaussian_noise": (57.41, 49.90), "shot_noise": (45.75, 39.98),
    "impulse_noise": (41.88, 37.20), "defocus_blur": (21.43, 22.30),
    "glass_blur": (58.82, 58.56), "motion_blur": (30.62, 29.50), "zoom_blur": (27.54, 29.68),
    "snow": (25.06, 25.59), "frost": (31.39, 31.29), "fog": (16.56, 17.58),
    "brightness": (9.73, 10.34), "contrast": (29.59, 30.50),
    "elastic_transform": (20.37, 20.65), "pixelate": (32.33, 32.70),
    "jpeg_compression": (23.81, 22.16), "speckle_noise": (41.34, 37.55),
    "gaussian_blur": (31.32, 33.24), "spatter": (19.03, 17.85), "saturate": (11.52, 11.70),
}  # fmt: skip
# (push-pull, baseline) labels of the groups whose per-corruption profile is set beside the paper's
PAPER_CIFAR10C_PAIRS = {
    "resnet": ("R20-pp", "R20"),
    "resnet_plateau": ("R20-pp plateau", "R20 plateau"),
}
CHANCE_ERROR = 90.0  # % : ten classes


@dataclass(frozen=True)
class Group:
    """One part of the study: its cells (label, model, model kwargs), seeds, tests and pairs."""

    cells: tuple[tuple[str, str, dict[str, Any]], ...]
    seeds: tuple[int, ...]
    suites: tuple[str, ...]
    noise_levels: dict[str, list[float]] = field(default_factory=dict)  # {} = evaluate's levels
    pairs: tuple[tuple[str, str], ...] = ()  # (candidate label, reference label), any group's
    test_samples: int | None = None  # None: the settings' (all 10,000 test images)
    # DemoSettings fields this group sets for itself at every scale but quick (which stays a
    # seconds-long check), and trainer settings replacing the recipe's
    settings: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


# ResNet-20 evaluations run on this many test images (the same seeded subset for every cell): its
# 19 corruptions x 5 severities on all 10,000 would take ~35 single-threaded minutes per cell
# (at ~490 images/s), on 500 under 2.
RESNET_TEST_SAMPLES = 500
# The ResNet-20s trained to a plateau: all 60,000 training images, a one-cycle schedule (clean
# accuracy >= 90% in about 8-10 epochs), tested on this many images.
PLATEAU_TEST_SAMPLES, PLATEAU_EPOCHS = 2_000, 10
# the minimum: 5 training seeds for every LeNet experiment, 3 for ResNet-20
LENET_SEEDS, RESNET_SEEDS = (0, 1, 2, 3, 4), (0, 1, 2)
_H_ALPHA = [(h, alpha) for h in (1.0, 1.5, 2.0) for alpha in (0.5, 1.0, 1.5)]
_BLURS = [f"{kind}{size}" for kind in ("rect", "tri", "bin") for size in (2, 3, 5, 7)]

# The whole grid, declared here and nowhere else. Labels are unique across groups.
GROUPS: dict[str, Group] = {
    "lenet": Group(
        cells=tuple(
            (f"{p}{v.upper()}", f"lenet5_{v}{'_pp' if p else ''}", {})
            for v in "abcd"
            for p in ("", "P")
        ),
        seeds=LENET_SEEDS,
        suites=("noise",),
        noise_levels=MNIST_NOISE_LEVELS,
        pairs=tuple((f"P{v}", v) for v in "ABCD"),
    ),
    "resnet": Group(
        cells=(
            ("R20", "resnet20", {}),
            ("R20-pp", "resnet20_pp", {}),
            ("R20-pp_b1", "resnet20_pp_b1", {}),
            ("R20+aa", "resnet20", dict(aa="bin3")),
            ("R20-pp+aa", "resnet20_pp", dict(aa="bin3")),
        ),
        seeds=RESNET_SEEDS,
        test_samples=RESNET_TEST_SAMPLES,
        suites=("c", "noise", "shift"),
        pairs=(
            ("R20-pp", "R20"),
            ("R20-pp_b1", "R20"),
            ("R20-pp_b1", "R20-pp"),
            ("R20+aa", "R20"),
            ("R20-pp+aa", "R20-pp"),
            ("R20-pp+aa", "R20"),
        ),  # fmt: skip
    ),
    "resnet_plateau": Group(
        cells=(
            ("R20 plateau", "resnet20", {}),
            ("R20-pp plateau", "resnet20_pp", {}),
            ("R20-pp_b1 plateau", "resnet20_pp_b1", {}),
            ("R20+aa plateau", "resnet20", dict(aa="bin3")),
        ),
        seeds=RESNET_SEEDS,
        test_samples=PLATEAU_TEST_SAMPLES,
        suites=("c", "noise", "shift"),
        settings=dict(resnet_train_samples=None, resnet_epochs=PLATEAU_EPOCHS),
        train=dict(sched="onecycle"),
        pairs=(
            ("R20-pp plateau", "R20 plateau"),
            ("R20-pp_b1 plateau", "R20 plateau"),
            ("R20-pp_b1 plateau", "R20-pp plateau"),
            ("R20+aa plateau", "R20 plateau"),
        ),  # fmt: skip
    ),
    "variants": Group(
        cells=(
            ("PA learned-alpha", "lenet5_a_pp", dict(pp_learn_alpha=True)),
            ("PA unrectified", "lenet5_a_pp", dict(pp_rectify=False)),
            ("PA SE", "lenet5_a_pp", dict(pp_attention="se")),
            ("PA SimAM", "lenet5_a_pp", dict(pp_attention="simam")),
            ("PA multi-scale", "lenet5_a_pp", dict(pp_scales="1.5,2,3")),
        ),
        seeds=LENET_SEEDS,
        suites=("noise",),
        noise_levels=MNIST_NOISE_LEVELS,
        pairs=tuple(
            (label, ref)
            for label in (
                "PA learned-alpha",
                "PA unrectified",
                "PA SE",
                "PA SimAM",
                "PA multi-scale",
            )
            for ref in ("PA", "A")
        ),  # fmt: skip
    ),
    "h_alpha": Group(
        cells=(
            ("A cifar-levels", "lenet5_a", {}),
            *[
                (f"PA h{h:g} a{a:g}", "lenet5_a_pp", dict(pp_pull_scale=h, pp_alpha=a))
                for h, a in _H_ALPHA
            ],
        ),
        seeds=LENET_SEEDS,
        suites=("noise",),
        pairs=tuple((f"PA h{h:g} a{a:g}", "A cifar-levels") for h, a in _H_ALPHA),
    ),
    "blurpool": Group(
        cells=(
            ("A no-blur", "lenet5_a", {}),
            *[(f"A {blur}", "lenet5_a", dict(aa=blur)) for blur in _BLURS],
        ),
        seeds=LENET_SEEDS,
        suites=("shift",),
        pairs=tuple((f"A {blur}", "A no-blur") for blur in _BLURS),
    ),
}

# Sized to the budget of about 5 hours on this 2-core machine (two single-threaded
# workers), but for the resnet_plateau group, which trains to a plateau and sets its own sizes.
# Measured on 2026-12-01/02: a LeNet-5 epoch on 60,000 images takes 12 s (-pp 15 s since the
# pull's PyTorch form follows its measured rule), its evaluation at the MNIST levels 15 s
# (-pp ~30 s); ResNet-20-pp trains at ~260 images/s and evaluates the 19 corruptions x 5
# severities at ~490 images/s, which is why the ResNet cells train on 10,000 images for 3 epochs
# and are evaluated on RESNET_TEST_SAMPLES images. The report's training curves show how close
# each model is to its plateau at these lengths.
FULL = DemoSettings(
    name="full",
    lenet_train_samples=None,
    lenet_epochs=4,
    resnet_train_samples=10_000,
    resnet_epochs=3,
    test_samples=10_000,
    eval_batch_size=500,
)
# seconds: a check of the pipeline, barely trained models, 2 cells x 2 seeds per group
QUICK = DemoSettings(
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
# 60,000 training images and every group tested on all 10,000 test images. By the
# single-threaded speeds above about 50-60 CPU-hours (ResNet-20 training ~20-29 h, its
# 19 corruptions on all test images ~9 h, 180 LeNet cells ~16 h): ~2 hours with --workers 32.
LARGE = replace(FULL, name="large", lenet_epochs=20, resnet_train_samples=None, resnet_epochs=30)
SCALES = {settings.name: settings for settings in (QUICK, FULL, LARGE)}
QUICK_CELLS, QUICK_SEEDS = 2, (0, 1)
STUDY_FILE, DONE_FILES = "study.json", (RESULTS_FILE, PER_IMAGE_FILE)
EVAL_SEED = 0  # the same test images and noise draws for every cell: paired comparisons


@dataclass(frozen=True)
class Cell:
    """One training run and its evaluation."""

    group: str
    label: str
    model: str
    kwargs: dict[str, Any]
    seed: int

    @property
    def family(self) -> str:
        return "lenet" if self.model.startswith("lenet") else "resnet"

    @property
    def folder(self) -> str:
        return f"cells/{self.group}/{self.label.replace(' ', '_')}-s{self.seed}"


def group_settings(group: Group, settings: DemoSettings) -> DemoSettings:
    """The settings a group's cells run with: its own settings (not at the quick scale), and its
    own (smaller) test subset where it has one, except at the ``large`` scale, which tests every
    group on all test images."""
    if group.settings and settings.name != QUICK.name:
        settings = replace(settings, **group.settings)
    if (
        group.test_samples is None
        or group.test_samples >= settings.test_samples
        or settings.name == LARGE.name
    ):
        return settings
    return replace(settings, test_samples=group.test_samples)


def corrupted_folder(out: Path, test_samples: int) -> Path:
    """The corrupted copies of the seeded subset of ``test_samples`` test images: one folder per
    subset, shared by every group tested on it."""
    return out / "data" / f"fashion-mnist-c-{test_samples}"


def grid(quick: bool = False) -> list[Cell]:
    """Every cell of the study (``quick``: the first cells and seeds of each group)."""
    cells = []
    for name, group in GROUPS.items():
        specs = group.cells[:QUICK_CELLS] if quick else group.cells
        for seed in QUICK_SEEDS if quick else group.seeds:
            cells += [Cell(name, label, model, dict(kw), seed) for label, model, kw in specs]
    return cells


def _noise_levels(group: Group, settings: DemoSettings) -> dict[str, list[float]] | None:
    """The group's levels; --quick keeps the first and last of each sweep."""
    levels = dict(group.noise_levels)
    if settings.name == "quick":
        from .robustness.evaluate import NOISE_SWEEPS

        full = {
            name: list(levels.get(name, default)) for name, (_, default) in NOISE_SWEEPS.items()
        }
        levels = {name: [values[0], values[-1]] for name, values in full.items()}
    return levels or None


def open_study(out: Path, cells: Sequence[Cell], settings: DemoSettings) -> None:
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


def cell_finished(folder: Path) -> bool:
    """The cell's results.json and per_image.npz are present and its results valid."""
    from .robustness.results import load_results

    if not all((folder / name).is_file() for name in DONE_FILES):
        return False
    try:
        load_results(folder / RESULTS_FILE)
    except (ValueError, OSError):
        return False
    return True


def run_cell(cell: Cell, out: Path, settings: DemoSettings, data_dir: Path) -> float:
    """Train and evaluate one cell single-threaded; returns its wall time in seconds.

    The evaluation writes into ``<cell>/evaluation`` and its files move to the cell folder only
    when it has finished, so a results.json in the cell folder always means a finished cell.
    """
    import torch

    from .demo import _load_model, _test_subset, _train_overrides
    from .robustness.datasets import CifarCFolder
    from .robustness.evaluate import EvalSettings, evaluate_model
    from .training.checkpoint import RESUME_FILE
    from .training.config import build_config
    from .training.trainer import train

    tic = time.perf_counter()
    torch.set_num_threads(1)
    group = GROUPS[cell.group]
    settings = group_settings(group, settings)
    folder = out / cell.folder
    run_dir = folder / "training"
    if not (run_dir / WEIGHTS_FILE).is_file():
        resume = (run_dir / RESUME_FILE).is_file()
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
        recipe, overrides = _train_overrides(cell.model, cell.family, settings, data_dir, run_dir,
                                             resume, False, cell.seed, cell.kwargs)  # fmt: skip
        trained = train(build_config(recipe, {**overrides, **group.train}), recipe=recipe)
        if trained["stopped_early"]:  # SIGINT / SIGTERM: the trainer saved a checkpoint
            raise KeyboardInterrupt(
                f"{cell.folder}: training stopped at step {trained['global_step']}"
            )
        shutil.rmtree(folder / "evaluation", ignore_errors=True)  # of weights no longer there
    images, labels = _test_subset(data_dir, settings.test_samples)
    evaluation = folder / "evaluation"
    evaluation_settings = EvalSettings(
        suites=group.suites,
        corruptions=settings.corruptions or None,
        severities=settings.severities,
        scale="cifar",
        seed=EVAL_SEED,
        noise_levels=_noise_levels(group, settings),
    )
    evaluate_model(
        _load_model(run_dir),
        images,
        labels,
        evaluation_settings,
        corrupted=(
            CifarCFolder(corrupted_folder(out, settings.test_samples))
            if "c" in group.suites
            else None
        ),
        out_dir=evaluation,
        model_name=cell.model,
        model_args=cell.kwargs,
        dataset_names=dict(
            clean="fashion_mnist test", c="fashion-mnist-c (generated, CIFAR scale)"
        ),
        device="cpu",
        batch_size=settings.eval_batch_size,
        progress=False,
    )
    for name in DONE_FILES[::-1]:  # results.json last: it marks the cell finished
        os.replace(evaluation / name, folder / name)
    shutil.rmtree(evaluation)
    return time.perf_counter() - tic


def _run_cell_task(task: tuple[Cell, Path, DemoSettings, Path]) -> tuple[Cell, float]:
    return task[0], run_cell(*task)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds > 5400 else f"{seconds / 60:.1f} min"


def cells_to_run(out: Path, cells: Sequence[Cell], only: Sequence[str] | None = None) -> list[Cell]:
    """The unfinished cells (of the ``only`` groups), lowest training seeds first across groups,
    so that a study stopped early has every cell at fewer seeds rather than some groups at all
    seeds and others at none."""
    todo = [c for c in cells if (not only or c.group in only) and not cell_finished(out / c.folder)]
    return sorted(todo, key=lambda c: c.seed)  # stable: grid order within a seed


def run_study(
    out: str | Path,
    quick: bool = False,
    only: Sequence[str] | None = None,
    workers: int = 2,
    data_dir: str | Path | None = None,
    scale: str | None = None,
) -> list[Cell]:
    """Run the unfinished cells (of the ``only`` groups) with ``workers`` single-threaded processes,
    printing progress and an ETA; returns the cells run. Holds ``out``'s lock throughout (a second
    study there is refused); SIGINT or SIGTERM stops it, every training cell at a checkpoint, and
    the same command resumes it."""
    from .demo import ensure_fashion_mnist

    unknown = sorted(set(only or ()) - set(GROUPS))
    if unknown:
        raise InvalidArgumentError(f"--only: unknown group(s) {unknown}; groups are {list(GROUPS)}")
    if workers < 1:
        raise InvalidArgumentError(f"--workers must be >= 1, got {workers}")
    scale = scale or (QUICK.name if quick else FULL.name)
    if scale not in SCALES:
        raise InvalidArgumentError(f"--scale must be one of {list(SCALES)}, got {scale!r}")
    out, settings = Path(out), SCALES[scale]
    cells = grid(settings is QUICK)
    data = ensure_fashion_mnist(data_dir)
    with exclusive_folder(out, "--out"), _sigterm_interrupts():
        open_study(out, cells, settings)
        return _run_cells(out, cells, settings, data, only, workers)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the study as Ctrl-C does (a KeyboardInterrupt): the pool's workers are then
    stopped too, each saving its training checkpoint, instead of living on as orphans that would
    write into the folder beside the restarted study."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_cells(out: Path, cells: Sequence[Cell], settings: DemoSettings, data: Path,
               only: Sequence[str] | None, workers: int) -> list[Cell]:  # fmt: skip
    from .demo import _test_subset, build_corrupted_set
    from .robustness.corruptions import ALL_CORRUPTIONS

    todo = cells_to_run(out, cells, only)
    # one corrupted set per test subset, shared by every group with the c suite tested on it
    for count in sorted({group_settings(GROUPS[c.group], settings).test_samples
                         for c in todo if "c" in GROUPS[c.group].suites}):  # fmt: skip
        images, labels = _test_subset(data, count)
        build_corrupted_set(images, labels, corrupted_folder(out, count),
                            settings.corruptions or ALL_CORRUPTIONS, settings.severities)  # fmt: skip
    selected = [c for c in cells if not only or c.group in only]
    print(f"study: {len(selected) - len(todo)} of {len(selected)} cells finished, "
          f"{len(todo)} to run on {workers} worker(s)", flush=True)  # fmt: skip
    tasks = [(cell, out, settings, data) for cell in todo]
    start, done = time.perf_counter(), 0
    if workers == 1:
        results = map(_run_cell_task, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_run_cell_task, tasks)
    finished = False
    try:
        for cell, seconds in results:
            done += 1
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] {cell.folder} done in {seconds:.0f} s; "
                  f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}", flush=True)  # fmt: skip
        finished = True
    finally:
        if pool is not None:
            if finished:
                pool.close()
            else:
                pool.terminate()  # interrupted or failed: stop the other cells too
            pool.join()
    return todo


# ----------------------------------------------------------------------------------------------
# report


PERCENT = (0.0, 100.0)  # the range of an accuracy or agreement in %


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] | None = None
) -> tuple[float, float, float]:
    """Mean over seeds and its 95% Student-t interval (one value: the interval is the value),
    clipped to ``bounds``: near 100% the t interval of an accuracy reaches past what is possible."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high


def seed_p_value(differences: Sequence[float]) -> float | None:
    """Two-sided p-value of the one-sample t-test that the per-seed differences average 0 (below
    0.05 exactly when their 95% Student-t interval excludes 0); None for a single seed."""
    from scipy import stats

    differences = np.asarray(differences, dtype=np.float64)
    if differences.size < 2:
        return None
    if np.ptp(differences) == 0:  # no spread: the t statistic is 0/0 or infinite
        return 1.0 if differences[0] == 0 else 0.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, Scand. J. Statist. 1979), in the input order: a
    test is significant at level a, the family-wise error rate held at a, when its adjusted
    p-value is below a. (statsmodels' ``multipletests`` has it, not worth a dependency.)"""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted, running = np.empty_like(p), 0.0
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (p.size - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def cell_metrics(results: Mapping[str, Any]) -> dict[str, list[float]]:
    """Accuracies / consistencies (%) of one results.json, per test (noise sweeps: per level).
    The mean corruption accuracy averages :func:`~.robustness.results.mean_error_corruptions`
    (on grey images not saturate, which leaves them as they are)."""
    from .robustness.results import mean_error_corruptions

    metrics = {"clean accuracy": [100 * (1 - results["clean_error"])]}
    for name, sweep in results.get("noise_sweeps", {}).items():
        metrics[name] = [100 * (1 - e) for e in sweep["errors"]]
    if results.get("corruptions"):
        errors = [results["corruptions"][n]["mean_error"] for n in mean_error_corruptions(results)]
        metrics["mean corruption accuracy"] = [100 * (1 - float(np.mean(errors)))]
    if results.get("shift"):
        metrics["shift consistency"] = [100 * results["shift"]["consistency"]]
    return metrics


def _finished(out: Path, cells: Sequence[Cell]) -> dict[tuple[str, int], Path]:
    return {(c.label, c.seed): out / c.folder for c in cells if cell_finished(out / c.folder)}


def summarize_group(out: Path, cells: Sequence[Cell]) -> dict[str, dict[str, list[tuple]]]:
    """label -> test -> [(mean, low, high, seeds)] per level over the finished seeds."""
    from .robustness.results import load_results

    by_label: dict[str, list[dict[str, list[float]]]] = {}
    for (label, _), folder in _finished(out, cells).items():
        by_label.setdefault(label, []).append(cell_metrics(load_results(folder / RESULTS_FILE)))
    summary = {}
    for label, runs in by_label.items():
        summary[label] = {
            test: [(*mean_interval([r[test][i] for r in runs], PERCENT), len(runs))
                   for i in range(len(runs[0][test]))]
            for test in runs[0]
        }  # fmt: skip
    return summary


def corruption_profile(out: Path, cells: Sequence[Cell], label: str) -> dict[str, tuple]:
    """corruption -> (mean, low, high, seeds) of ``label``'s error (%) over its finished seeds."""
    from .robustness.results import load_results

    runs = [load_results(folder / RESULTS_FILE)["corruptions"]
            for (name, _), folder in _finished(out, cells).items() if name == label]  # fmt: skip
    if not runs:
        return {}
    return {name: (*mean_interval([100 * r[name]["mean_error"] for r in runs], PERCENT), len(runs))
            for name in runs[0]}  # fmt: skip


def paired_comparisons(
    out: Path, cells: Sequence[Cell], candidate: str, reference: str
) -> dict[str, dict[str, Any]]:
    """Per test: the paired bootstrap over images of the per-image error (shift: agreement),
    averaged over levels and over the training seeds both models have; the Student-t interval
    over those seeds of each seed's mean difference (``seed_low``, ``seed_high``: the bootstrap
    resamples images, not training runs), its t-test p-value (``seed_p``) and that p-value
    adjusted by Holm's method over the pair's tests (``holm_p``); and McNemar's test of the clean
    error of each such seed (:mod:`.robustness.stats`). The mean corruption error averages
    :func:`~.robustness.results.mean_error_corruptions` (on grey images not saturate)."""
    from .demo import SHIFT_TEST, SWEEP_SUFFIX, _by_test
    from .robustness.results import load_per_image, load_results, mean_error_corruptions
    from .robustness.stats import mcnemar_exact

    finished = _finished(out, cells)
    seeds = sorted(
        s for (label, s) in finished if label == candidate and (reference, s) in finished
    )
    if not seeds:
        return {}
    ours, theirs, averaged = [], [], None
    for seed in seeds:
        for label, store in ((candidate, ours), (reference, theirs)):
            folder = finished[(label, seed)]
            results = load_results(folder / RESULTS_FILE)
            store.append(_by_test(load_per_image(folder, results)))
            averaged = averaged or mean_error_corruptions(results)
    tests: dict[str, dict[str, Any]] = {}
    for name in ours[0]:
        if name not in theirs[0]:
            continue
        a = [np.atleast_2d(o[name].values) for o in ours]
        b = [np.atleast_2d(t[name].values) for t in theirs]
        tests[name] = _compared(a, b, seeds)
    corruptions = [
        n
        for n in tests
        if n not in ("clean", SHIFT_TEST) and not n.endswith(SWEEP_SUFFIX) and n in averaged
    ]
    if corruptions:  # each image's error over every corruption, severity and seed
        tests["mean corruption error"] = _compared(
            [np.concatenate([np.atleast_2d(o[n].values) for n in corruptions]) for o in ours],
            [np.concatenate([np.atleast_2d(t[n].values) for n in corruptions]) for t in theirs],
            seeds,
        )
    tests["clean"]["mcnemar_p_per_seed"] = [
        mcnemar_exact(o["clean"].values, t["clean"].values).p_value
        for o, t in zip(ours, theirs, strict=True)
    ]
    tested = [name for name, test in tests.items() if test["seed_p"] is not None]
    for name, adjusted in zip(
        tested, holm_adjust([tests[n]["seed_p"] for n in tested]), strict=True
    ):
        tests[name]["holm_p"] = adjusted
    return tests


def _compared(ours: list[np.ndarray], theirs: list[np.ndarray], seeds: list[int]) -> dict:
    """One paired comparison from per-seed ``[levels, images]`` outcomes of the two models."""
    from .robustness.stats import paired_bootstrap

    per_seed = [float((o.astype(np.float64) - t).mean()) for o, t in zip(ours, theirs, strict=True)]
    _, seed_low, seed_high = mean_interval(per_seed)
    compared = paired_bootstrap(np.concatenate(ours), np.concatenate(theirs)).to_dict()
    return dict(compared, seeds=seeds, seed_low=seed_low, seed_high=seed_high,
                seed_p=seed_p_value(per_seed), holm_p=None)  # fmt: skip


def _cell(entry: tuple) -> str:
    mean, low, high, _ = entry
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def _levels(out: Path, cells: Sequence[Cell]) -> dict[str, list[float]]:
    from .robustness.results import load_results

    for folder in _finished(out, cells).values():
        sweeps = load_results(folder / RESULTS_FILE).get("noise_sweeps", {})
        return {name: sweep["levels"] for name, sweep in sweeps.items()}
    return {}


Curves = dict[str, tuple[Sequence[float], Sequence[tuple]]]  # label -> (xs, [(mean, low, high, n)])


def plot_bands(panels: Mapping[str, tuple[str, Curves]], path: Path) -> Path | None:
    """One panel per ``title -> (x label, curves)``: each curve's mean over seeds and its 95% band."""
    from .robustness.report import _figure, _save

    if not panels:
        return None
    figure = _figure(5 * len(panels), 4)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, (xlabel, curves)) in zip(axes, panels.items(), strict=True):
        for label, (xs, entries) in curves.items():
            mean, low, high = (np.array([e[i] for e in entries]) for i in range(3))
            (line,) = axis.plot(xs, mean, marker="o", label=label)
            axis.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
        axis.set(title=title, xlabel=xlabel, ylabel="%")
        axis.grid(alpha=0.3)
        if xlabel == "contrast":
            axis.invert_xaxis()  # contrast falls to the right, as the noise of the other panels grows
        axis.legend(fontsize=6)
    return _save(figure, path)


def training_curves(out: Path, cells: Sequence[Cell]) -> Curves:
    """label -> (epochs, validation accuracy per epoch: mean and 95% interval over seeds)."""
    runs: dict[str, list[list[float]]] = {}
    for (label, _), folder in _finished(out, cells).items():
        records = (folder / "training" / METRICS_FILE).read_text().splitlines()
        runs.setdefault(label, []).append([json.loads(r)["val_acc"] for r in records if r.strip()])
    curves = {}
    for label, accuracies in runs.items():
        epochs = min(map(len, accuracies))
        curves[label] = (
            list(range(1, epochs + 1)),
            [(*mean_interval([a[e] for a in accuracies]), len(accuracies)) for e in range(epochs)],
        )
    return curves


def _blur_curves(summary: Mapping, test: str) -> Curves:
    """Blur-pool group: filter type -> (filter size 1-7, ``test``); size 1 is no blur."""
    from .layers.blur_pool import parse_blur_spec

    curves: dict[str, tuple[list[float], list[tuple]]] = {}
    for kind in ("rect", "tri", "bin"):
        no_blur = summary.get("A no-blur")
        xs, entries = ([1.0], [no_blur[test][0]]) if no_blur else ([], [])
        for label, tests in summary.items():
            spec = label.removeprefix("A ")
            if spec.startswith(kind) and spec[len(kind) :].isdigit():
                xs.append(float(parse_blur_spec(spec)[1]))
                entries.append(tests[test][0])
        if len(entries) > 1:
            curves[kind] = (xs, entries)
    return curves


NOT_TRANSCRIBED = "n.t."  # a value the paper's table has and no transcription here


def _paper_rows(sweep: str, summary: Mapping, levels: Sequence[float]) -> list[str]:
    """The paper's MNIST rows of the models in ``summary``, and a line on the rows not transcribed."""
    if sweep not in PAPER_MNIST or list(levels) != list(MNIST_NOISE_LEVELS[sweep]):
        return []
    rows = [
        f"| {label} | paper (MNIST) | "
        + " | ".join(NOT_TRANSCRIBED if v is None else f"{v:.2f}" for v in values) + " |"
        for label, values in PAPER_MNIST[sweep].items()
        if label in summary
    ]  # fmt: skip
    missing = [f"{labels} ({note})" for labels, note in PAPER_MNIST_NOT_TRANSCRIBED.get(sweep, [])]
    rows += ["", f"Paper: supplementary material of arXiv:1901.10208 (MNIST tables), as issue 15 "
             f"transcribed it; {NOT_TRANSCRIBED} = in the table, not transcribed."]  # fmt: skip
    if missing:
        rows[-1] += " Rows of the table not transcribed here: " + "; ".join(missing) + "."
    return rows


def stored_study(out: Path) -> tuple[list[Cell], dict[str, Any]]:
    """The cells and settings ``out/study.json`` declares (``group_settings``: each group's
    settings, as stored, or as this grid gives them for a study.json from before they were)."""
    path = out / STUDY_FILE
    if not path.is_file():
        raise MissingFileError(
            f"no {STUDY_FILE} in {out}: not a study folder (run the study first)"
        )
    stored = json.loads(path.read_text())
    scale = SCALES.get(stored["settings"]["name"], replace(FULL, **stored["settings"]))
    groups = {
        name: stored.get("group_settings", {}).get(name, {}).get("settings")
        or asdict(group_settings(group, scale))
        for name, group in GROUPS.items()
    }
    settings = dict(stored["settings"], group_test_samples=stored.get("test_samples", {}),
                    group_settings=groups)  # fmt: skip
    return [Cell(**c) for c in stored["cells"]], settings


def _protocol(name: str, group: Group, settings: Mapping[str, Any]) -> str:
    """How a group's models were trained and tested, in words."""
    own = settings["group_settings"][name]
    lenet = group.cells[0][1].startswith("lenet")
    images = own["lenet_train_samples" if lenet else "resnet_train_samples"] or 60_000
    epochs = own["lenet_epochs" if lenet else "resnet_epochs"]
    schedule = {"onecycle": "one-cycle", "cosine": "cosine"}[group.train.get("sched", "cosine")]
    tested = settings["group_test_samples"].get(name, own["test_samples"])
    return (f"trained on {images:,} images for {epochs} epoch(s) ({schedule} schedule), tested "
            f"on {tested:,} test images")  # fmt: skip


def level_difference(
    out: Path,
    cells: Sequence[Cell],
    candidate: str,
    reference: str,
    sweep: str,
    levels: Sequence[int],
) -> tuple[float, float, float, int] | None:
    """(mean, low, high, seeds): the candidate's minus the reference's error (% points) in a noise
    sweep at the level indices ``levels`` only, per seed, and its 95% interval over seeds."""
    from .demo import SWEEP_SUFFIX, _by_test
    from .robustness.results import load_per_image, load_results

    finished = _finished(out, cells)
    seeds = sorted(
        s for (label, s) in finished if label == candidate and (reference, s) in finished
    )
    per_seed = []
    for seed in seeds:
        errors = []
        for label in (candidate, reference):
            folder = finished[(label, seed)]
            tests = _by_test(load_per_image(folder, load_results(folder / RESULTS_FILE)))
            errors.append(
                np.atleast_2d(tests[f"{sweep}{SWEEP_SUFFIX}"].values)[list(levels)].mean()
            )
        per_seed.append(100 * float(errors[0] - errors[1]))
    return (*mean_interval(per_seed), len(seeds)) if seeds else None


def _paper_gap_lines(
    out: Path, cells: Sequence[Cell], levels: Mapping[str, Sequence[float]]
) -> list[str]:
    """The paper's push-pull gains (MNIST accuracy) beside our differences in error on the same
    levels: the levels both of its transcribed values exist at."""
    lines = []
    for sweep, rows in PAPER_MNIST.items():
        if list(levels.get(sweep, [])) != list(MNIST_NOISE_LEVELS[sweep]):
            continue
        for base in (label for label in rows if not label.startswith("P")):
            pp = f"P{base}"
            both = [i for i, (a, b) in enumerate(zip(rows[base], rows[pp], strict=True))
                    if a is not None and b is not None]  # fmt: skip
            ours = level_difference(out, cells, pp, base, sweep, both)
            if ours is None:
                continue
            gains = [rows[pp][i] - rows[base][i] for i in both]
            lines.append(f"| {pp} vs {base} | {sweep} | {', '.join(f'{levels[sweep][i]:g}' for i in both)} | "
                         f"{np.mean(gains):+.2f} ({min(gains):+.2f} to {max(gains):+.2f}) | "
                         f"{ours[0]:+.2f} [{ours[1]:+.2f}, {ours[2]:+.2f}] | {ours[3]} |")  # fmt: skip
    if not lines:
        return []
    return [
        "The paper's push-pull gain in MNIST accuracy (% points: push-pull minus baseline; mean over "
        "the levels and its range) beside ours in Fashion-MNIST error (push-pull minus baseline, "
        "negative = push-pull better; mean over the same levels and seeds, 95% interval over "
        "seeds), on the levels where both of the paper's values are transcribed:",
        "",
        "| pair | sweep | levels | paper: gain in accuracy | ours: difference in error | seeds |",
        "|---|---|---|---|---|---|",
        *lines,
        "",
    ]


def _shared_trainings(out: Path, cells: Sequence[Cell]) -> list[str]:
    """Lines on the finished cells that trained the very same model (equal weights)."""
    from .robustness.results import load_results

    by_weights: dict[str, list[str]] = {}
    for (label, seed), folder in _finished(out, cells).items():
        weights = load_results(folder / RESULTS_FILE)["identity"]["weights_sha256"]
        by_weights.setdefault(weights, []).append(f"{label} (s{seed})")
    shared = [names for names in by_weights.values() if len(names) > 1]
    finished = sum(map(len, by_weights.values()))
    lines = [f"**Distinct trainings.** {finished} finished cells hold {len(by_weights)} distinct "
             f"trained models (by the SHA-256 of their weights)."]  # fmt: skip
    if shared:
        repeats = {}
        for names in shared:  # the same sets recur for every seed: list them once
            key = " = ".join(name.rsplit(" (s", 1)[0] for name in names)
            repeats[key] = repeats.get(key, 0) + 1
        lines[0] += (f" {finished - len(by_weights)} cells retrain, bit for bit, the model of "
                     "another cell (same architecture, seed and recipe; they differ only in what "
                     "they are tested on), so they are not independent evidence: "
                     + "; ".join(f"{key} ({n} seed(s))" for key, n in repeats.items()) + ".")  # fmt: skip
    return [*lines, ""]


def _direction(difference: float, low: float, high: float) -> str:
    return "no clear difference" if low <= 0 <= high else ("better" if difference < 0 else "worse")


def _paper_profile_lines(
    name: str,
    out: Path,
    cells: Sequence[Cell],
    compared_pairs: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
) -> list[str]:
    """Per corruption: our push-pull and baseline errors and their paired difference beside the
    authors' released ResNet-20 numbers on CIFAR-10-C, and where the two profiles disagree."""
    candidate, reference = PAPER_CIFAR10C_PAIRS[name]
    ours, theirs = (
        corruption_profile(out, cells, candidate),
        corruption_profile(out, cells, reference),
    )
    compared = compared_pairs.get((candidate, reference))
    if not ours or not theirs or not compared:
        return []
    seeds = len(compared["clean"]["seeds"])
    lines = [
        f"Per corruption, error (%) of {reference} and {candidate} (mean over {seeds} seed(s)) and "
        "their paired difference with its 95% interval over seeds, beside the authors' released "
        "ResNet-20 and ResNet-20-PP on CIFAR-10-C (their result files; issue 27 quotes the same "
        f"values from the journal's Table 2). *near chance*: our {reference} errs on >= 75% of "
        f"the images (guessing: {CHANCE_ERROR:.0f}%).", "",
        f"| corruption | paper R20 | paper R20-PP | paper difference | ours {reference} | "
        f"ours {candidate} | ours difference [95% CI over seeds] | ours |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    disagree, no_gain = [], []
    for corruption, (base, pp) in PAPER_CIFAR10C_RESNET20.items():
        if corruption not in compared:
            continue
        c = compared[corruption]
        effect, low, high = (100 * c[k] for k in ("effect", "seed_low", "seed_high"))
        verdict = _direction(effect, low, high)
        chance = " (near chance)" if theirs[corruption][0] >= 75 else ""
        lines.append(f"| {corruption} | {base:.2f} | {pp:.2f} | {pp - base:+.2f} | "
                     f"{theirs[corruption][0]:.1f}{chance} | {ours[corruption][0]:.1f} | "
                     f"{effect:+.2f} [{low:+.2f}, {high:+.2f}] | {verdict} |")  # fmt: skip
        paper = "better" if pp < base else "worse"
        if verdict not in (paper, "no clear difference"):
            disagree.append(f"{corruption}{chance} (paper {pp - base:+.2f}, ours {effect:+.2f})")
        elif verdict == "no clear difference" and pp - base <= -3:
            no_gain.append(f"{corruption} (paper {pp - base:+.2f}, ours {effect:+.2f})")
    lines += [
        "",
        "Where the profiles disagree: push-pull clearly (across seeds) on the other side of its "
        f"baseline than in the paper: {', '.join(disagree) or 'none'}; the paper's gains of 3 "
        f"points or more that show no clear difference here: {', '.join(no_gain) or 'none'}. "
        "(Saturate leaves a grey image as it is: our saturate error is the clean error.)",
        "",
    ]  # fmt: skip
    return lines


def _summary_lines(
    compared_pairs: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
) -> list[str]:
    """One line per pair: its clean, mean-corruption and shift differences over seeds, and
    whether each is clear across seeds, before and after Holm's correction."""
    if not compared_pairs:
        return []
    lines = ["Summary of the pairs (difference in % points of error, shift: of agreement; mean "
             "over the seeds both have and its 95% interval over seeds):", ""]  # fmt: skip
    for (candidate, reference), compared in compared_pairs.items():
        parts = []
        for test in ("clean", "mean corruption error", "shift consistency"):
            if test in compared:
                c = compared[test]
                effect, low, high = (100 * c[k] for k in ("effect", "seed_low", "seed_high"))
                clear = "not clear" if low <= 0 <= high else "clear"
                if clear == "clear" and c["holm_p"] is not None:
                    clear += " (Holm: " + ("also" if c["holm_p"] < 0.05 else "not") + ")"
                parts.append(f"{test} {effect:+.2f} [{low:+.2f}, {high:+.2f}], {clear}")
        if parts:
            seeds = len(compared["clean"]["seeds"])
            lines.append(
                f"- {candidate} vs {reference} ({seeds} seed(s)): " + "; ".join(parts) + "."
            )
    return [*lines, ""]


def _paired_lines(
    compared_pairs: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
) -> list[str]:
    lines = [
        "Paired differences (candidate - reference, % points of error; shift: of agreement) on the "
        "same images, averaged over levels and seeds; 95% BCa bootstrap interval over images, and "
        "95% Student-t interval over the training seeds of each seed's difference (the first "
        "leaves out training randomness, the second includes it). p (seeds): the t-test of that "
        "seed interval; Holm p: that p-value adjusted by Holm's method over the pair's tests (the "
        "family-wise error rate of the pair's rows held at 5% when it is below 0.05). The mean "
        "corruption error leaves out saturate (the identity on grey images).",
        "",
        "| candidate vs reference | test | difference [95% CI over images] | [95% CI over seeds] "
        "| p (seeds) | Holm p | seeds | McNemar p per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for (candidate, reference), compared in compared_pairs.items():
        for test, c in compared.items():
            p_values = ", ".join(f"{p:.3g}" for p in c.get("mcnemar_p_per_seed", [])) or "–"
            seed_p, holm_p = (
                ("–" if c[k] is None else f"{c[k]:.3g}") for k in ("seed_p", "holm_p")
            )
            lines.append(f"| {candidate} vs {reference} | {test} | {100 * c['effect']:+.2f} "
                         f"[{100 * c['low']:+.2f}, {100 * c['high']:+.2f}] | "
                         f"[{100 * c['seed_low']:+.2f}, {100 * c['seed_high']:+.2f}] | {seed_p} | "
                         f"{holm_p} | {len(c['seeds'])} | {p_values} |")  # fmt: skip
    return [*lines, ""]


def _sweep_title(sweep: str, xs: Sequence[float]) -> str:
    title = f"### {sweep} ({', '.join(f'{x:g}' for x in xs)})"
    if sweep == "contrast_poisson":
        changes = ("contrast drops" if max(xs) <= 1 else
                   "contrast changes: C < 1 lowers the contrast, C > 1 raises it")  # fmt: skip
        title += f": Poisson noise after {changes}"
    return title


def write_study_report(out: str | Path) -> Path:
    """``out/report/README.md`` and one plot per group from the finished cells (groups with
    unfinished cells or seeds say how many they have)."""
    from .robustness.evaluate import NOISE_SWEEPS

    out = Path(out)
    cells, settings = stored_study(out)
    quick = settings["name"] == QUICK.name
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Push-pull and blur-pool on Fashion-MNIST: the study",
        "",
        "Ours: Fashion-MNIST (28x28 grey); how each group was trained and tested is at its "
        "heading. Every model of a group is evaluated on the same images and noise draws. Numbers "
        "are accuracy (%): mean over training seeds and its 95% Student-t interval (clipped to "
        "0-100). Papers' numbers are **MNIST** (LeNet) and **CIFAR-10** (ResNet-20), shown only "
        "where the protocol matches; they are not the same data set as ours. Poisson noise: "
        "counts of a 255-photon full-scale pixel (as scikit-image's "
        "`random_noise(mode='poisson')` for 8-bit images), after the contrast change "
        "`I_C = (I - 0.5) * C + 0.5`; the MNIST levels C = 1, 0.5, 0.4, 0.3, 0.2 follow the "
        "journal's Fig. 5 (the supplementary table's header 0.5 / 1 / 1.5 / 2 / 2.5 contradicts "
        "the figure and text). Saturate leaves a grey image as it is: the mean corruption "
        "accuracy and error average the other 18 corruptions.",
        "",
        *_shared_trainings(out, cells),
    ]
    if quick:
        lines += [
            "**--quick run: barely trained models; these numbers say nothing about push-pull.**",
            "",
        ]
    for name, group in GROUPS.items():
        group_cells = [c for c in cells if c.group == name]
        if not group_cells:
            continue
        summary = summarize_group(out, group_cells)
        finished = len(_finished(out, group_cells))
        lines += [f"## {name}", "",
                  f"{_protocol(name, group, settings)}; {finished} of {len(group_cells)} cells "
                  "finished.", ""]  # fmt: skip
        if not summary:
            continue
        planned = {label: sum(c.label == label for c in group_cells) for label in summary}
        levels = _levels(out, group_cells)
        single = sorted({t for tests in summary.values() for t in tests if t not in levels})
        lines += [
            "| model | seeds | " + " | ".join(single) + " |",
            "|---" * (len(single) + 2) + "|",
        ]
        for label, tests in summary.items():
            seeds = next(iter(tests.values()))[0][3]
            lines.append(f"| {label} | {seeds} of {planned[label]} | "
                         + " | ".join(_cell(tests[t][0]) if t in tests else "–" for t in single) + " |")  # fmt: skip
        lines.append("")
        for sweep, xs in levels.items():
            lines += [_sweep_title(sweep, xs), "",
                      "| model | data | " + " | ".join(f"{x:g}" for x in xs) + " |",
                      "|---" * (len(xs) + 2) + "|"]  # fmt: skip
            for label, tests in summary.items():
                if sweep in tests:
                    lines.append(f"| {label} | ours (Fashion-MNIST) | " + " | ".join(map(_cell, tests[sweep])) + " |")  # fmt: skip
            lines += [*_paper_rows(sweep, summary, xs), ""]
        panels = {
            f"{name}: {sweep} accuracy": (NOISE_SWEEPS[sweep][0],
                                          {label: (xs, t[sweep]) for label, t in summary.items() if sweep in t})
            for sweep, xs in levels.items()
        }  # fmt: skip
        if name == "blurpool":
            panels = {f"blurpool: {test}": ("filter size", _blur_curves(summary, test))
                      for test in ("clean accuracy", "shift consistency")}  # fmt: skip
        panels[f"{name}: validation accuracy while training"] = (
            "epoch",
            training_curves(out, group_cells),
        )
        plot = plot_bands(panels, report / f"{name}.png")
        lines += [f"![{name}]({plot.name})", "",
                  "Training curves: validation accuracy after each epoch on the trainer's "
                  "validation subset, which its training seed draws (the whole test set when the "
                  "group tests on all of it).", ""]  # fmt: skip
        compared = {(candidate, reference): paired_comparisons(out, cells, candidate, reference)
                    for candidate, reference in group.pairs if candidate in summary}  # fmt: skip
        compared = {pair: tests for pair, tests in compared.items() if tests}
        lines += _paper_gap_lines(out, group_cells, levels)
        if name in PAPER_CIFAR10C_PAIRS:
            lines += _summary_lines(compared)
            lines += _paper_profile_lines(name, out, group_cells, compared)
        if compared:
            lines += _paired_lines(compared)
    path = report / "README.md"
    path.write_text("\n".join(lines))
    return path


# ----------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--out",
        default="timm-pushpull-study",
        help="study folder (resumed when it holds this study)",
    )
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        help="quick: tiny data, 2 cells x 2 seeds per group (seconds); full (default): every "
        "group but resnet_plateau sized for ~4 hours on 2 cores, resnet_plateau many more; "
        "large: the papers' scale, all training and test images (~50-60 CPU-hours)",
    )
    parser.add_argument("--quick", action="store_true", help="the same as --scale quick")
    parser.add_argument(
        "--only", action="append", choices=list(GROUPS), help="run only this group (repeatable)"
    )
    parser.add_argument("--workers", type=int, default=2, help="single-threaded worker processes")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX files (default: the system's)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished cells")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    if not args.report_only:
        try:
            run_study(args.out, args.quick, args.only, args.workers, args.data_dir, args.scale)
        except KeyboardInterrupt:
            print("study: stopped (unfinished cells keep their checkpoints); the same command "
                  "resumes it", flush=True)  # fmt: skip
            return 130
    print(f"report: {write_study_report(args.out)}", flush=True)
    return 0
