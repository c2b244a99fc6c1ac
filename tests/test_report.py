"""Report: side-by-side table, plots for any model, the ``compare`` sub-command."""

import json
import math

import pytest
import torch
import torch.nn as nn

from timm_pushpull.layers import PushPull2d
from timm_pushpull.robustness.report import (
    first_block_weights,
    first_layer,
    format_comparison,
    hoyer_sparsity,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_results(model, clean, fog, translate, consistency):
    """A results.json of two units, with the summary evaluate would compute against AlexNet."""
    return {
        "schema": "timm-pushpull-robustness", "version": 1, "model": model, "n_images": 100,
        "seed": 0, "settings": {"scale": "cifar", "datasets": {"clean": "x"}, "severities": [1, 2]},
        "clean_error": clean,
        "corruptions": {"fog": {"errors": fog, "mean_error": sum(fog) / 2, "source": "generated"}},
        "perturbations": {"translate": {"flip_probability": translate, "noise": False}},
        "shift": {"consistency": consistency, "mode": "circular", "max_shift": 4, "n_pairs": 100},
        "noise_sweeps": {"gaussian": {"parameter": "variance", "levels": [0.0, 0.01],
                                      "errors": [clean, clean + 0.1]}},
        "baseline": {"name": "alexnet-cifar10c", "source": "paper", "clean_error": 0.1387,
                     "corruption_errors": {"fog": 0.3031}, "flip_probabilities": {}},
        "summary": {"mean_corruption_error": sum(fog) / 2, "ce": {"fog": sum(fog) / 2 / 0.3031},
                    "rce": {}, "mce": sum(fog) / 2 / 0.3031, "relative_mce": None,
                    "mce_corruptions": ["fog"], "mce_complete": False,
                    "mean_flip_probability": translate, "flip_rates": {}, "mfr": None},
    }  # fmt: skip


RESULTS = [
    fake_results("plain", 0.0756, [0.1, 0.2], 0.04556, 0.9),
    fake_results("pp", 0.0829, [0.2, 0.2], 0.05, 0.95),
]


def _row(table, name):
    line = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_format_comparison_side_by_side():
    table = format_comparison(RESULTS)
    assert table.splitlines()[0] == "| metric (%) | plain | pp | baseline: alexnet-cifar10c |"
    assert _row(table, "clean error") == ["7.56", "8.29", "13.87"]
    # mean fog error 15 % is 49.5 % of AlexNet's 30.31 %
    assert _row(table, "error: fog") == ["15.00 (CE 49.5)", "20.00 (CE 66.0)", "30.31"]
    assert _row(table, "mCE") == ["49.5, 1 corruptions", "66.0, 1 corruptions", "–"]
    assert _row(table, "flip probability: translate") == ["4.56", "5.00", "–"]
    assert _row(table, "shift consistency") == ["90.00", "95.00", "–"]
    assert _row(table, "error: gaussian noise, variance 0 / 0.01") == [
        "7.6 / 17.6",
        "8.3 / 18.3",
        "–",
    ]
    assert (
        format_comparison(RESULTS, ["a", "b"]).splitlines()[0].startswith("| metric (%) | a | b |")
    )


def test_hoyer_sparsity_hand_computed():
    assert hoyer_sparsity(torch.tensor([0.0, 2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert hoyer_sparsity(torch.tensor([-1.0, 1.0, 1.0, -1.0])) == pytest.approx(0.0)
    # n = 2, |w|_1 = 7, |w|_2 = 5
    assert hoyer_sparsity(torch.tensor([3.0, 4.0])) == pytest.approx(
        (math.sqrt(2) - 1.4) / (math.sqrt(2) - 1)
    )


class TinyPushPullNet(nn.Module):
    def __init__(self, in_chans=3):
        super().__init__()
        self.stem = PushPull2d(in_chans, 4, 3, padding=1)
        self.layer1 = nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        )
        self.layer2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 10)
        self.feature_info = [{"module": "stem"}, {"module": "layer1"}, {"module": "layer2"}]

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))).mean(dim=(2, 3)))


def test_first_layer_and_block_of_any_model():
    model = TinyPushPullNet()
    assert first_layer(model) is model.stem  # the push-pull layer, not its push convolution
    assert list(first_block_weights(model)) == ["stem", "layer1.0", "layer1.2"]
    plain = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)
    )  # no feature_info: first layer only
    assert list(first_block_weights(plain)) == ["0"]
    with pytest.raises(ValueError, match="no convolution"):
        first_layer(nn.Linear(2, 2))


