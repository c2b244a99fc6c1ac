"""results.json: validation with clear errors, atomic save, identity differences, summaries."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from timm_pushpull.robustness.baselines import ALEXNET_CIFAR10_C, Baseline
from timm_pushpull.robustness.results import (
    PER_IMAGE_FILE,
    ResultsFile,
    UnitOutcomes,
    array_sha256,
    load_per_image,
    load_results,
    run_differences,
    save_results,
    state_dict_sha256,
    summarize,
    validate_results,
)


def minimal(**overrides):
    results = {
        "schema": "timm-pushpull-robustness", "version": 2, "model": "m",
        "identity": {"architecture": "m", "weights_sha256": "ab"},
        "settings": {"severities": [1, 3], "seed": 0},
        "clean_error": 0.1,
        "corruptions": {"fog": {"errors": [0.2, 0.4], "mean_error": 0.3, "source": "generated"}},
    }  # fmt: skip
    return {**results, **overrides}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(schema="other"), "not a results.json"),
        (dict(version=3), "version 3.*upgrade timm-pushpull"),
        (dict(identity=None), "identity must be an object"),
        (dict(settings={"severities": [1, 1]}), "distinct ints in 1..5"),
        (dict(settings={"severities": [0, 6]}), "distinct ints in 1..5"),
        (dict(settings={}), "need settings.severities"),
        (dict(clean_error=7.5), "clean_error must be a number in \\[0, 1\\]"),
        (dict(corruptions={"fog": {"errors": [0.2], "mean_error": 0.2}}),
         "corruptions.fog.errors has 1 values but settings.severities 2"),
        (dict(perturbations={"rotate": {"flip_probability": "x"}}),
         "perturbations.rotate.flip_probability"),
        (dict(noise_sweeps={"gaussian": {"levels": [0.0, 0.1], "errors": [0.1]}}),
         "noise_sweeps.gaussian has 2 levels but 1 errors"),
        (dict(world_size=0), "world_size must be an int >= 1"),
    ],
)  # fmt: skip
def test_validation_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_results(minimal(**overrides), "x.json")


def test_version_1_is_read_with_empty_sections():
    old = minimal(version=1)
    del old["identity"]
    results = validate_results(old)
    assert (
        results["identity"] is None and results["perturbations"] == {} and results["shift"] is None
    )


def test_save_is_atomic_and_round_trips(tmp_path):
    path = save_results(minimal(), tmp_path / "out" / "results.json")
    assert load_results(tmp_path / "out") == validate_results(minimal())
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left
    with pytest.raises(ValueError, match="results to save"):
        save_results(minimal(clean_error=-1), path)
    assert json.loads(path.read_text())["clean_error"] == 0.1  # the old file is untouched
    path.write_text('{"schema": ')
    with pytest.raises(ValueError, match="is not a readable results.json"):
        load_results(path)


def test_run_differences_name_nested_fields_and_missing_ones():
    stored = minimal()
    requested = minimal(
        identity={"architecture": "m", "weights_sha256": "cd", "device": "cuda"},
        settings={"severities": [1, 3], "seed": 0, "shift": {"mode": "crop"}},
    )
    assert run_differences(stored, requested) == [
        ("identity.weights_sha256", "ab", "cd"),
        ("identity.device", "absent", "cuda"),
        ("settings.shift.mode", "absent", "crop"),
    ]
    assert run_differences(stored, minimal()) == []


def test_results_file_refuses_another_run_and_overwrite_replaces_it(tmp_path):
    header = {k: v for k, v in minimal().items() if k not in ("clean_error", "corruptions")}
    store = ResultsFile(tmp_path, header)
    store.add("clean_error", None, 0.25, CLEAN_OUTCOMES, CLEAN_INPUTS)
    store.save({}, None)
    other = {**header, "settings": {"severities": [1, 3], "seed": 1}}
    with pytest.raises(ValueError, match=r"settings.seed: 0 \(stored\) vs 1 \(this run\)"):
        ResultsFile(tmp_path, other)
    assert ResultsFile(tmp_path, header).results["clean_error"] == 0.25  # resumed
    fresh = ResultsFile(tmp_path, other, overwrite=True)
    assert fresh.results["clean_error"] is None and fresh.per_image == {}
    assert load_results(tmp_path)["clean_error"] == 0.25  # nothing is replaced before a save
    assert load_per_image(tmp_path)["clean_error"].values.tolist() == [True, False, False, False]


# image 0 of images 3, 5, 8, 9 wrong: clean error 0.25
CLEAN_OUTCOMES = UnitOutcomes(np.array([True, False, False, False]), np.array([3, 5, 8, 9]))
CLEAN_INPUTS = {"clean": "0" * 64}  # the fingerprint of the data the units read


def test_per_image_outcomes_stay_in_step_with_results_json(tmp_path):
    header = {k: v for k, v in minimal().items() if k not in ("clean_error", "corruptions")}
    store = ResultsFile(tmp_path, header)
    store.add("clean_error", None, 0.25, CLEAN_OUTCOMES, CLEAN_INPUTS)
    fog = UnitOutcomes(np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool), np.array([3, 5, 8, 9]))
    store.add("corruptions", "fog", {"errors": [0.5, 0.75], "mean_error": 0.625}, fog, CLEAN_INPUTS)
    store.save({}, None)
    loaded = load_per_image(tmp_path)
    assert list(loaded) == ["clean_error", "corruptions/fog"]
    assert loaded["corruptions/fog"].values.tolist() == fog.values.tolist()
    assert loaded["corruptions/fog"].indices.tolist() == [3, 5, 8, 9]

    # a crash after the outcomes of a unit were written, before results.json listed it
    written = json.loads((tmp_path / "results.json").read_text())
    store.add("shift", None, {"consistency": 1.0}, CLEAN_OUTCOMES, CLEAN_INPUTS)
    store.save({}, None)
    (tmp_path / "results.json").write_text(json.dumps(written))
    assert list(load_per_image(tmp_path)) == ["clean_error", "corruptions/fog"]
    assert ResultsFile(tmp_path, header).results["shift"] is None  # evaluated again

    # results.json without outcomes (an older file) resumes without the units lacking them
    (tmp_path / PER_IMAGE_FILE).unlink()
    resumed = ResultsFile(tmp_path, header)
    assert resumed.results["clean_error"] is None and resumed.results["corruptions"] == {}
    with pytest.raises(FileNotFoundError, match=PER_IMAGE_FILE):
        load_per_image(tmp_path)

    # another run's outcomes beside these results are never read
    other = {**header, "settings": {"severities": [1, 3], "seed": 1}}
    store = ResultsFile(tmp_path / "other", other)
    store.add("clean_error", None, 0.25, CLEAN_OUTCOMES, CLEAN_INPUTS)
    store.save({}, None)
    (tmp_path / "other" / PER_IMAGE_FILE).rename(tmp_path / PER_IMAGE_FILE)
    with pytest.raises(ValueError, match="another run"):
        load_per_image(tmp_path)
    assert ResultsFile(tmp_path, header).results["clean_error"] is None

    # the demo's own file of earlier versions (no indices, no run): not read either
    np.savez(tmp_path / PER_IMAGE_FILE, clean=CLEAN_OUTCOMES.values)
    with pytest.raises(ValueError, match="not a per_image.npz of `timm-pushpull evaluate`"):
        load_per_image(tmp_path)
    assert ResultsFile(tmp_path, header).results["clean_error"] is None


def test_hashes_see_values_not_objects():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    copy = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    copy.load_state_dict(model.state_dict())
    assert state_dict_sha256(model) == state_dict_sha256(copy)
    with torch.no_grad():
        copy[1].running_mean += 1  # a buffer changes the numbers as much as a weight
    assert state_dict_sha256(model) != state_dict_sha256(copy)
    assert array_sha256([0, 1, 2]) == array_sha256(torch.tensor([0, 1, 2]).numpy())
    assert array_sha256([0, 1, 2]) != array_sha256([0, 2, 1])


def test_summary_pairs_severities_with_the_baseline():
    results = validate_results(minimal())  # fog on severities 1 and 3
    # a mean-only baseline (the published AlexNet table) needs all five severities
    summary = summarize(results, ALEXNET_CIFAR10_C)
    assert summary["ce"] == {} and summary["mce"] is None and not summary["mce_complete"]
    per_severity = Baseline("b", "test", 0.05, {"fog": (0.5, 0.8)}, severities=(3, 4))
    summary = summarize(results, per_severity)
    assert summary["ce_severities"] == {"fog": [3]}
    assert summary["ce"] == {"fog": pytest.approx(0.4 / 0.5)}
    assert summary["rce"] == {"fog": pytest.approx((0.4 - 0.1) / (0.5 - 0.05))}
    assert summary["mce_corruptions"] == ["fog"] and not summary["mce_complete"]  # 1 severity


def test_mean_corruption_error_leaves_saturate_out_on_grey_images_only():
    from timm_pushpull.robustness.corruptions import corrupt
    from timm_pushpull.robustness.report import format_comparison

    # 8-bit images, as the released sets store them: saturate hands a 1-channel one back unchanged
    grey = torch.randint(0, 256, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0)) / 255
    for severity in range(1, 6):
        assert torch.equal(corrupt(grey, "saturate", severity, scale="cifar"), grey)
    corruptions = {
        "fog": {"errors": [0.2, 0.4], "mean_error": 0.3, "source": "generated"},
        "saturate": {"errors": [0.1, 0.1], "mean_error": 0.1, "source": "generated"},
    }
    settings = {"severities": [1, 3], "seed": 0}
    rgb = validate_results(
        minimal(corruptions=corruptions, settings={**settings, "input_size": [3, 8, 8]})
    )
    mono = validate_results(
        minimal(corruptions=corruptions, settings={**settings, "input_size": [1, 8, 8]})
    )
    assert summarize(rgb)["mean_corruption_error"] == pytest.approx((0.3 + 0.1) / 2)
    assert summarize(mono)["mean_corruption_error"] == pytest.approx(0.3)  # fog alone
    table = format_comparison([{**mono, "summary": summarize(mono)}], ["m"])
    assert "| mean corruption error (not of saturate: grey images) | 30.00" in table


def test_a_damaged_results_file_is_not_resumed_but_can_be_overwritten(tmp_path):
    (tmp_path / "results.json").write_text('{"schema": "timm-pushpull-robustness", "vers')
    header = {k: v for k, v in minimal().items() if k not in ("clean_error", "corruptions")}
    with pytest.raises(ValueError, match="not a readable results.json.*--overwrite"):
        ResultsFile(tmp_path, header)
    ResultsFile(tmp_path, header, overwrite=True).save({}, None)
    assert load_results(tmp_path)["identity"] == header["identity"]
