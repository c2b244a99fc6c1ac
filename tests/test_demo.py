"""The demo: verdict logic on hand-made results, and the whole pipeline on real Fashion-MNIST in
its --quick configuration."""

import argparse
import json

import numpy as np
import pytest
import timm
import torch

from timm_pushpull.cli import main as cli_main
from timm_pushpull.data import FASHION_MNIST_SYSTEM_DIR
from timm_pushpull.demo import DEMO_MODELS, add_arguments, compare_models, main, verdict_text
from timm_pushpull.robustness.results import UnitOutcomes, load_per_image


def outcomes(clean_wrong, corruption_wrong, agree, images=None):
    """Per-image outcomes of one model as ``evaluate`` keeps them: 1 = wrong (agree: 1 = the two
    shifted copies agree), of the test images ``images`` (default: 0..n-1)."""
    indices = np.arange(len(clean_wrong)) if images is None else np.asarray(images)
    return {
        "clean_error": UnitOutcomes(np.asarray(clean_wrong), indices),
        **{f"corruptions/{k}": UnitOutcomes(np.asarray(v), indices)
           for k, v in corruption_wrong.items()},
        "noise_sweeps/gaussian": UnitOutcomes(np.stack([clean_wrong, clean_wrong]), indices),
        "shift": UnitOutcomes(np.asarray(agree)[None], indices),
    }  # fmt: skip


def test_verdicts_are_paired_over_images_with_intervals():
    n = 200

    def ones(*spans):  # 1 on the images in the given [start, stop) ranges
        return np.isin(np.arange(n), np.r_[tuple(slice(a, b) for a, b in spans)])

    reference = outcomes(
        ones((0, 20)),
        {"gaussian_noise": np.stack([ones((0, 60))] * 3), "fog": np.stack([ones((0, 40))] * 3)},
        ~ones((0, 40)),
    )
    candidate = outcomes(
        ones((0, 20)),
        # gaussian_noise: wrong on 20 of the reference's 60 images only -> clearly better;
        # fog: 40 other images than the reference's 40 -> 20% vs 20%, no clear difference
        {"gaussian_noise": np.stack([ones((0, 20))] * 3), "fog": np.stack([ones((100, 140))] * 3)},
        ~ones((0, 10)),
    )
    tests = compare_models(candidate, reference)
    assert tests["gaussian_noise"]["verdict"] == "better"
    assert tests["gaussian_noise"]["effect"] == pytest.approx(-0.2)
    assert tests["gaussian_noise"]["high"] < 0
    assert tests["fog"]["verdict"] == "no clear difference" and tests["fog"]["low"] < 0
    assert tests["shift consistency"]["verdict"] == "better"  # 95% vs 80% agreement, same images
    assert tests["clean"]["verdict"] == "no clear difference" and tests["clean"]["p_value"] == 1.0
    assert tests["gaussian noise sweep"]["verdict"] == "no clear difference"
    # every image averaged over both corruptions and all severities: 0.1 vs 0.25
    assert tests["mean corruption error"]["candidate"] == pytest.approx(0.15)
    assert tests["mean corruption error"]["reference"] == pytest.approx(0.25)
    text = "\n".join(verdict_text("net_pp", "net", tests))
    assert "**net_pp was more robust overall**: mean corruption error (15.0% vs 25.0% error" in text
    assert (
        "net_pp was more robust on: gaussian_noise (10.0% vs 30.0% error, difference -20.0 points"
        in text
    )
    assert "No clear difference on 2 test(s): fog, gaussian noise sweep." in text
    assert "McNemar p = 1): no clear difference." in text
    # outcomes of other images are not paired
    shuffled = outcomes(ones((0, 20)), {}, ~ones((0, 10)), images=np.arange(n)[::-1])
    with pytest.raises(ValueError, match="'clean' on other images"):
        compare_models(shuffled, reference)


