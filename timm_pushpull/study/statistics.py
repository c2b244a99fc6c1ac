"""The study's statistics: means over training seeds with their Student-t intervals, paired
comparisons of two models over images and seeds (:mod:`..robustness.stats`), Holm's correction,
and the per-cell numbers they start from."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import METRICS_FILE, RESULTS_FILE
from ..experiments import SHIFT_TEST, SWEEP_SUFFIX, outcomes_by_test
from .folder import finished_cells
from .grid import Cell

PERCENT = (0.0, 100.0)  # the range of an accuracy or agreement in %


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] | None = None
) -> tuple[float, float, float]:
    """Mean over seeds and its 95% Student-t interval, clipped to ``bounds``: near 100% the t
    interval of an accuracy reaches past what is possible. One value has no interval (NaN
    bounds): a zero-width one would read as a difference clear across seeds."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
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
    from ..robustness.results import mean_error_corruptions

    metrics = {"clean accuracy": [100 * (1 - results["clean_error"])]}
    for name, sweep in results.get("noise_sweeps", {}).items():
        metrics[name] = [100 * (1 - e) for e in sweep["errors"]]
    if results.get("corruptions"):
        errors = [results["corruptions"][n]["mean_error"] for n in mean_error_corruptions(results)]
        metrics["mean corruption accuracy"] = [100 * (1 - float(np.mean(errors)))]
    if results.get("shift"):
        metrics["shift consistency"] = [100 * results["shift"]["consistency"]]
    return metrics


def summarize_group(out: Path, cells: Sequence[Cell]) -> dict[str, dict[str, list[tuple]]]:
    """label -> test -> [(mean, low, high, seeds)] per level over the finished seeds."""
    from ..robustness.results import load_results

    by_label: dict[str, list[dict[str, list[float]]]] = {}
    for (label, _), folder in finished_cells(out, cells).items():
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
    from ..robustness.results import load_results

    runs = [load_results(folder / RESULTS_FILE)["corruptions"]
            for (name, _), folder in finished_cells(out, cells).items() if name == label]  # fmt: skip
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
    from ..robustness.results import load_per_image, load_results, mean_error_corruptions
    from ..robustness.stats import mcnemar_exact

    finished = finished_cells(out, cells)
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
            store.append(outcomes_by_test(load_per_image(folder, results)))
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
    from ..robustness.stats import paired_bootstrap

    per_seed = [float((o.astype(np.float64) - t).mean()) for o, t in zip(ours, theirs, strict=True)]
    _, seed_low, seed_high = mean_interval(per_seed)
    compared = paired_bootstrap(np.concatenate(ours), np.concatenate(theirs)).to_dict()
    return dict(compared, seeds=seeds, seed_low=seed_low, seed_high=seed_high,
                seed_p=seed_p_value(per_seed), holm_p=None)  # fmt: skip


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
    from ..robustness.results import load_per_image, load_results

    finished = finished_cells(out, cells)
    seeds = sorted(
        s for (label, s) in finished if label == candidate and (reference, s) in finished
    )
    per_seed = []
    for seed in seeds:
        errors = []
        for label in (candidate, reference):
            folder = finished[(label, seed)]
            tests = outcomes_by_test(load_per_image(folder, load_results(folder / RESULTS_FILE)))
            errors.append(
                np.atleast_2d(tests[f"{sweep}{SWEEP_SUFFIX}"].values)[list(levels)].mean()
            )
        per_seed.append(100 * float(errors[0] - errors[1]))
    return (*mean_interval(per_seed), len(seeds)) if seeds else None


Curves = dict[str, tuple[Sequence[float], Sequence[tuple]]]  # label -> (xs, [(mean, low, high, n)])


def training_curves(out: Path, cells: Sequence[Cell]) -> Curves:
    """label -> (epochs, validation accuracy per epoch: mean and 95% interval over seeds)."""
    runs: dict[str, list[list[float]]] = {}
    for (label, _), folder in finished_cells(out, cells).items():
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
