"""The study's report: ``report/README.md`` (tables of means and intervals over seeds, paired
comparisons, the papers' numbers beside ours) and one plot per group, from the finished cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import RESULTS_FILE
from ..experiments import STUDY_QUICK
from .folder import finished_cells, stored_study
from .grid import GROUPS, MNIST_NOISE_LEVELS, Cell, Group
from .papers import (
    PAPER_CIFAR10C_PAIRS,
    PAPER_CIFAR10C_RESNET20,
    PAPER_MNIST,
    PAPER_MNIST_NOT_TRANSCRIBED,
)
from .statistics import (
    Curves,
    corruption_profile,
    level_difference,
    paired_comparisons,
    summarize_group,
    training_curves,
)

CHANCE_ERROR = 90.0  # % : ten classes


NOT_TRANSCRIBED = "n.t."  # a value the paper's table has and no transcription here


def write_study_report(out: str | Path) -> Path:
    """``out/report/README.md`` and one plot per group from the finished cells (groups with
    unfinished cells or seeds say how many they have)."""
    from ..robustness.evaluate import NOISE_SWEEPS

    out = Path(out)
    cells, settings = stored_study(out)
    quick = settings["name"] == STUDY_QUICK.name
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
        finished = len(finished_cells(out, group_cells))
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


def _levels(out: Path, cells: Sequence[Cell]) -> dict[str, list[float]]:
    from ..robustness.results import load_results

    for folder in finished_cells(out, cells).values():
        sweeps = load_results(folder / RESULTS_FILE).get("noise_sweeps", {})
        return {name: sweep["levels"] for name, sweep in sweeps.items()}
    return {}


def _sweep_title(sweep: str, xs: Sequence[float]) -> str:
    title = f"### {sweep} ({', '.join(f'{x:g}' for x in xs)})"
    if sweep == "contrast_poisson":
        changes = ("contrast drops" if max(xs) <= 1 else
                   "contrast changes: C < 1 lowers the contrast, C > 1 raises it")  # fmt: skip
        title += f": Poisson noise after {changes}"
    return title


def _cell(entry: tuple) -> str:
    mean, low, high, _ = entry
    return _estimate(mean, low, high, signed=False)


def _estimate(mean: float, low: float, high: float, signed: bool = True) -> str:
    """``mean [low, high]``; a single seed has no interval over seeds and says so."""
    sign = "+" if signed else ""
    if not np.isfinite([low, high]).all():
        return f"{mean:{sign}.2f} (1 seed)"
    return f"{mean:{sign}.2f} [{low:{sign}.2f}, {high:{sign}.2f}]"


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
                         f"{_estimate(*ours[:3])} | {ours[3]} |")  # fmt: skip
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
    from ..robustness.results import load_results

    by_weights: dict[str, list[str]] = {}
    for (label, seed), folder in finished_cells(out, cells).items():
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


def _judged_interval(compared: Mapping[str, Any]) -> tuple[float, float, str]:
    """The interval a difference is judged by: over seeds; with one seed there is none, and the
    interval over images (which leaves out training randomness) stands in, named as such."""
    if len(compared["seeds"]) >= 2:
        return 100 * compared["seed_low"], 100 * compared["seed_high"], "across seeds"
    return (
        100 * compared["low"],
        100 * compared["high"],
        "by the interval over images alone: 1 seed, training randomness left out",
    )


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
    over = "seeds" if seeds >= 2 else "images (1 seed: no interval over seeds)"
    lines = [
        f"Per corruption, error (%) of {reference} and {candidate} (mean over {seeds} seed(s)) and "
        f"their paired difference with its 95% interval over {over}, beside the authors' released "
        "ResNet-20 and ResNet-20-PP on CIFAR-10-C (their result files; issue 27 quotes the same "
        f"values from the journal's Table 2). *near chance*: our {reference} errs on >= 75% of "
        f"the images (guessing: {CHANCE_ERROR:.0f}%).", "",
        f"| corruption | paper R20 | paper R20-PP | paper difference | ours {reference} | "
        f"ours {candidate} | ours difference [95% CI over {over.split(' ')[0]}] | ours |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    disagree, no_gain = [], []
    for corruption, (base, pp) in PAPER_CIFAR10C_RESNET20.items():
        if corruption not in compared:
            continue
        c = compared[corruption]
        effect = 100 * c["effect"]
        low, high, judged = _judged_interval(c)
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
        f"Where the profiles disagree: push-pull clearly ({judged}) on the other side of its "
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
                if len(c["seeds"]) < 2:
                    images = f"[{100 * c['low']:+.2f}, {100 * c['high']:+.2f}]"
                    parts.append(f"{test} {effect:+.2f}, 1 seed: no interval over seeds "
                                 f"(over images {images})")  # fmt: skip
                    continue
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


def _seed_interval(compared: Mapping[str, Any]) -> str:
    if len(compared["seeds"]) < 2:
        return "– (1 seed)"
    return f"[{100 * compared['seed_low']:+.2f}, {100 * compared['seed_high']:+.2f}]"


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
                         f"{_seed_interval(c)} | {seed_p} | "
                         f"{holm_p} | {len(c['seeds'])} | {p_values} |")  # fmt: skip
    return [*lines, ""]


def plot_bands(panels: Mapping[str, tuple[str, Curves]], path: Path) -> Path | None:
    """One panel per ``title -> (x label, curves)``: each curve's mean over seeds and its 95% band."""
    from ..robustness.report import new_figure, save_figure

    if not panels:
        return None
    figure = new_figure(5 * len(panels), 4)
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
    return save_figure(figure, path)


def _blur_curves(summary: Mapping, test: str) -> Curves:
    """Blur-pool group: filter type -> (filter size 1-7, ``test``); size 1 is no blur."""
    from ..layers.blur_pool import parse_blur_spec

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