@pytest.mark.parametrize("in_chans", [3, 1])
def test_write_report_files(tmp_path, in_chans):
    models = {"plain": TinyPushPullNet(in_chans), "pp": TinyPushPullNet(in_chans)}
    images = torch.rand(2, in_chans, 16, 16)
    if in_chans == 1:  # the default (ImageNet) normalisation of a model without a timm cfg is RGB
        with pytest.raises(ValueError, match="normalisation has 3 channels"):
            write_report(RESULTS, tmp_path, models=models, sample_images=images)
    normalization = {label: ([0.5] * in_chans, [0.25] * in_chans) for label in models}
    paths = write_report(
        RESULTS, tmp_path, models=models, sample_images=images, normalization=normalization
    )
    names = [path.name for path in paths]
    assert names == ["report.md", "corruption_errors.png", "ce_vs_flip.png", "noise_sweeps.png",
                     "first_block_weights.png", "response_maps.png"]  # fmt: skip
    for path in paths[1:]:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    report = (tmp_path / "report.md").read_text()
    assert (
        "| error: fog | 15.00 (CE 49.5)" in report and "![Noise sweeps](noise_sweeps.png)" in report
    )


def test_compare_command(tmp_path, capsys):
    from timm_pushpull.cli import main

    for result in RESULTS:
        (tmp_path / result["model"]).mkdir()
        (tmp_path / result["model"] / "results.json").write_text(json.dumps(result))
    assert main(["compare", str(tmp_path / "plain" / "results.json"), str(tmp_path / "pp")]) == 0
    assert "| error: fog | 15.00 (CE 49.5) | 20.00 (CE 66.0) | 30.31 |" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "plain"), str(tmp_path / "pp"), "--labels", "A,B",
                 "--out", str(tmp_path / "report")]) == 0  # fmt: skip
    assert "| metric (%) | A | B |" in capsys.readouterr().out
    assert (tmp_path / "report" / "corruption_errors.png").is_file()
    assert main(["compare", str(tmp_path / "plain"), "--labels", "A,B"]) == 2
    assert "--labels has 2 names for 1 results" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"accuracy": 1}))
    assert main(["compare", str(tmp_path / "other.json")]) == 2
    assert "not a results.json" in capsys.readouterr().err
    # fog has 2 errors; a file claiming 3 severities is refused, not misread
    bad = {**RESULTS[0], "settings": {**RESULTS[0]["settings"], "severities": [1, 2, 3]}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["compare", str(tmp_path / "bad.json")]) == 2
    assert (
        "corruptions.fog.errors has 2 values but settings.severities 3" in capsys.readouterr().err
    )


def test_relative_mce_cell_has_its_own_completeness():
    summary = {**RESULTS[0]["summary"], "mce": 0.5, "mce_corruptions": ["fog", "snow"],
               "mce_complete": True, "relative_mce": 0.25, "relative_mce_corruptions": ["fog"],
               "relative_mce_complete": False, "ce_severities": {"fog": [1, 2], "snow": [2]}}  # fmt: skip
    table = format_comparison([{**RESULTS[0], "summary": summary}])
    assert _row(table, "mCE") == ["50.0", "–"]
    assert _row(table, "relative mCE") == ["25.0, 1 corruptions", "–"]
    assert _row(table, "CE on severities") == ["fog: 1, 2; snow: 2", "–"]


def _imported_modules(path) -> set[str]:
    """Modules a file of timm_pushpull.robustness imports anywhere (functions included), as
    absolute names."""
    import ast

    package = "timm_pushpull.robustness" + ("" if path.parent.name == "robustness" else ".cli")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_command_lines_import_the_report():
    """The library (evaluate, results, baselines, ...) never imports the report or the command
    lines, so report -> evaluate is no cycle; the command lines import both."""
    from pathlib import Path

    import timm_pushpull.robustness as robustness

    root = Path(robustness.__file__).parent
    # evaluate_bench times the command line's data sets: a benchmark, above the library
    library = sorted(
        p for p in root.glob("*.py") if p.name not in ("report.py", "evaluate_bench.py")
    )
    assert any(path.name == "evaluate.py" for path in library)
    for path in library:
        imported = _imported_modules(path)
        assert "timm_pushpull.robustness.report" not in imported, path.name
        assert not any(name.startswith("timm_pushpull.robustness.cli") for name in imported), path
    commands = _imported_modules(root / "cli" / "evaluate.py")
    assert {"timm_pushpull.robustness.report", "timm_pushpull.robustness.evaluate"} <= commands
    assert "timm_pushpull.robustness.report" in _imported_modules(root / "cli" / "compare.py")
