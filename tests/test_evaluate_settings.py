"""EvalSettings: checked values, the settings block of results.json it records (the version 2
layout, which files written before it existed hold), reading that block back, and the plan that
completes them from the model and data before any work."""

import dataclasses
import json

import pytest
import torch
import torch.nn as nn

from timm_pushpull.robustness.evaluate import evaluate_model, run_evaluation
from timm_pushpull.robustness.plan import EvalData, plan_evaluation
from timm_pushpull.robustness.settings import EvalSettings, RunOptions


class MeanIntensityClassifier(nn.Module):
    """Class k for a mean intensity near (k + 0.5) / 10; counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        centers = (torch.arange(10, device=x.device) + 0.5) / 10
        return -((x.mean(dim=(1, 2, 3))[:, None] - centers) ** 2)


def _images():
    generator = torch.Generator().manual_seed(5)
    return torch.rand(24, 3, 16, 16, generator=generator), torch.arange(24) % 10


RUN = dict(
    suites=["c", "shift", "noise"], corruptions=["contrast", "frost"], severities=[1, 3],
    max_images=20, seed=7, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], shift_trials=2,
    num_frames=5, noise_levels={"gaussian": [0.0, 0.02]}, frost="procedural",
)  # fmt: skip
DEFAULT_VARIANCES = [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03]
# The settings block timm-pushpull 0.1.0 at commit 0f6185d (results format version 2, before
# EvalSettings) wrote for RUN on _images(): a run of today's code must record exactly this, or
# the results.json files of those versions could no longer be resumed.
V2_SETTINGS = {
    "datasets": {"clean": "random 16 px", "c": "generated", "p": "generated"},
    "scale": "cifar", "seed": 7, "severities": [1, 3], "n_images": 20, "input_size": [3, 16, 16],
    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
    "shift": {"mode": "circular", "max_shift": 2, "trials": 2},  # round(16 / 7)
    "noise_levels": {"gaussian": [0.0, 0.02], "speckle": DEFAULT_VARIANCES,
                     "contrast_poisson": [0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5]},
    "num_frames": 5, "precision": "fp32", "channels_last": False,
    "frost": {"kind": "procedural", "origin": "procedural", "folder": None, "comparable": False},
    "spatter": "wrap", "corruption_output": "released",
}  # fmt: skip


def test_results_record_the_version_2_settings_block():
    results = evaluate_model(MeanIntensityClassifier(), *_images(), EvalSettings(**RUN),
                             dataset_names={"clean": "random 16 px"}, progress=False)  # fmt: skip
    assert results["version"] == 2
    assert results["settings"] == V2_SETTINGS
    # keyword overrides of the fields are the same run as settings made beforehand
    again = evaluate_model(MeanIntensityClassifier(), *_images(), **RUN,
                           dataset_names={"clean": "random 16 px"}, progress=False)  # fmt: skip
    assert again["settings"] == V2_SETTINGS and again["clean_error"] == results["clean_error"]


def test_settings_read_back_from_a_version_2_block():
    settings = EvalSettings.from_record(V2_SETTINGS, suites=["c", "shift"])
    assert settings == EvalSettings(
        suites=("c", "shift"), severities=(1, 3), scale="cifar", seed=7, max_images=20,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), max_shift=2, shift_trials=2,
        noise_levels={"gaussian": (0.0, 0.02), "speckle": tuple(DEFAULT_VARIANCES),
                      "contrast_poisson": (0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5)},
        num_frames=5, frost="procedural",
    )  # fmt: skip
    # fields a file lacks take their defaults, and so does frost when none was generated
    older = {key: value for key, value in V2_SETTINGS.items() if key != "precision"}
    older["frost"] = None
    read = EvalSettings.from_record(older)
    assert (read.precision, read.frost, read.suites) == ("fp32", "photos", ("c",))


def test_settings_read_back_from_results_json_resume_that_run(tmp_path):
    images, labels = _images()
    first = evaluate_model(MeanIntensityClassifier(), images, labels, out_dir=tmp_path,
                           progress=False, **RUN)  # fmt: skip
    stored = json.loads((tmp_path / "results.json").read_text())
    settings = EvalSettings.from_record(stored["settings"], suites=RUN["suites"],
                                        corruptions=RUN["corruptions"])  # fmt: skip
    model = MeanIntensityClassifier()
    resumed = evaluate_model(model, images, labels, settings, out_dir=tmp_path, progress=False)
    assert model.calls == 0  # every unit was found done: the very same run
    assert resumed == first


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("suites", ["c", "x"], "unknown suites ['x']; allowed: c, p, shift, noise"),
        ("suites", [], "suites must be a non-empty list of names"),
        ("severities", [0, 5], "severities must be distinct ints in 1..5, got [0, 5]"),
        ("severities", [2, 2], "severities must be distinct ints in 1..5"),
        ("scale", "big", "scale must be one of cifar, imagenet, got 'big'"),
        ("seed", 1.5, "seed must be an int in [0, 2**63), got 1.5"),
        ("seed", -1, "seed must be an int in [0, 2**63), got -1"),  # numpy's draws refuse it
        ("seed", 2**63, "seed must be an int in [0, 2**63)"),  # torch's generator overflows
        ("mean", [float("nan")], "mean must be finite numbers, got [nan]"),
        ("noise_levels", {"speckle": [0.01, -0.01]}, "noise_levels['speckle'] must be >= 0"),
        ("noise_levels", {"gaussian": [float("inf")]}, "must be finite numbers"),
        ("max_images", 0, "max_images must be an int >= 1 (or None), got 0"),
        ("shift_mode", "roll", "shift_mode must be one of circular, crop, got 'roll'"),
        ("shift_trials", None, "shift_trials must be an int >= 1"),
        ("max_shift", -1, "max_shift must be an int >= 0 (or None), got -1"),
        ("num_frames", 1, "num_frames must be an int >= 2 (or None), got 1"),
        ("mean", [0.5], "mean and std must both be given"),
        ("noise_levels", {"salt": [0.1]},
         "unknown noise sweeps ['salt']; allowed: gaussian, speckle, contrast_poisson"),
        ("noise_levels", {"gaussian": ["a"]}, "noise_levels['gaussian'] must be a list of numbers"),
        ("precision", "half", "precision must be one of fp32, bf16, fp16, got 'half'"),
        ("channels_last", "yes", "channels_last must be True or False, got 'yes'"),
        ("frost", "photo", "frost must be one of photos, procedural, got 'photo'"),
        ("spatter", "splash", "spatter must be one of wrap, clip, got 'splash'"),
        ("corruption_output", "png", "corruption_output must be one of released, float"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_field_and_what_it_allows(field, value, message):
    with pytest.raises(ValueError) as error:
        EvalSettings(**{field: value})
    assert message in str(error.value)
    with pytest.raises(ValueError) as error:  # a changed copy is checked again
        EvalSettings().replace(**{field: value})
    assert message in str(error.value)


@pytest.mark.parametrize("std", [[0.5, 0.0, 0.5], [-0.2], [float("nan")]])
def test_normalisation_that_divides_by_zero_or_nan_is_refused(std):
    with pytest.raises(ValueError, match="std must be (positive|finite)"):
        EvalSettings(mean=[0.5] * len(std), std=std)


def test_settings_are_frozen_and_unknown_ones_refused():
    settings = EvalSettings(suites=["c", "noise"], severities=[3, 1], mean=[0.5], std=[0.2])
    assert (settings.suites, settings.severities, settings.mean) == (("c", "noise"), (3, 1), (0.5,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 3
    with pytest.raises(
        TypeError, match=r"unknown evaluation settings \['sutes'\]; settings are: suites"
    ):
        evaluate_model(MeanIntensityClassifier(), *_images(), sutes=["c"], progress=False)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        evaluate_model(MeanIntensityClassifier(), *_images(), batch_size=0, progress=False)


def test_the_plan_completes_the_settings_from_model_and_data_before_any_work():
    images, labels = _images()
    model = MeanIntensityClassifier()
    model.pretrained_cfg = {"mean": (0.25, 0.5, 0.75), "std": (0.5, 0.5, 0.5)}  # timm's config
    data = EvalData.from_images(images, labels, names={"clean": "random 16 px"})
    settings = EvalSettings(suites=["shift", "c"], corruptions=["frost", "contrast"], seed=7,
                            max_images=20, severities=[1, 3], frost="procedural")  # fmt: skip
    plan = plan_evaluation(model, data, settings)
    assert model.calls == 0
    finished = plan.settings
    assert (finished.mean, finished.std) == ((0.25, 0.5, 0.75), (0.5, 0.5, 0.5))
    assert (finished.scale, finished.max_shift) == ("cifar", 2)  # 16 px images, round(16 / 7)
    assert finished.noise_levels["speckle"] == tuple(DEFAULT_VARIANCES)
    # suites in the order runs take them, units of a suite in the order asked for
    assert plan.units == (("clean_error", None), ("corruptions", "frost"),
                          ("corruptions", "contrast"), ("shift", None))  # fmt: skip
    assert (plan.frost.kind, plan.n_images, plan.input_size) == ("procedural", 20, (3, 16, 16))
    results = run_evaluation(model, data, plan, RunOptions(progress=False))
    assert results["settings"] == json.loads(json.dumps(plan.record()))
    # evaluate_model is the plan of its arguments, run
    again = MeanIntensityClassifier()
    again.pretrained_cfg = model.pretrained_cfg
    assert evaluate_model(again, images, labels, settings, dataset_names=data.names,
                          progress=False) == results  # fmt: skip


def test_a_suite_the_data_cannot_serve_is_refused_by_the_plan():
    with pytest.raises(ValueError, match="suite 'noise' needs clean images"):
        plan_evaluation(MeanIntensityClassifier(), EvalData(), EvalSettings(suites=["noise"]))
