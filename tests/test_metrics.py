"""Robustness formulas on hand-computed numbers, the built-in baselines and the authors' results."""

import json

import numpy as np
import pytest
import torch

from timm_pushpull.robustness import metrics
from timm_pushpull.robustness.baselines import (
    ALEXNET_CIFAR10_C,
    ALEXNET_IMAGENET_C,
    get_baseline,
    read_official_results,
)


def test_error_rate_counts_wrong_predictions():
    assert metrics.error_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])) == 0.5
    with pytest.raises(ValueError, match="shape"):
        metrics.error_rate([1, 2], [1, 2, 3])


def test_corruption_error_is_sum_over_sum():
    # (0.2 + 0.4) / (0.4 + 0.4)
    assert metrics.corruption_error([0.2, 0.4], [0.4, 0.4]) == pytest.approx(0.75)
    # a published mean over severities gives the same ratio
    assert metrics.corruption_error([0.2, 0.4], 0.4) == pytest.approx(0.75)
    assert metrics.corruption_error([0.1, 0.2, 0.3], [0.3, 0.3, 0.6]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="severities"):
        metrics.corruption_error([0.2, 0.4], [0.4, 0.4, 0.4])


def test_relative_corruption_error_subtracts_clean_errors():
    # ((0.3 - 0.1) + (0.5 - 0.1)) / ((0.5 - 0.2) + (0.7 - 0.2)) = 0.6 / 0.8
    assert metrics.relative_corruption_error([0.3, 0.5], 0.1, [0.5, 0.7], 0.2) == pytest.approx(
        0.75
    )
    assert metrics.relative_corruption_error([0.3, 0.5], 0.1, 0.6, 0.2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="exceed its clean error"):
        metrics.relative_corruption_error([0.3], 0.1, [0.2], 0.2)


def test_mean_corruption_error_over_named_corruptions():
    assert metrics.mean_corruption_error({"a": 0.5, "b": 1.0, "c": 3.0}, ["a", "b"]) == 0.75
    with pytest.raises(ValueError, match="missing"):
        metrics.mean_corruption_error({"a": 0.5}, ["a", "b"])


def test_summarize_corruptions_reports_partial_means():
    summary = metrics.summarize_corruptions(
        {"a": [0.2, 0.4], "b": [0.3, 0.3], "x": [0.9, 0.9]},
        0.1,
        {"a": 0.4, "b": 0.6, "c": 0.5},
        0.2,
    )
    assert summary["ce"] == pytest.approx({"a": 0.75, "b": 0.5})  # "x" is unknown to the baseline
    assert summary["rce"] == pytest.approx({"a": 0.2 / 0.2, "b": 0.2 / 0.4})
    assert summary["mce"] == pytest.approx(0.625)
    assert summary["relative_mce"] == pytest.approx(0.75)
    assert summary["mce_corruptions"] == ["a", "b"] and not summary["mce_complete"]
    assert summary["relative_mce_corruptions"] == ["a", "b"]
    assert not summary["relative_mce_complete"]


def test_relative_mce_has_its_own_completeness():
    # both corruptions have a CE, but for snow the baseline's corrupted error equals its clean
    # error: no rCE, so the relative mCE covers rain only and is not comparable with published ones
    summary = metrics.summarize_corruptions(
        {"snow": [0.3], "rain": [0.4]}, 0.1, {"snow": 0.2, "rain": 0.5}, 0.2
    )
    assert summary["mce_corruptions"] == ["snow", "rain"] and summary["mce_complete"]
    assert summary["relative_mce"] == pytest.approx(0.3 / 0.3)
    assert summary["relative_mce_corruptions"] == ["rain"]
    assert not summary["relative_mce_complete"]


def test_summarize_corruptions_skips_undefined_ratios():
    # fog: the baseline never errs (no CE); snow: corrupted = clean error for the baseline (no rCE)
    summary = metrics.summarize_corruptions(
        {"fog": [0.2], "snow": [0.3], "rain": [0.4]},
        0.1,
        {"fog": 0.0, "snow": 0.2, "rain": 0.5},
        0.2,
    )
    assert summary["ce"] == pytest.approx({"snow": 1.5, "rain": 0.8})
    assert summary["rce"] == pytest.approx({"rain": 0.3 / 0.3})
    assert summary["mce"] == pytest.approx(1.15) and summary["relative_mce"] == pytest.approx(1.0)


def test_flip_probability_noise_vs_consecutive_frames():
    predictions = np.array([[0, 0, 1, 1], [2, 3, 3, 3]])
    # noise: frames 1..3 against frame 0 -> [0, 1, 1] and [1, 1, 1]
    assert metrics.flip_probability(predictions, noise=True) == pytest.approx(5 / 6)
    # others: consecutive frames -> [0, 1, 0] and [1, 0, 0]
    assert metrics.flip_probability(predictions, noise=False) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="frames"):
        metrics.flip_probability(np.zeros((3, 1)), noise=True)


def test_flip_rates_normalise_by_the_baseline():
    assert metrics.flip_rates({"a": 0.1, "b": 0.2, "d": 0.1}, {"a": 0.2, "c": 0.5, "d": 0.0}) == {
        "a": 0.5
    }


