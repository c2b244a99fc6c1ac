"""The authors' released CIFAR-10 checkpoints: conversion to timm folders, reference logits, cfgs."""

import argparse
import json
from pathlib import Path

import pytest
import timm
import torch

import timm_pushpull  # noqa: F401  (registers the models)
from timm_pushpull.cli import main as cli_main
from timm_pushpull.models import official
from timm_pushpull.models.official import (
    OFFICIAL_CHECKPOINTS,
    checkpoint_for_file,
    convert_official_checkpoint,
)

REFERENCE_MODELS = ("resnet20", "resnet20_pp", "densenet40_12_pp")


def _checkpoint(official_dir, model_name):
    return official_dir / "checkpoints" / OFFICIAL_CHECKPOINTS[model_name].file


@pytest.fixture(scope="module")
def converted(official_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    return {
        name: convert_official_checkpoint(_checkpoint(official_dir, name), out / name)
        for name in REFERENCE_MODELS
    }


@pytest.fixture(scope="module")
def reference(official_dir):
    return torch.load(official_dir / "reference_logits.pt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_converted_model_reproduces_reference_logits(converted, reference, name, logits_atol):
    model = timm.create_model(f"local-dir:{converted[name]}", pretrained=True).eval()
    data_config = timm.data.resolve_data_config({}, model=model)
    # the folder's own normalisation is the one the authors trained with
    mean, std = torch.tensor(data_config["mean"]), torch.tensor(data_config["std"])
    torch.testing.assert_close(mean, reference["mean"], atol=1e-4, rtol=0)
    torch.testing.assert_close(std, reference["std"], atol=1e-4, rtol=0)
    x = (reference["inputs_01"] - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, reference["logits"][name], atol=logits_atol, rtol=0)


def test_converted_folder_is_a_timm_folder_with_license(converted, official_dir):
    folder = converted["resnet20_pp"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE",
        "config.json",
        "model.safetensors",
    ]
    assert (folder / "LICENSE").read_bytes() == (official_dir / "LICENSE").read_bytes()
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet20_pp"
    cfg = config["pretrained_cfg"]
    assert cfg["tag"] == "official_c10" and cfg["license"] == "mit"
    assert cfg["first_conv"] == "conv1.push"
    assert "91.71" in cfg["notes"][0]


@pytest.mark.parametrize("name", sorted(OFFICIAL_CHECKPOINTS))
def test_official_cfg_carries_license_paper_and_reported_accuracy(official_dir, name):
    cfg = timm.models.get_pretrained_cfg(f"{name}.official_c10")
    assert cfg.license == "mit"
    assert "doi:10.1007/s00521-020-04751-8" in cfg.paper_ids
    assert cfg.num_classes == 10 and cfg.input_size == (3, 32, 32)
    # the table matches what the released file itself says
    ckpt = torch.load(_checkpoint(official_dir, name), map_location="cpu", weights_only=True)
    entry = OFFICIAL_CHECKPOINTS[name]
    assert float(ckpt["best_prec1"]) == pytest.approx(entry.top1, abs=5e-3)
    assert int(ckpt["epoch"]) == entry.epoch
    assert f"{entry.top1:.2f}%" in cfg.notes[0]
    # and it is the default pretrained tag of the architecture
    assert timm.models.get_pretrained_cfg(name).tag == "official_c10"


def _edited_checkpoint(official_dir, tmp_path, edit):
    ckpt = torch.load(_checkpoint(official_dir, "resnet20"), map_location="cpu", weights_only=True)
    edit(ckpt["state_dict"])
    path = tmp_path / "resnet-20.pth.tar"
    torch.save(ckpt, path)
    return path


def test_unknown_keys_are_refused_by_name(official_dir, tmp_path):
    path = _edited_checkpoint(
        official_dir, tmp_path, lambda sd: sd.update({"head.extra": torch.zeros(1)})
    )
    with pytest.raises(ValueError, match=r"unknown keys: head\.extra"):
        convert_official_checkpoint(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_keys_are_refused_by_name(official_dir, tmp_path):
    path = _edited_checkpoint(official_dir, tmp_path, lambda sd: sd.pop("layer3.2.bn2.running_var"))
    with pytest.raises(ValueError, match=r"missing keys: layer3\.2\.bn2\.running_var"):
        convert_official_checkpoint(path, tmp_path / "out")


def test_pp_checkpoint_refused_for_the_plain_model(official_dir, tmp_path):
    with pytest.raises(
        ValueError, match=r"missing keys: conv1\.weight.*unknown keys: conv1\.push\.weight"
    ):
        convert_official_checkpoint(
            _checkpoint(official_dir, "resnet20_pp"), tmp_path / "out", model_name="resnet20"
        )


def test_data_parallel_prefix_is_stripped(official_dir, tmp_path):
    def prefix(sd):
        for key in list(sd):
            sd[f"module.{key}"] = sd.pop(key)

    out = convert_official_checkpoint(
        _edited_checkpoint(official_dir, tmp_path, prefix), tmp_path / "out"
    )
    original = torch.load(
        _checkpoint(official_dir, "resnet20"), map_location="cpu", weights_only=True
    )
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in original["state_dict"].items())


def test_unknown_file_name_needs_model_name(tmp_path):
    with pytest.raises(ValueError, match="not one of the released checkpoints"):
        checkpoint_for_file(tmp_path / "model_best.pth.tar")
    assert checkpoint_for_file("x/densenet-100-12-pp.pth.tar").model_name == "densenet100_12_pp"


def test_existing_destination_is_never_overwritten_without_flag(official_dir, tmp_path, capsys):
    src = _checkpoint(official_dir, "resnet20")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_official_checkpoint(src, dst)
    parser = argparse.ArgumentParser()
    official.add_arguments(parser)
    assert cli_main(["convert-official", str(src), str(dst)]) == 2  # one line, no traceback
    assert "already exists" in capsys.readouterr().err
    assert (dst / "mine.txt").read_text() == "keep me"

    assert official.main(parser.parse_args([str(src), str(dst), "--overwrite"])) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["LICENSE", "config.json", "model.safetensors"]


def test_cli_converts_a_folder_of_checkpoints(official_dir, tmp_path):
    src = tmp_path / "release"
    src.mkdir()
    (src / "resnet-20-pp.pth.tar").symlink_to(_checkpoint(official_dir, "resnet20_pp"))
    parser = argparse.ArgumentParser()
    official.add_arguments(parser)
    assert official.main(parser.parse_args([str(src), str(tmp_path / "out")])) == 0
    folder = tmp_path / "out" / "resnet20_pp"
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert model.pretrained_cfg["tag"] == "official_c10"
    assert (folder / "LICENSE").is_file()  # found beside the link's target


def _official_hub_configs() -> list[tuple[str, str]]:
    """(architecture, results folder) of every hub config that publishes the authors' results."""
    import yaml

    configs = []
    for path in sorted((Path(__file__).resolve().parents[1] / "hub_configs").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        if (config.get("results") or {}).get("official"):
            configs.append((config["model"].split(".")[0], config["results"]["official"]))
    return configs


@pytest.mark.parametrize("name, results", _official_hub_configs())
def test_card_clean_error_is_the_authors_evaluation_of_the_released_results(
    official_dir, name, results
):
    """The clean error on a card comes from the authors' files: the evaluation log next to the
    corruption results where there is one (read here by hand: the last number after "Test accuracy
    clean:"), otherwise the checkpoint's own ``best_prec1``."""
    from timm_pushpull.hub import official_results

    folder = official_dir / "results" / results
    log = folder / "test_clean.txt"
    if log.is_file():
        accuracy = float(log.read_text().rsplit("Test accuracy clean:", 1)[1].split("Test")[0])
    else:
        checkpoint = torch.load(
            _checkpoint(official_dir, name), map_location="cpu", weights_only=True
        )
        accuracy = float(checkpoint["best_prec1"])
    assert official_results(name, folder).clean_error == pytest.approx(1 - accuracy / 100, abs=1e-9)


def test_card_clean_errors_read_by_hand(official_dir):
    from timm_pushpull.hub import official_results

    # densenet/100-12/test_clean.txt ends "Test accuracy clean: 95.21" (its best_prec1 is 95.30);
    # resnet/resnet-20 has no log: best_prec1 92.43
    assert official_results(
        "densenet100_12", official_dir / "results" / "densenet" / "100-12"
    ).clean_error == pytest.approx(0.0479)
    assert official_results(
        "resnet20", official_dir / "results" / "resnet" / "resnet-20"
    ).clean_error == pytest.approx(0.0757)
