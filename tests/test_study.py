"""The study runner (timm_pushpull/study/): a quick study on real Fashion-MNIST, resume, refusal
of another grid, and the report's statistics against hand computations."""

import dataclasses
import json
import os
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import timm

import timm_pushpull  # noqa: F401  (registers the models)
from timm_pushpull.cli import main as cli_main
from timm_pushpull.constants import RESUME_FILE
from timm_pushpull.data.idx import FASHION_MNIST_SYSTEM_DIR
from timm_pushpull.experiments import STUDY_FULL, STUDY_LARGE, STUDY_QUICK, training_overrides
from timm_pushpull.locking import exclusive_folder
from timm_pushpull.robustness.results import load_per_image, load_results
from timm_pushpull.study import write_study_report
from timm_pushpull.study.folder import cell_finished, open_study
from timm_pushpull.study.grid import (
    GROUPS,
    MNIST_NOISE_LEVELS,
    MNIST_VARIANCES,
    RESNET_TEST_SAMPLES,
    grid,
    group_noise_levels,
    group_settings,
)
from timm_pushpull.study.papers import PAPER_CIFAR10C_RESNET20, PAPER_MNIST
from timm_pushpull.study.report import _paper_rows
from timm_pushpull.study.runner import _sigterm_interrupts, cells_to_run, run_study
from timm_pushpull.study.statistics import (
    PERCENT,
    cell_metrics,
    holm_adjust,
    mean_interval,
    paired_comparisons,
    seed_p_value,
    summarize_group,
)
from timm_pushpull.training import trainer

