"""Pretrained tags exist only for weights a user can get, and advertise only what the Hub holds.

Locally made weights (``official_c10``: converted release; ``demo_fmnist``: the demo's models) load
from ``$TIMM_PUSHPULL_WEIGHTS_DIR`` or fail saying how to make them; a hub config with
``published: true`` gives its tag a Hub id without code changes.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import save_for_hf

import timm_pushpull
from timm_pushpull import hub
from timm_pushpull.demo import DEMO_MODELS
from timm_pushpull.models._cfg import LOCAL_WEIGHTS_HOWTO, published_hub_id
from timm_pushpull.models.official import OFFICIAL_CHECKPOINTS, convert_official_checkpoint

OUR_MODULES = ["cifar_resnet", "cifar_wrn", "cifar_densenet", "lenet", "imagenet_resnet_pp"]
HUB_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "hub_configs").glob("*.yaml"))


def _our_tagged_names() -> set[str]:
    return {n for n in timm.list_models(module=OUR_MODULES, include_tags=True) if "." in n}


def test_every_tag_names_weights_a_user_can_make():
    tags = _our_tagged_names()
    assert tags == {path.stem for path in HUB_CONFIGS}
    assert {n.split(".")[1] for n in tags} == set(LOCAL_WEIGHTS_HOWTO)
    demo = {n.split(".")[0] for n in tags if n.endswith(".demo_fmnist")}
    assert demo == {model for model, _ in DEMO_MODELS}  # the demo trains exactly these
    official = {n.split(".")[0] for n in tags if n.endswith(".official_c10")}
    assert official == set(OFFICIAL_CHECKPOINTS)  # convert-official makes exactly these


def test_list_pretrained_advertises_only_published_repositories():
    published = {c.model for c in map(hub.HubConfig.load, HUB_CONFIGS) if c.published}
    ours = _our_tagged_names() | set(timm.list_models(module=OUR_MODULES))
    listed = set(timm.list_pretrained()) & ours
    assert {n for n in listed if "." in n} == published
    for name in listed:
        assert timm.models.get_pretrained_cfg(name).hf_hub_id.startswith("timm-pushpull/")


@pytest.mark.parametrize(
    "name, how",
    [
        ("resnet20_pp", "timm-pushpull convert-official"),  # default tag: official_c10
        ("densenet40_12.official_c10", "timm-pushpull convert-official"),
        ("lenet5_a", "timm-pushpull demo"),  # default tag: demo_fmnist
        ("resnet20_pp_b1.demo_fmnist", "timm-pushpull demo"),
        ("wrn16_4_pp", "timm-pushpull train"),  # no tag: nothing made by timm-pushpull
    ],
)
def test_pretrained_without_local_weights_says_how_to_make_them(name, how, tmp_path, monkeypatch):
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not on the Hugging Face Hub") as error:
        timm.create_model(name, pretrained=True)
    assert how in str(error.value) and str(tmp_path) in str(error.value)


def test_weights_dir_holds_what_convert_official_writes(official_dir, tmp_path, monkeypatch):
    src = official_dir / "checkpoints" / OFFICIAL_CHECKPOINTS["resnet20"].file
    folder = convert_official_checkpoint(src, tmp_path / "resnet20")  # convert-official's layout
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path))
    model = timm.create_model("resnet20", pretrained=True)
    expected = timm.create_model(f"local-dir:{folder}", pretrained=True).state_dict()
    assert model.pretrained_cfg["file"] == str(folder / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_weights_dir_folder_of_another_tag_is_not_taken(tmp_path, monkeypatch):
    # a resnet20 folder holding the demo's greyscale weights is not the released CIFAR model
    save_for_hf(
        timm.create_model("resnet20.demo_fmnist"), tmp_path / "resnet20", safe_serialization=True
    )
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path))
    assert timm.create_model("resnet20.demo_fmnist", pretrained=True).in_chans == 1
    with pytest.raises(FileNotFoundError, match="convert-official"):
        timm.create_model("resnet20.official_c10", pretrained=True)


def test_published_hub_id_reads_the_hub_config(tmp_path):
    base = "repo_id: me/net.tag\nmodel: net.tag\n"
    (tmp_path / "net.tag.yaml").write_text(base + "published: true\n")
    (tmp_path / "draft.tag.yaml").write_text("repo_id: me/draft.tag\nmodel: draft.tag\n")
    (tmp_path / "bad.tag.yaml").write_text(base + "published: true\n")
    assert published_hub_id("net.tag", tmp_path) == "me/net.tag"
    assert published_hub_id("draft.tag", tmp_path) is None  # published defaults to false
    assert published_hub_id("absent.tag", tmp_path) is None
    with pytest.raises(ValueError, match="bad.tag.yaml: published: true needs"):
        published_hub_id("bad.tag", tmp_path)


def test_publishing_is_a_hub_config_edit(tmp_path):
    """A copy of the package whose hub config says published: true lists and downloads the tag."""
    package = Path(timm_pushpull.__file__).parent
    copy = tmp_path / "site" / "timm_pushpull"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))  # follows links
    config = copy / "hub_configs" / "resnet20_pp.official_c10.yaml"
    config.write_text(config.read_text().replace("published: false", "published: true"))
    script = f"""