@pytest.mark.skipif(
    not (FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)
def test_quick_demo_end_to_end(tmp_path, monkeypatch):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # a process-wide singleton: start from the demo's settings
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "report"
    assert main(parser.parse_args(["--quick", "--out", str(out), "--no-progress"])) == 0
    readme = (out / "README.md").read_text()
    assert "trained **once** (seed 0)" in readme and "64 Fashion-MNIST test images" in readme
    assert "--quick run: a check of the pipeline" in readme
    summary = json.loads((out / "summary.json").read_text())
    assert "a difference counts only when its 95% interval" in readme
    # the verdicts are those of the per-image outcomes the benchmark kept beside results.json
    kept = {model: load_per_image(out / "robustness" / model) for model, _ in DEMO_MODELS}
    for pair in summary["comparisons"]:
        candidate, reference = pair.split(" vs ")
        redone = json.loads(json.dumps(compare_models(kept[candidate], kept[reference])))
        assert summary["comparisons"][pair] == redone
    for pair, tests in summary["comparisons"].items():
        candidate, reference = pair.split(" vs ")
        section = readme.split(f"### {pair}\n")[1].split("###")[0]
        # the verdicts say what the paired comparisons in summary.json found, test by test
        for name, test in tests.items():
            if name == "clean":
                continue
            if test["verdict"] == "no clear difference":
                assert name in section.split("No clear difference on")[1].split("\n")[0]
            else:
                line = "more robust on" if test["verdict"] == "better" else "less robust on"
                listed = section.split(f"{candidate} was {line}:")[1].split("\n")[0]
                assert (
                    f"{name} ({100 * test['candidate']:.1f}% vs {100 * test['reference']:.1f}%"
                    in listed
                )
            assert (test["low"] <= 0 <= test["high"]) == (test["verdict"] == "no clear difference")
        clean = tests["clean"]
        assert (
            f"Clean test error: {100 * clean['candidate']:.2f}% vs {100 * clean['reference']:.2f}%"
            in section
        )
        for model, side in ((candidate, "candidate"), (reference, "reference")):
            saved = json.loads((out / "robustness" / model / "results.json").read_text())
            assert clean[side] == pytest.approx(saved["clean_error"])
    assert summary["runs_per_model"] == 1 and set(summary["models"]) == {m for m, _ in DEMO_MODELS}
    assert (out / "report.md").is_file() and (out / "noise_sweeps.png").is_file()

    # every published model folder loads on its own and reproduces its benchmark's clean error
    from timm_pushpull.experiments import seeded_test_images

    images, labels = seeded_test_images(FASHION_MNIST_SYSTEM_DIR, 64)
    for model_name, _ in DEMO_MODELS:
        folder = out / "models" / model_name
        assert {"model.safetensors", "config.json", "README.md"} <= {
            p.name for p in folder.iterdir()
        }
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        mean, std = model.pretrained_cfg["mean"][0], model.pretrained_cfg["std"][0]
        x = (torch.from_numpy(images).float().div(255).unsqueeze(1) - mean) / std
        with torch.no_grad():
            error = (model(x).argmax(1).numpy() != labels).mean()
        saved = json.loads((out / "robustness" / model_name / "results.json").read_text())
        assert error == pytest.approx(saved["clean_error"])
        # the per-image outcomes behind the verdicts give every number of the benchmark exactly
        per_image = kept[model_name]
        assert per_image["clean_error"].values.mean() == saved["clean_error"] == error
        assert (per_image["clean_error"].indices == np.arange(64)).all()
        for name, entry in saved["corruptions"].items():
            assert per_image[f"corruptions/{name}"].values.mean(axis=1).tolist() == entry["errors"]
        for name, entry in saved["noise_sweeps"].items():
            assert per_image[f"noise_sweeps/{name}"].values.mean(axis=1).tolist() == entry["errors"]
        assert per_image["shift"].values.mean() == saved["shift"]["consistency"]
        assert np.isclose(1 - error, summary["models"][model_name]["val_acc"] / 100)
        # pretrained=True finds the demo's models where the error without them says to look
        monkeypatch.setenv("TIMM_PUSHPULL_WEIGHTS_DIR", str(out / "models"))
        by_tag = timm.create_model(f"{model_name}.demo_fmnist", pretrained=True)
        assert by_tag.pretrained_cfg["file"] == str(folder / "model.safetensors")

    # a second demo never overwrites the first one's report
    before = (out / "README.md").read_bytes()
    assert cli_main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert (out / "README.md").read_bytes() == before