needs_fmnist = pytest.mark.skipif(
    not (FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Fashion-MNIST (Debian's dataset-fashion-mnist) is not installed",
)
# Student t quantiles t(0.975, df), from statistical tables
T_975 = {1: 12.706204736, 2: 4.302652730}


@pytest.fixture(scope="module")
def quick_lenet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study")
    run_study(out, quick=True, only=["lenet"], workers=2)
    write_study_report(out)
    return out


def test_grid_is_the_papers():
    cells = grid()
    labels = {c.label for c in cells}
    assert len({(c.label, c.seed) for c in cells}) == len(cells)
    for name, group in GROUPS.items():
        for candidate, reference in group.pairs:
            assert candidate in labels and reference in labels, (name, candidate, reference)
    # the minimum: 5 seeds for every LeNet experiment, 3 for ResNet-20
    for name in GROUPS:
        family = {c.family for c in cells if c.group == name}
        assert len(family) == 1, name
        seeds = {c.seed for c in cells if c.group == name}
        assert seeds == (set(range(5)) if family == {"lenet"} else {0, 1, 2}), name
    assert {c.label for c in cells if c.group == "lenet"} == {
        "A", "B", "C", "D", "PA", "PB", "PC", "PD"
    }  # fmt: skip
    # the paper's 3 x 3 grid of h and alpha (on LeNet only: ResNet-20 does not fit the budget)
    assert len([c for c in cells if c.group == "h_alpha" and c.seed == 0]) == 1 + 9
    # ResNet cells evaluate a smaller subset, LeNet cells the whole test set
    assert group_settings(GROUPS["resnet"], STUDY_FULL).test_samples == RESNET_TEST_SAMPLES < 10_000
    assert group_settings(GROUPS["lenet"], STUDY_FULL).test_samples == 10_000
    # the MNIST paper's levels (NCAA 2020) reach the evaluation, and its numbers line up with them
    assert group_noise_levels(GROUPS["lenet"], STUDY_FULL)["gaussian"] == [
        0.0, 0.001, 0.01, 0.1, 0.2, 0.3, 0.4, 0.5
    ]  # fmt: skip
    assert group_noise_levels(GROUPS["lenet"], STUDY_FULL)["contrast_poisson"] == [
        1.0,
        0.5,
        0.4,
        0.3,
        0.2,
    ]
    for sweep, rows in PAPER_MNIST.items():
        assert all(len(v) == len(MNIST_NOISE_LEVELS[sweep]) for v in rows.values())
    # every declared model builds with its kwargs, under the name the trainer is given (lenet5_b
    # has no Fashion-MNIST pretrained tag: the study's first full run stopped there)
    for model, kwargs in {(c.model, json.dumps(c.kwargs, sort_keys=True)) for c in cells}:
        family = "lenet" if model.startswith("lenet") else "resnet"
        _, overrides = training_overrides(
            model, family, STUDY_FULL, Path("data"), Path("run"), False, False
        )
        timm.create_model(overrides["model"], num_classes=10, in_chans=1, **json.loads(kwargs))


def test_large_scale_is_the_papers_protocol_on_all_images(tmp_path):
    # every group, ResNet-20 too, on all 10,000 test images; every model on all training images
    for group in GROUPS.values():
        assert group_settings(group, STUDY_LARGE).test_samples == 10_000
    assert STUDY_LARGE.lenet_train_samples is None and STUDY_LARGE.resnet_train_samples is None
    assert (
        STUDY_LARGE.lenet_epochs > STUDY_FULL.lenet_epochs
        and STUDY_LARGE.resnet_epochs > STUDY_FULL.resnet_epochs
    )
    # another scale is another study: refused in a folder of the default one
    open_study(tmp_path, grid(), STUDY_FULL)
    assert cli_main(["study", "--scale", "large", "--out", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="--scale must be one of"):
        run_study(tmp_path / "new", scale="huge")


def test_report_names_the_resnet_test_subset_the_study_used(tmp_path):
    for settings, resnet, plateau in (
        (STUDY_FULL, "10,000 images for 3 epoch(s) (cosine schedule), tested on 500 test images",
         "60,000 images for 10 epoch(s) (one-cycle schedule), tested on 2,000 test images"),
        (STUDY_LARGE, "60,000 images for 30 epoch(s) (cosine schedule), tested on 10,000 test images",
         "60,000 images for 10 epoch(s) (one-cycle schedule), tested on 10,000 test images"),
    ):  # fmt: skip
        out = tmp_path / settings.name
        open_study(out, grid(), settings)
        text = write_study_report(out).read_text()
        assert f"## resnet\n\ntrained on {resnet}; 0 of 15 cells finished." in text
        assert f"## resnet_plateau\n\ntrained on {plateau}; 0 of 12 cells finished." in text


def test_plateau_group_trains_resnet20_on_every_image_to_a_plateau(tmp_path, monkeypatch):
    group = GROUPS["resnet_plateau"]
    assert [(model, kwargs) for _, model, kwargs in group.cells] == [
        ("resnet20", {}), ("resnet20_pp", {}), ("resnet20_pp_b1", {}), ("resnet20", {"aa": "bin3"})
    ]  # fmt: skip
    assert group.seeds == (0, 1, 2) and group.train == {"sched": "onecycle"}
    assert set(group.suites) == set(GROUPS["resnet"].suites)
    full = group_settings(group, STUDY_FULL)
    assert (full.resnet_train_samples, full.resnet_epochs, full.test_samples) == (None, 10, 2000)
    # the quick scale stays a seconds-long check of the pipeline
    assert group_settings(group, STUDY_QUICK) == STUDY_QUICK
    # a study.json written before the group existed (no group settings) extends to it
    older = [c for c in grid() if c.group != "resnet_plateau"]
    open_study(tmp_path, older, STUDY_FULL)
    stored = json.loads((tmp_path / "study.json").read_text())
    del stored["group_settings"], stored["test_samples"]["resnet_plateau"]
    (tmp_path / "study.json").write_text(json.dumps(stored))
    open_study(tmp_path, grid(), STUDY_FULL)
    assert (
        json.loads((tmp_path / "study.json").read_text())["group_settings"]["resnet_plateau"][
            "settings"
        ]["resnet_epochs"]
        == 10
    )
    # its cells trained with other group settings are another study
    monkeypatch.setitem(GROUPS, "resnet_plateau", replace(group, settings={"resnet_epochs": 11}))
    with pytest.raises(FileExistsError, match="another grid"):
        open_study(tmp_path, grid(), STUDY_FULL)


def test_quick_grid_is_small():
    cells = grid(quick=True)
    for name in GROUPS:
        assert 1 <= len({c.label for c in cells if c.group == name}) <= 2
    assert STUDY_QUICK.test_samples <= 100


def test_other_grid_in_same_folder_is_refused(tmp_path):
    open_study(tmp_path, grid(quick=True), STUDY_QUICK)
    open_study(tmp_path, grid(quick=True), STUDY_QUICK)  # the same study: resumed
    with pytest.raises(FileExistsError, match="another grid"):
        open_study(tmp_path, grid(quick=True)[:3], STUDY_QUICK)
    with pytest.raises(FileExistsError, match="another grid"):
        open_study(tmp_path, grid(), STUDY_FULL)
    # through the command: a full study in the quick study's folder
    assert cli_main(["study", "--out", str(tmp_path), "--only", "lenet"]) == 2
    # a report of a folder that holds no study
    assert cli_main(["study", "--report-only", "--out", str(tmp_path / "none")]) == 2


def test_other_test_subset_in_same_folder_is_refused(tmp_path, monkeypatch):
    # a group's test subset is part of the study: its corrupted images are generated once per
    # folder, so a study resumed with another subset would mix images
    open_study(tmp_path, grid(), STUDY_FULL)
    resnet = GROUPS["resnet"]
    monkeypatch.setitem(GROUPS, "resnet", replace(resnet, test_samples=resnet.test_samples + 1))
    with pytest.raises(FileExistsError, match="another grid"):
        open_study(tmp_path, grid(), STUDY_FULL)


def test_grid_that_adds_cells_extends_the_study(tmp_path):
    # a study run with fewer seeds (the first part of the committed one) grows to the full grid
    full = grid()
    first_part = [c for c in full if c.seed < 3]
    open_study(tmp_path, first_part, STUDY_FULL)
    open_study(tmp_path, full, STUDY_FULL)
    stored = json.loads((tmp_path / "study.json").read_text())
    assert len(stored["cells"]) == len(full) > len(first_part)
    open_study(tmp_path, full, STUDY_FULL)  # now the stored grid: resumed as is
    # a grid that changes a stored cell (not only adds cells) is another study
    changed = [replace(c, kwargs={"pp_alpha": 0.25}) if c == full[1] else c for c in full]
    with pytest.raises(FileExistsError, match="another grid"):
        open_study(tmp_path, changed, STUDY_FULL)
    # ... and so is one that drops cells
    with pytest.raises(FileExistsError, match="another grid"):
        open_study(tmp_path, first_part, STUDY_FULL)
    assert json.loads((tmp_path / "study.json").read_text()) == stored


def test_lowest_seeds_run_first_across_groups(tmp_path):
    cells = grid()
    todo = cells_to_run(tmp_path, cells)
    assert sorted(todo, key=cells.index) == cells  # every cell, once
    seeds = [c.seed for c in todo]
    assert seeds == sorted(seeds)
    # within a seed, the grid's order (its groups in turn)
    seed_0 = [c for c in cells if c.seed == 0]
    assert todo[: len(seed_0)] == seed_0
    assert [c.group for c in cells_to_run(tmp_path, cells, ["blurpool"])] == ["blurpool"] * len(
        [c for c in cells if c.group == "blurpool"]
    )


def test_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a study"):
        open_study(tmp_path, grid(quick=True), STUDY_QUICK)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_bad_group_and_workers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown group"):
        run_study(tmp_path, quick=True, only=["nope"])
    with pytest.raises(ValueError, match="--workers"):
        run_study(tmp_path, quick=True, only=["lenet"], workers=0)


def test_mean_interval_by_hand():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    half = T_975[2] * 1.0 / np.sqrt(3)  # sd of 1, 2, 3 is 1
    assert mean == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    mean, low, high = mean_interval([5.0])  # one seed: no interval, not a zero-width one
    assert mean == 5.0 and np.isnan(low) and np.isnan(high)
    # an accuracy near 100%: the t interval reaches past 100 (106.04 in the committed study)
    mean, low, high = mean_interval([98.0, 100.0, 100.0], PERCENT)
    half = T_975[2] * np.std([98.0, 100.0, 100.0], ddof=1) / np.sqrt(3)
    assert (mean, low, high) == pytest.approx((99 + 1 / 3, 99 + 1 / 3 - half, 100.0))


def test_holm_adjusted_p_values_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(2 x 0.03, 1 x 0.04)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([]) == []


def test_seed_p_value_is_below_005_exactly_when_the_seed_interval_excludes_0():
    for differences in ([1.0, 1.2, 0.9], [1.0, -1.0, 0.5], [0.3, 0.1], [-2.0, -2.5, -1.5, -2.2]):
        _, low, high = mean_interval(differences)
        assert (seed_p_value(differences) < 0.05) == (not low <= 0 <= high), differences
    # t = mean / (sd / sqrt n) = 1 / (1 / sqrt 3) with 2 degrees of freedom: p = 0.2254 (tables)
    assert seed_p_value([0.0, 1.0, 2.0]) == pytest.approx(0.2254, abs=1e-4)
    assert seed_p_value([0.5]) is None
    assert seed_p_value([0.2, 0.2]) == 0.0 and seed_p_value([0.0, 0.0]) == 1.0


def test_mean_corruption_accuracy_leaves_saturate_out_on_grey_images():
    results = {
        "clean_error": 0.1,
        "settings": {"input_size": [1, 28, 28]},
        "corruptions": {"fog": {"mean_error": 0.4}, "saturate": {"mean_error": 0.1},
                        "snow": {"mean_error": 0.2}},
        "summary": {"mean_corruption_error": (0.4 + 0.1 + 0.2) / 3},  # as stored before
    }  # fmt: skip
    assert cell_metrics(results)["mean corruption accuracy"] == pytest.approx([70.0])
    results["settings"]["input_size"] = [3, 32, 32]
    assert cell_metrics(results)["mean corruption accuracy"] == pytest.approx([100 - 70 / 3])


def test_sigterm_stops_the_study_like_ctrl_c():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached in full: the signal interrupts it
    assert signal.getsignal(signal.SIGTERM) is before


def test_paper_rows_mark_values_not_transcribed():
    rows = "\n".join(_paper_rows("gaussian", {"B": {}, "PB": {}, "C": {}}, MNIST_VARIANCES))
    assert "| B | paper (MNIST) | 98.85 | n.t. | n.t. | 90.24 |" in rows
    assert "| PB | paper (MNIST) | 98.74 | n.t. | n.t. | 95.24 |" in rows
    assert "C, PC (issue 27: PC 0.1-3.0 points less accurate than C" in rows
    assert "arXiv:1901.10208" in rows and "–" not in rows


def test_paper_resnet20_numbers_are_the_authors_released_ones(official_dir):
    for column, model in enumerate(("resnet-20", "resnet-20-pp")):
        text = (official_dir / "results" / "resnet" / model / "C_average.txt").read_text()
        released = {
            m.group(1): float(m.group(2))
            for m in re.finditer(
                r"Distortion: (\w+)\s*\| CE \(unnormalized\) \(%\): ([\d.]+)", text
            )
        }
        assert len(released) == 19
        assert {k: v[column] for k, v in PAPER_CIFAR10C_RESNET20.items()} == released, model


@needs_fmnist
def test_quick_study_runs_end_to_end(quick_lenet):
    lenet = [c for c in grid(quick=True) if c.group == "lenet"]
    assert len(lenet) == 4
    for cell in lenet:
        folder = quick_lenet / cell.folder
        assert cell_finished(folder)
        results = load_results(folder / "results.json")
        assert results["identity"]["model_args"] == cell.kwargs or not cell.kwargs
        assert set(results["noise_sweeps"]) == {"gaussian", "speckle", "contrast_poisson"}
        assert results["noise_sweeps"]["contrast_poisson"]["levels"] == [1.0, 0.2]
        assert not (folder / "evaluation").exists()
    # no other group ran
    assert not (quick_lenet / "cells" / "resnet").exists()
    report = (quick_lenet / "report" / "README.md").read_text()
    assert "## lenet" in report and "0 of 4 cells finished" in report  # the groups not run
    assert "PA vs A" in report and "Fashion-MNIST" in report and "MNIST" in report
    assert (quick_lenet / "report" / "lenet.png").stat().st_size > 1000


@needs_fmnist
def test_report_statistics_by_hand(quick_lenet):
    cells = [c for c in grid(quick=True) if c.group == "lenet"]
    summary = summarize_group(quick_lenet, cells)
    for label in ("A", "PA"):
        accuracy = [
            100 * (1 - load_results(quick_lenet / c.folder / "results.json")["clean_error"])
            for c in cells
            if c.label == label
        ]
        assert len(accuracy) == 2
        mean = (accuracy[0] + accuracy[1]) / 2
        half = T_975[1] * abs(accuracy[0] - accuracy[1]) / np.sqrt(2) / np.sqrt(2)
        low, high = max(mean - half, 0.0), min(mean + half, 100.0)  # an accuracy stays in 0-100
        got_mean, got_low, got_high, seeds = summary[label]["clean accuracy"][0]
        assert seeds == 2
        assert (got_mean, got_low, got_high) == pytest.approx((mean, low, high))
        assert (
            f"{mean:.2f} [{low:.2f}, {high:.2f}]"
            in (quick_lenet / "report" / "README.md").read_text()
        )
    # the paired effect: the mean over images of the per-image error difference, averaged over
    # the noise levels and the two seeds
    per_image = {}
    for c in cells:
        folder = quick_lenet / c.folder
        units = load_per_image(folder, load_results(folder / "results.json"))
        per_image[(c.label, c.seed)] = units["noise_sweeps/gaussian"].values.astype(float)
    expected = np.mean([(per_image[("PA", s)] - per_image[("A", s)]).mean(axis=0) for s in (0, 1)])
    compared = paired_comparisons(quick_lenet, cells, "PA", "A")
    assert compared["gaussian noise sweep"]["effect"] == pytest.approx(expected)
    # ... and the interval over the two seeds of each seed's mean difference (training randomness)
    per_seed = [(per_image[("PA", s)] - per_image[("A", s)]).mean() for s in (0, 1)]
    half = T_975[1] * abs(per_seed[0] - per_seed[1]) / np.sqrt(2) / np.sqrt(2)
    got = compared["gaussian noise sweep"]
    assert (got["seed_low"], got["seed_high"]) == pytest.approx((expected - half, expected + half))
    report = (quick_lenet / "report" / "README.md").read_text()
    assert f"[{100 * (expected - half):+.2f}, {100 * (expected + half):+.2f}]" in report
    assert compared["gaussian noise sweep"]["seeds"] == [0, 1]
    assert len(compared["clean"]["mcnemar_p_per_seed"]) == 2


@needs_fmnist
def test_resume_skips_finished_and_reruns_interrupted(quick_lenet, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(quick_lenet, out)
    cells = {c.folder: c for c in grid(quick=True) if c.group == "lenet"}
    finished, evaluation_cut, training_cut, corrupt = sorted(cells)
    before = (out / finished / "results.json").stat().st_mtime_ns
    # killed during the evaluation: its files not moved into the cell folder yet
    (out / evaluation_cut / "evaluation").mkdir()
    for name in ("results.json", "per_image.npz"):
        (out / evaluation_cut / name).rename(out / evaluation_cut / "evaluation" / name)
    # killed during training, before its first checkpoint
    shutil.rmtree(out / training_cut)
    (out / training_cut / "training").mkdir(parents=True)
    (out / training_cut / "training" / "metrics.jsonl").write_text("")
    # a results.json cut short
    (out / corrupt / "results.json").write_text('{"schema": ')
    assert not any(cell_finished(out / f) for f in (evaluation_cut, training_cut, corrupt))

    rerun = run_study(out, quick=True, only=["lenet"], workers=1)
    assert sorted(c.folder for c in rerun) == sorted([evaluation_cut, training_cut, corrupt])
    assert (out / finished / "results.json").stat().st_mtime_ns == before
    assert all(cell_finished(out / f) for f in cells)
    # the rerun cell trained from scratch gives what the uninterrupted run gave (seeded)
    redone = load_results(out / training_cut / "results.json")
    original = load_results(quick_lenet / training_cut / "results.json")
    assert redone["noise_sweeps"] == original["noise_sweeps"]
    assert run_study(out, quick=True, only=["lenet"], workers=1) == []


@needs_fmnist
def test_a_stopped_training_stops_the_study_and_resumes_to_the_same_model(
    quick_lenet, tmp_path, monkeypatch
):
    # the trainer's own stop (as on SIGINT / SIGTERM) after one of the 4 steps of a quick LeNet
    real_train = trainer.train
    monkeypatch.setattr(
        trainer,
        "train",
        lambda cfg, recipe=None: real_train(dataclasses.replace(cfg, max_steps=1), recipe),
    )
    out = tmp_path / "study"
    assert (
        cli_main(["study", "--quick", "--only", "lenet", "--workers", "1", "--out", str(out)])
        == 130
    )
    first = grid(quick=True)[0]
    assert (out / first.folder / "training" / RESUME_FILE).is_file()
    assert not cell_finished(out / first.folder)
    assert not (out / grid(quick=True)[1].folder).exists()  # the study stopped there
    monkeypatch.undo()
    run_study(out, quick=True, only=["lenet"], workers=1)
    resumed, whole = (load_results(root / first.folder) for root in (out, quick_lenet))
    assert resumed["identity"]["weights_sha256"] == whole["identity"]["weights_sha256"]


@needs_fmnist
def test_a_second_study_in_the_same_folder_is_refused(tmp_path, capsys):
    with exclusive_folder(tmp_path, "--out"):
        assert cli_main(["study", "--quick", "--only", "lenet", "--out", str(tmp_path)]) == 2
    assert "is in use by" in capsys.readouterr().err
    assert not (tmp_path / "study.json").exists()


@needs_fmnist
def test_plateau_report_sets_the_papers_resnet20_profile_beside_ours(tmp_path):
    run_study(tmp_path, quick=True, only=["resnet_plateau"], workers=1)
    report = write_study_report(tmp_path).read_text()
    assert "| R20 plateau | 2 of 2 |" in report and "## resnet\n\n" in report
    assert "0 of 4 cells finished" in report  # the resnet group of the quick grid: not run
    cells = [c for c in grid(quick=True) if c.group == "resnet_plateau"]
    per_seed = []
    for seed in (0, 1):
        errors = {}
        for c in cells:
            if c.seed == seed:
                folder = tmp_path / c.folder
                units = load_per_image(folder, load_results(folder / "results.json"))
                errors[c.label] = units["corruptions/gaussian_noise"].values.astype(float)
        per_seed.append(100 * (errors["R20-pp plateau"] - errors["R20 plateau"]).mean())
    mean = np.mean(per_seed)
    half = T_975[1] * abs(per_seed[0] - per_seed[1]) / np.sqrt(2) / np.sqrt(2)
    row = "| gaussian_noise | 57.41 | 49.90 | -7.51 | "
    assert row in report
    line = next(line for line in report.splitlines() if line.startswith(row))
    assert f"| {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] |" in line
    assert "Where the profiles disagree" in report and "Holm p" in report

    # one seed finished (a study that is still running): a single seed has no interval over
    # seeds, and no difference may be called clear across seeds on the strength of it
    for c in cells:
        if c.seed == 1:
            (tmp_path / c.folder / "results.json").rename(tmp_path / c.folder / "unfinished.json")
    report = write_study_report(tmp_path).read_text()
    section = report[report.index("## resnet_plateau") :].split("\n## ")[0]
    assert "| R20 plateau | 1 of 2 |" in section
    assert not re.search(r"\[([+-]?\d+\.\d\d), \1\]", section), "a zero-width interval"
    summary = next(line for line in section.splitlines() if line.startswith("- R20-pp plateau"))
    assert "clear" not in summary and summary.count("1 seed: no interval over seeds") == 3
    assert "training randomness left out" in section