def test_shift_consistency_is_agreement():
    assert metrics.shift_consistency(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75


@pytest.mark.parametrize(
    "model, folder, mce, relative_mce",
    [("resnet20", "resnet-20", 103.7, 168.6), ("resnet20_pp", "resnet-20-pp", 101.4, 157.9)],
)
def test_authors_resnet20_against_alexnet_cifar10c(official_dir, model, folder, mce, relative_mce):
    from timm_pushpull.hub import official_results

    # the clean error that goes on the model card (tested against the authors' files in
    # test_models_official.py): best_prec1, 92.43% and 91.71%
    clean_error = official_results(model, official_dir / "results" / "resnet" / folder).clean_error
    results = read_official_results(official_dir / "results" / "resnet" / folder)
    assert len(results["corruptions"]) == 19
    assert all(len(errors) == 5 for errors in results["corruptions"].values())
    summary = metrics.summarize_corruptions(
        results["corruptions"],
        clean_error,
        ALEXNET_CIFAR10_C.corruption_errors,
        ALEXNET_CIFAR10_C.clean_error,
        ALEXNET_CIFAR10_C.mce_corruptions,
    )
    assert summary["mce_complete"] and len(summary["mce_corruptions"]) == 19
    assert round(100 * summary["mce"], 1) == mce
    assert round(100 * summary["relative_mce"], 1) == relative_mce


def test_official_results_parser(official_dir):
    results = read_official_results(official_dir / "results" / "resnet" / "resnet-20")
    assert results["corruptions"]["gaussian_noise"][0] == pytest.approx(0.2954)
    assert results["corruptions"]["saturate"][-1] == pytest.approx(0.1538)
    assert results["perturbations"]["translate"] == pytest.approx(0.04556)
    assert len(results["perturbations"]) == 14
    assert results["clean_error"] is None  # no test_clean.txt for the ResNets
    densenet = read_official_results(official_dir / "results" / "densenet" / "100-12")
    assert densenet["clean_error"] == pytest.approx(1 - 0.9521)


def test_official_results_parser_rejects_garbage(tmp_path):
    (tmp_path / "C_details.txt").write_text("gaussian_noise: 0.1 0.2\nthis is not a result\n")
    with pytest.raises(ValueError, match=r"C_details.txt:2"):
        read_official_results(tmp_path)
    with pytest.raises(ValueError, match="no C_details.txt"):
        read_official_results(tmp_path / "missing")


def test_alexnet_imagenetc_matches_published_means():
    # the per-corruption means used by AugMix (google-research/augmix, imagenet.py, ALEXNET_ERR)
    augmix = [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816,
              0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500]  # fmt: skip
    means = ALEXNET_IMAGENET_C.mean_errors()
    assert list(means) == list(ALEXNET_IMAGENET_C.mce_corruptions)
    assert [means[name] for name in ALEXNET_IMAGENET_C.mce_corruptions] == pytest.approx(
        augmix, abs=1e-6
    )
    # AlexNet against itself: every CE is exactly 1
    ce = metrics.summarize_corruptions(
        {k: list(v) for k, v in ALEXNET_IMAGENET_C.corruption_errors.items()}, 0.435,
        ALEXNET_IMAGENET_C.corruption_errors, ALEXNET_IMAGENET_C.clean_error,
    )  # fmt: skip
    assert ce["mce"] == pytest.approx(1.0) and ce["relative_mce"] == pytest.approx(1.0)


def test_alexnet_cifar10c_table():
    errors = ALEXNET_CIFAR10_C.corruption_errors
    assert len(errors) == 19 and errors["contrast"] == pytest.approx(0.4677)
    assert ALEXNET_CIFAR10_C.clean_error == pytest.approx(0.1387)


def test_get_baseline_sources(tmp_path, official_dir):
    assert get_baseline("alexnet-cifar10c") is ALEXNET_CIFAR10_C
    assert get_baseline(None) is None
    folder = get_baseline(official_dir / "results" / "resnet" / "resnet-20")
    assert folder.flip_probabilities["rotate"] == pytest.approx(0.05268)
    results = {"schema": "timm-pushpull-robustness", "version": 1, "model": "m", "clean_error": 0.1,
               "settings": {"severities": [1, 2]},
               "corruptions": {"fog": {"errors": [0.2, 0.3], "mean_error": 0.25}},
               "perturbations": {"rotate": {"flip_probability": 0.05}}}  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    from_file = get_baseline(path)
    assert from_file.name == "m" and from_file.corruption_errors == {"fog": (0.2, 0.3)}
    assert from_file.severities == (1, 2) and from_file.flip_probabilities == {"rotate": 0.05}
    with pytest.raises(ValueError, match="alexnet-cifar10c"):
        get_baseline("alexnet")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json is not a readable results.json"):
        get_baseline(tmp_path / "broken.json")
    # evaluate writes the severities under settings: a top-level key is no results.json
    (tmp_path / "old.json").write_text(
        json.dumps({**results, "settings": {}, "severities": [1, 2]})
    )
    with pytest.raises(ValueError, match="need settings.severities"):
        get_baseline(tmp_path / "old.json")
