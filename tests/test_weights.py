"""Weights that are not weights are refused wherever weights load (a checkpoint file, the local
weights directory, ``local-dir:``), a weights folder builds one model by every route, and
`evaluate` refuses a classifier it would have to invent: --num-classes 0, a --num-classes that
replaces the trained head, a model name that is no model."""

import json
import shutil

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import save_for_hf

from timm_pushpull import hub
from timm_pushpull.cli import main
from timm_pushpull.errors import CheckpointError
from timm_pushpull.factory import create_model, load_weights
from timm_pushpull.robustness.results import state_dict_sha256

ARCHITECTURE = "lenet5_a_pp"
TAG = timm.create_model(ARCHITECTURE).pretrained_cfg["tag"]  # the name's default tag


def _logits(model: torch.nn.Module) -> torch.Tensor:
    inputs = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(inputs)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A weights directory holding ``lenet5_a_pp.<tag>/`` (config.json + model.safetensors) of a
    seeded model built with ``pp_pull_scale=3`` (the default is 2), which the folder records."""
    torch.manual_seed(3)
    model = timm.create_model(ARCHITECTURE, pp_pull_scale=3)
    folder = tmp_path / "weights" / f"{ARCHITECTURE}.{TAG}"
    save_for_hf(model, str(folder), model_args={"pp_pull_scale": 3}, safe_serialization=True)
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(folder.parent))
    return folder


def test_a_weights_folder_is_one_model_by_every_route(weights_dir):
    by_folder = timm.create_model(f"local-dir:{weights_dir}", pretrained=True)
    by_name = timm.create_model(ARCHITECTURE, pretrained=True)  # through the weights directory
    by_factory = create_model(ARCHITECTURE, pretrained=True)
    expected = _logits(by_folder)
    assert torch.equal(_logits(by_name), expected) and torch.equal(_logits(by_factory), expected)
    for model in (by_name, by_factory):
        assert model.pretrained_cfg["mean"] == by_folder.pretrained_cfg["mean"]
    # the folder's model_args matter: the default h=2 with the same weights is another model
    default = timm.create_model(ARCHITECTURE)
    default.load_state_dict(by_folder.state_dict())
    assert not torch.allclose(_logits(default), expected)
    # a kwarg the caller gives wins over the folder's, by every route alike
    explicit = [
        timm.create_model(name, pretrained=True, pp_pull_scale=2)
        for name in (f"local-dir:{weights_dir}", ARCHITECTURE)
    ]
    assert torch.equal(_logits(explicit[0]), _logits(explicit[1]))
    assert torch.allclose(_logits(explicit[0]), _logits(default))


def _broken(state_dict: dict, kind: str) -> dict:
    if kind == "int8":
        return {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state_dict.items()}
    value = float("nan") if kind == "nan" else float("inf")
    return {k: v.clone().fill_(value) if k == "fc.weight" else v for k, v in state_dict.items()}


@pytest.mark.parametrize("kind, message", [("int8", "holds (torch.int8|I8) values"),
                                           ("nan", "fc.weight holds NaN or infinite values"),
                                           ("inf", "fc.weight holds NaN or infinite values")])  # fmt: skip
def test_tensors_that_are_not_weights_are_refused_by_every_route(weights_dir, tmp_path, kind, message):  # fmt: skip
    state_dict = _broken(timm.create_model(ARCHITECTURE).state_dict(), kind)
    save_file(state_dict, str(weights_dir / "model.safetensors"))
    torch.save(state_dict, tmp_path / "checkpoint.pth")
    routes = [
        lambda: load_weights(timm.create_model(ARCHITECTURE), weights_dir / "model.safetensors"),
        lambda: load_weights(timm.create_model(ARCHITECTURE), tmp_path / "checkpoint.pth"),
        lambda: create_model(f"local-dir:{weights_dir}", pretrained=True),
        lambda: timm.create_model(ARCHITECTURE, pretrained=True),  # the weights directory
    ]
    for route in routes:
        with pytest.raises(CheckpointError, match=message):
            route()


@pytest.mark.parametrize("mean, std", [([0.5], [0.0]), ([float("nan")], [0.3]), ([0.5], [-1]),
                                       ([0.5, 0.5], [0.3]), (["a"], [0.3])])  # fmt: skip
def test_a_normalisation_that_is_none_is_refused(weights_dir, mean, std):
    config = json.loads((weights_dir / "config.json").read_text())
    config["pretrained_cfg"].update(mean=mean, std=std)
    (weights_dir / "config.json").write_text(json.dumps(config, allow_nan=True))
    for name in (f"local-dir:{weights_dir}", ARCHITECTURE):
        with pytest.raises(CheckpointError, match="(no normalisation|lists of numbers)"):
            create_model(name, pretrained=True)


def test_integer_buffers_of_the_model_load(tmp_path):
    model = timm.create_model("resnet20_pp")  # BatchNorm's num_batches_tracked: int64
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    loaded = load_weights(timm.create_model("resnet20_pp"), tmp_path / "model.safetensors")
    assert state_dict_sha256(loaded) == state_dict_sha256(model)


# ----------------------------------------------------------------------------------------------
# the evaluate command


def _evaluate(capsys, out, *arguments):
    argv = ["evaluate", "--dataset", "fashion_mnist", "--max-images", "8", "--corruptions",
            "contrast", "--severities", "1", "--out", str(out), "--no-progress", "--no-report",
            *arguments]  # fmt: skip
    code = main(argv)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", ARCHITECTURE, "--num-classes", "0"], "--num-classes must be an int >= 1, got 0"),
        (["--model", ARCHITECTURE, "--pretrained", "--num-classes", "5"],
         "--num-classes 5 differs from the 10 classes of the weights"),
        (["--model", ARCHITECTURE, "--num-classes", str(10**12)], "does not fit in this machine's memory"),
        (["--model", ARCHITECTURE, "--num-classes", str(10**30)], "does not fit in this machine's memory"),
        (["--model", "hf-hub:/tmp/model"], "'/tmp/model' is not a Hugging Face Hub repository id"),
        (["--model", "hf-hub:../folder/model"], "for a folder on this machine use local-dir:PATH"),
    ],
)  # fmt: skip
def test_a_classifier_evaluate_would_invent_is_refused(weights_dir, tmp_path, capsys, arguments, message):  # fmt: skip
    code, error = _evaluate(capsys, tmp_path / "out", *arguments)
    assert code == 2 and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_weights_folder_evaluates_its_weights_without_pretrained(weights_dir, tmp_path, capsys):
    copy = shutil.copytree(weights_dir, tmp_path / "run")  # a folder, not the weights directory
    code, error = _evaluate(capsys, tmp_path / "out", "--model", f"local-dir:{copy}")
    assert code == 0, error
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    expected = state_dict_sha256(timm.create_model(f"local-dir:{copy}", pretrained=True))
    assert results["identity"]["weights_sha256"] == expected
    assert results["identity"]["model_args"] == {"pretrained": True}