import json, timm, timm_pushpull
cfg = timm.models.get_pretrained_cfg("resnet20_pp.official_c10")
try:
    timm.create_model("resnet20_pp", pretrained=True)
except FileNotFoundError as error:
    message = str(error)
ours = set(timm.list_models(module={OUR_MODULES}))
listed = sorted(n for n in timm.list_pretrained() if n.split(".")[0] in ours)
print(json.dumps(dict(file=timm_pushpull.__file__, hub_id=cfg.hf_hub_id, listed=listed, error=message)))
"""
    env = dict(os.environ, PYTHONPATH=str(copy.parent), HF_HUB_OFFLINE="1")
    env.update(HF_HOME=str(tmp_path / "hf"))
    env.pop(hub.WEIGHTS_DIR_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(copy)
    assert out["hub_id"] == "timm-pushpull/resnet20_pp.official_c10"
    assert out["listed"] == ["resnet20_pp.official_c10"]
    # published: the Hub is where the weights come from (offline here, with nothing cached)
    assert "HF_HUB_OFFLINE=1" in out["error"] and "timm-pushpull/resnet20_pp" in out["error"]


def test_tags_follow_timms_source_dataset_order():
    # timm: tv_in1k, a1_in1k, ...: where the weights come from, then the dataset
    assert {n.split(".")[1] for n in _our_tagged_names()} == {"official_c10", "demo_fmnist"}


@pytest.mark.parametrize(
    "old, new", [("c10_official", "official_c10"), ("fmnist_demo", "demo_fmnist")]
)
def test_deprecated_tag_names_still_work_and_warn(old, new, tmp_path, monkeypatch):
    name = "resnet20"
    with pytest.warns(
        DeprecationWarning, match=f"tag '{old}' is deprecated, use '{new}'"
    ) as warned:
        model = timm.create_model(f"{name}.{old}")
    assert warned[0].filename == __file__  # points at the caller's line
    assert model.pretrained_cfg == timm.create_model(f"{name}.{new}").pretrained_cfg
    # a weights folder made under the old name (convert-official, publish --dry-run) still loads
    source = timm.create_model(f"{name}.{new}")
    save_for_hf(source, tmp_path / f"{name}.{old}", safe_serialization=True)
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated"):
        loaded = timm.create_model(f"{name}.{new}", pretrained=True)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_deprecated_tag_in_a_config_json_and_a_hub_config(tmp_path, monkeypatch):
    # <architecture>/ folder whose config.json records the old tag (convert-official's layout)
    folder = tmp_path / "resnet20"
    save_for_hf(timm.create_model("resnet20.official_c10"), folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"]["tag"] = "c10_official"
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.warns(DeprecationWarning, match="'c10_official' is deprecated"):
        model = timm.create_model("resnet20", pretrained=True)
    assert model.pretrained_cfg["file"] == str(folder / "model.safetensors")
    own = tmp_path / "mine.yaml"
    own.write_text("repo_id: me/resnet20.c10_official\nmodel: resnet20.c10_official\n")
    with pytest.warns(DeprecationWarning, match="'c10_official' is deprecated"):
        assert hub.HubConfig.load(own).model == "resnet20.official_c10"
