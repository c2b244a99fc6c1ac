"""The demo: verdict logic on hand-made results, and the whole pipeline on real Fashion-MNIST in
its --quick configuration."""

import argparse
import json
import math

import numpy as np
import pytest
import timm
import torch

from timm_pushpull.data import FASHION_MNIST_SYSTEM_DIR
from timm_pushpull.demo import DEMO_MODELS, add_arguments, compare_results, main, verdict_text


def results(clean, corruptions, consistency, n=1000):
    return {
        "n_images": n,
        "settings": {"severities": [1, 2, 3, 4, 5]},
        "clean_error": clean,
        "corruptions": {k: {"errors": [v] * 5, "mean_error": v} for k, v in corruptions.items()},
        "noise_sweeps": {"gaussian": {"levels": [0.0, 0.01], "errors": [clean, clean + 0.1]}},
        "shift": {"consistency": consistency, "n_pairs": n},
    }


def test_verdicts_count_only_differences_beyond_two_standard_errors():
    candidate = results(0.10, {"gaussian_noise": 0.20, "fog": 0.30, "contrast": 0.40}, 0.95)
    reference = results(0.10, {"gaussian_noise": 0.30, "fog": 0.31, "contrast": 0.30}, 0.90)
    tests = compare_results(candidate, reference)
    # 5000 predictions per corruption: 2 SE of 0.20 vs 0.30 is 2 * sqrt((.16 + .21) / 5000) = 0.0172
    assert 2 * math.sqrt((0.2 * 0.8 + 0.3 * 0.7) / 5000) == pytest.approx(0.0172, abs=1e-4)
    assert tests["gaussian_noise"]["verdict"] == "better"  # 0.10 apart
    assert tests["fog"]["verdict"] == "tie"  # 0.01 apart
    assert tests["contrast"]["verdict"] == "worse"
    assert (
        tests["shift consistency"]["verdict"] == "better"
    )  # higher is better: 0.95 vs 0.90, n=1000
    assert tests["clean"]["verdict"] == "tie"
    assert tests["mean corruption error"]["candidate"] == pytest.approx(0.30)
    assert tests["mean corruption error"]["reference"] == pytest.approx(0.3033, abs=1e-4)
    text = "\n".join(verdict_text("net_pp", "net", tests))
    assert (
        "net_pp was more robust on: gaussian_noise (20.0% vs 30.0% error), shift consistency"
        in text
    )
    assert "net_pp was less robust on: contrast (40.0% vs 30.0% error)" in text
    assert "neither is clearly more robust overall" in text


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
    for candidate, reference in (("lenet5_a_pp", "lenet5_a"), ("resnet20_pp_b1", "resnet20")):
        assert f"### {candidate} vs {reference}" in readme
        assert f"{candidate} was more robust on:" in readme
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs_per_model"] == 1 and set(summary["models"]) == {m for m, _ in DEMO_MODELS}
    assert (out / "report.md").is_file() and (out / "noise_sweeps.png").is_file()

    # every published model folder loads on its own and reproduces its benchmark's clean error
    from timm_pushpull.demo import _test_subset

    images, labels = _test_subset(FASHION_MNIST_SYSTEM_DIR, 64)
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
        assert np.isclose(1 - error, summary["models"][model_name]["val_acc"] / 100)
        # pretrained=True finds the demo's models where the error without them says to look
        monkeypatch.setenv("TIMM_PUSHPULL_WEIGHTS_DIR", str(out / "models"))
        by_tag = timm.create_model(f"{model_name}.fmnist_demo", pretrained=True)
        assert by_tag.pretrained_cfg["file"] == str(folder / "model.safetensors")

    # a second demo never overwrites the first one's report
    before = (out / "README.md").read_bytes()
    assert main(parser.parse_args(["--quick", "--out", str(out), "--no-progress"])) == 2
    assert (out / "README.md").read_bytes() == before
