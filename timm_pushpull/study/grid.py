"""The study's grid: its groups of cells (model, model kwargs, training seed), declared here and
nowhere else, and the settings each group's cells run with."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..experiments import STUDY_LARGE, STUDY_QUICK, ExperimentSettings

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


@dataclass(frozen=True)
class Group:
    """One part of the study: its cells (label, model, model kwargs), seeds, tests and pairs."""

    cells: tuple[tuple[str, str, dict[str, Any]], ...]
    seeds: tuple[int, ...]
    suites: tuple[str, ...]
    noise_levels: dict[str, list[float]] = field(default_factory=dict)  # {} = evaluate's levels
    pairs: tuple[tuple[str, str], ...] = ()  # (candidate label, reference label), any group's
    test_samples: int | None = None  # None: the settings' (all 10,000 test images)
    # ExperimentSettings fields this group sets for itself at every scale but quick (which stays a
    # seconds-long check), and trainer settings replacing the recipe's
    settings: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


# ResNet-20 evaluations run on this many test images (the same seeded subset for every cell): its
# 19 corruptions x 5 severities on all 10,000 would cost a single-threaded cell many times its
# training (BENCHMARKS.md, "Study sizing").
RESNET_TEST_SAMPLES = 500
# The ResNet-20s trained to a plateau: all 60,000 training images, a one-cycle schedule (issue 27's
# target: clean accuracy >= 90%; docs/study/README.md says whether each model reaches it), tested
# on this many images.
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


QUICK_CELLS, QUICK_SEEDS = 2, (0, 1)  # the quick grid: the first cells and seeds of each group
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


def group_settings(group: Group, settings: ExperimentSettings) -> ExperimentSettings:
    """The settings a group's cells run with: its own settings (not at the quick scale), and its
    own (smaller) test subset where it has one, except at the ``large`` scale, which tests every
    group on all test images."""
    if group.settings and settings.name != STUDY_QUICK.name:
        settings = replace(settings, **group.settings)
    if (
        group.test_samples is None
        or group.test_samples >= settings.test_samples
        or settings.name == STUDY_LARGE.name
    ):
        return settings
    return replace(settings, test_samples=group.test_samples)


def grid(quick: bool = False) -> list[Cell]:
    """Every cell of the study (``quick``: the first cells and seeds of each group)."""
    cells = []
    for name, group in GROUPS.items():
        specs = group.cells[:QUICK_CELLS] if quick else group.cells
        for seed in QUICK_SEEDS if quick else group.seeds:
            cells += [Cell(name, label, model, dict(kw), seed) for label, model, kw in specs]
    return cells


def group_noise_levels(group: Group, settings: ExperimentSettings) -> dict[str, list[float]] | None:
    """The group's levels; --quick keeps the first and last of each sweep."""
    levels = dict(group.noise_levels)
    if settings.name == "quick":
        from ..robustness.evaluate import NOISE_SWEEPS

        full = {
            name: list(levels.get(name, default)) for name, (_, default) in NOISE_SWEEPS.items()
        }
        levels = {name: [values[0], values[-1]] for name, values in full.items()}
    return levels or None
