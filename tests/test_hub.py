"""Publishing and loading, offline, through the real timm / huggingface_hub code paths.

Round trip: train 2 steps with the trainer -> evaluate -> publish --dry-run -> load by
``local-dir:`` and by ``pretrained=True`` through ``$TIMM_PUSHPULL_WEIGHTS_DIR`` -> identical logits.
The offline checks run in one subprocess started with ``HF_HUB_OFFLINE=1`` (huggingface_hub reads
it at import time).
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

import timm_pushpull
from timm_pushpull import hub
from timm_pushpull.cli import main as cli_main
from timm_pushpull.hub.card import DATASETS, evaluated_images, evaluation_results
from timm_pushpull.layers import PushPull2d

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = "lenet5_a_pp.demo_fmnist"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real training run of 2 steps on Fashion-MNIST, evaluated into its results.json."""
    from torchvision.transforms import ToTensor

    from timm_pushpull.data import create_dataset
    from timm_pushpull.robustness.evaluate import evaluate_model
    from timm_pushpull.training.config import build_config
    from timm_pushpull.training.trainer import train

    out = tmp_path_factory.mktemp("run") / DEMO_MODEL
    settings = dict(
        model=DEMO_MODEL, epochs=1, train_samples=64, val_samples=32, batch_size=32,
        eval_batch_size=32, workers=0, output=str(out), progress=False, cpu=True,
    )  # fmt: skip
    result = train(build_config("lenet_mnist", settings))
    assert result["global_step"] == 2 and not result["stopped_early"]
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    evaluate_model(
        model, create_dataset("fashion_mnist", split="test", transform=ToTensor()), suites=("c", "p", "shift"),
        corruptions=["gaussian_noise", "brightness"], perturbations=["translate"], num_frames=6,
        baseline="alexnet-cifar10c", max_images=16, out_dir=out, progress=False,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def published(run_dir, tmp_path_factory) -> Path:
    """publish --dry-run into a weights directory laid out as $TIMM_PUSHPULL_WEIGHTS_DIR expects."""
    target = tmp_path_factory.mktemp("weights") / DEMO_MODEL
    code = cli_main(
        ["publish", str(run_dir), "--repo-id", f"timm-pushpull/{DEMO_MODEL}", "--dry-run", str(target),
         "--hub-config", str(REPO_ROOT / "hub_configs" / f"{DEMO_MODEL}.yaml")]
    )  # fmt: skip
    assert code == 0
    return target


def _inputs(in_chans=1, size=28) -> torch.Tensor:
    return torch.rand(3, in_chans, size, size, generator=torch.Generator().manual_seed(1))


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(inputs)


def test_round_trip_local_dir_and_weights_dir(run_dir, published, monkeypatch):
    assert sorted(p.name for p in published.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "robustness.png",
    ]  # fmt: skip
    trained = timm.create_model(f"local-dir:{run_dir}", pretrained=True)
    expected = _logits(trained, _inputs())

    by_folder = timm.create_model(f"local-dir:{published}", pretrained=True)
    assert torch.equal(_logits(by_folder, _inputs()), expected)

    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(published.parent))
    by_name = timm.create_model(DEMO_MODEL, pretrained=True)
    assert by_name.pretrained_cfg["file"] == str(published / "model.safetensors")
    assert torch.equal(_logits(by_name, _inputs()), expected)
    by_helper = hub.create_model(DEMO_MODEL, pretrained=True)
    assert torch.equal(_logits(by_helper, _inputs()), expected)

    # an explicit file in pretrained_cfg_overlay wins over the weights directory
    other = published.parent / "other.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in trained.state_dict().items()}, other)
    zeros = timm.create_model(
        DEMO_MODEL, pretrained=True, pretrained_cfg_overlay=dict(file=str(other))
    )
    assert all(not v.any() for v in zeros.state_dict().values())


def test_config_json_is_timm_format(run_dir, published):
    config = json.loads((published / "config.json").read_text())
    trained = json.loads((run_dir / "config.json").read_text())
    assert config["architecture"] == "lenet5_a_pp"
    assert config["num_classes"] == 10 and config["num_features"] == trained["num_features"]
    assert config["model_args"] == trained["model_args"]
    assert config["label_names"][0] == "T-shirt/top" and len(config["label_names"]) == 10
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [1, 28, 28] and cfg["tag"] == "demo_fmnist"
    assert cfg["mean"] == pytest.approx([0.286]) and cfg["std"] == pytest.approx([0.353])
    assert cfg["license"] == "apache-2.0"
    assert "doi:10.1007/s00521-020-04751-8" in cfg["paper_ids"]
    assert not {"file", "hf_hub_id", "source", "url"} & set(cfg)
    assert config[hub.VERSION_KEY] == timm_pushpull.__version__
    weights = load_file(published / "model.safetensors")
    assert set(weights) == set(load_file(run_dir / "model.safetensors"))


def test_card_metadata_and_results(run_dir, published):
    results = json.loads((run_dir / "results.json").read_text())
    card = ModelCard.load(published / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.license == "apache-2.0"
    assert data.datasets == ["zalando-datasets/fashion_mnist"]
    assert {"timm", "timm-pushpull", "push-pull"} <= set(data.tags)
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    summary = results["summary"]
    assert values == {
        "error": round(100 * results["clean_error"], 2),
        "mean_corruption_error": round(100 * summary["mean_corruption_error"], 2),
        "mCE": round(100 * summary["mce"], 2),
        "relative_mCE": round(100 * summary["relative_mce"], 2),
        "mean_flip_probability": round(100 * summary["mean_flip_probability"], 2),
        "shift_consistency": round(100 * results["shift"]["consistency"], 2),
    }
    assert {r.dataset_name for r in data.eval_results} >= {"Fashion-MNIST"}
    text = card.text
    assert "import timm_pushpull" in text and f"hf-hub:timm-pushpull/{DEMO_MODEL}" in text
    assert f"pretrained cfg of `{DEMO_MODEL}`" in text
    assert "**Epochs:** 1" in text and "2 steps" in text  # from train_config.yaml / metrics.jsonl
    assert "| gaussian_noise |" in text and "![Robustness" in text
    assert "Strisciuglio, Nicola" in text and "Zhang, Richard" not in text  # no blur pool here


@pytest.fixture(scope="module")
def subset_results(run_dir, tmp_path_factory) -> Path:
    """`evaluate --severities 1,3 --max-images 100` of the trained run, in a folder of its own."""
    from torchvision.transforms import ToTensor

    from timm_pushpull.data import create_dataset
    from timm_pushpull.robustness.evaluate import evaluate_model

    out = tmp_path_factory.mktemp("subset")
    evaluate_model(
        timm.create_model(f"local-dir:{run_dir}", pretrained=True).eval(),
        create_dataset("fashion_mnist", split="test", transform=ToTensor()), suites=("c",),
        corruptions=["gaussian_noise", "brightness"], severities=[1, 3], max_images=100,
        baseline="alexnet-cifar10c", out_dir=out, progress=False,
    )  # fmt: skip
    return out / "results.json"


def _card_table(text: str, heading: str) -> list[str]:
    lines = text[text.index(heading) :].splitlines()
    return [line for line in lines[1:] if line.startswith("|")]


def test_card_states_the_severities_and_images_that_were_run(run_dir, subset_results, tmp_path):
    """issue 26: after --severities 1,3 --max-images 100 the card said "1 | 2" and named the
    whole test split."""
    target = tmp_path / "card"
    hub.publish(run_dir, "me/subset", results=subset_results, dry_run=target)
    card = ModelCard.load(target / "README.md")
    header = _card_table(card.text, "### Corruptions")[0]
    assert header == "| Corruption | 1 | 3 | mean |"
    assert "(severities 1, 3)" in card.text  # the mCE's definition
    scope = "100 of the 10,000 Fashion-MNIST test images (a fixed random subset, seed 0)"
    assert f"Evaluated on {scope}; corruption severities 1, 3." in card.text
    assert f"top-1 error on {scope}" in card.text
    # no mCE against a baseline known only as means over 5 severities: the plain mean is shown
    mean = json.loads(subset_results.read_text())["summary"]["mean_corruption_error"]
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["mean_corruption_error"] == round(100 * mean, 2) and "mCE" not in values
    for result in card.data.eval_results:
        args = result.dataset_args
        assert args["n_images"] == 100 and args["subset"] == "random, seed 0"
        if result.metric_type in ("mCE", "relative_mCE"):
            assert args["severities"] == [1, 3]
    # the whole test set is said to be the whole test set
    whole = evaluation_results(run_dir / "results.json")
    assert whole.n_images == 16 and whole.whole_set is False
    whole.n_images, whole.whole_set = 10_000, True
    assert evaluated_images(whole, DATASETS["fashion_mnist"]) == (
        "all 10,000 Fashion-MNIST test images"
    )


@pytest.mark.parametrize("aa", [None, "bin3"])
def test_card_cites_the_blur_pool_paper_only_with_a_blur_layer(
    run_dir, subset_results, tmp_path, aa
):
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("lenet5_a_pp", aa=aa).state_dict(), weights)
    target = tmp_path / "out"
    hub.publish(weights, "me/aa", model="lenet5_a_pp", model_args={"aa": aa} if aa else None,
                hub_config=hub.HubConfig(dataset="fashion_mnist", training={"Epochs": 1}),
                results=subset_results, dry_run=target)  # fmt: skip
    paper_ids = json.loads((target / "config.json").read_text())["pretrained_cfg"]["paper_ids"]
    text = (target / "README.md").read_text()
    assert ("arXiv:1904.11486" in paper_ids) is (aa is not None)
    assert ("Zhang, Richard" in text) is (aa is not None)
    assert "doi:10.1007/s00521-020-04751-8" in paper_ids and "Strisciuglio, Nicola" in text


def test_card_of_a_plain_baseline_cites_no_layer_paper(run_dir, subset_results, tmp_path):
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("lenet5_a").state_dict(), weights)
    target = tmp_path / "out"
    hub.publish(weights, "me/plain", model="lenet5_a", results=subset_results, dry_run=target,
                hub_config=hub.HubConfig(dataset="fashion_mnist", training={"Epochs": 1}))  # fmt: skip
    paper_ids = json.loads((target / "config.json").read_text())["pretrained_cfg"]["paper_ids"]
    # LeCun et al. 1998 and the paper whose configurations A-D these are: no layer paper
    assert paper_ids == ["doi:10.1109/5.726791", "arXiv:1901.10208"]
    text = (target / "README.md").read_text()
    assert "Strisciuglio, Nicola" not in text and "Zhang, Richard" not in text


def test_refuses_to_overwrite_dry_run_folder(run_dir, published, tmp_path):
    target = tmp_path / "out"
    shutil.copytree(published, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(FileExistsError, match="--overwrite"):
        hub.publish(run_dir, f"timm-pushpull/{DEMO_MODEL}", dry_run=target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    hub.publish(run_dir, "me/renamed", dry_run=target, overwrite=True)
    card = ModelCard.load(target / "README.md")
    assert card.data.model_name == "renamed" and "hf-hub:me/renamed" in card.text
    assert "pretrained cfg of" not in card.text  # only timm-pushpull/<model> repos are registered
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".publish-")]


def test_a_dry_run_folder_written_meanwhile_is_not_replaced(run_dir, tmp_path, monkeypatch):
    """Two publish processes may both find the target free; the later one never replaces what
    the other wrote there meanwhile."""
    publish_module = importlib.import_module("timm_pushpull.hub.publish")  # hub.publish: a function
    target, write = tmp_path / "out", publish_module._write_folder

    def write_while_another_process_publishes(folder, *args):
        write(folder, *args)
        target.mkdir()
        (target / "README.md").write_text("the other process's card")

    monkeypatch.setattr(publish_module, "_write_folder", write_while_another_process_publishes)
    with pytest.raises(FileExistsError, match="written by another process meanwhile"):
        hub.publish(run_dir, f"timm-pushpull/{DEMO_MODEL}", dry_run=target)
    assert [p.name for p in target.iterdir()] == ["README.md"]
    assert (target / "README.md").read_text() == "the other process's card"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".publish-")]


def test_refuses_card_without_results(run_dir, tmp_path):
    source = tmp_path / "run"
    shutil.copytree(run_dir, source)
    (source / "results.json").unlink()
    with pytest.raises(ValueError, match="without results"):
        hub.publish(source, "me/model", dry_run=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert (
        cli_main(
            ["publish", str(source), "--repo-id", "me/model", "--dry-run", str(tmp_path / "o")]
        )
        == 2
    )


def test_official_results_need_an_explicit_release_folder(run_dir, tmp_path, monkeypatch):
    """No default is guessed from where the checkout sits: the hub config's 'official' results
    need --official-dir (or TIMM_PUSHPULL_OFFICIAL_DIR), and the refusal says so."""
    monkeypatch.delenv("TIMM_PUSHPULL_OFFICIAL_DIR", raising=False)
    config = tmp_path / "official.yaml"
    config.write_text(
        yaml.safe_dump(
            {"repo_id": "me/model", "dataset": "fashion_mnist", "training": {"Epochs": 1},
             "results": {"official": "resnet/resnet-20-pp"}}
        )
    )  # fmt: skip
    with pytest.raises(
        FileNotFoundError,
        match="resnet/resnet-20-pp.*pass --official-dir .or set TIMM_PUSHPULL_OFFICIAL_DIR",
    ):
        hub.publish(run_dir, hub_config=config, dry_run=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["x.safetensors", "x.pth"])
def test_unreadable_weights_file_is_named(tmp_path, name):
    from timm_pushpull.errors import CheckpointError
    from timm_pushpull.factory import load_weights

    path = tmp_path / name
    path.write_text("not weights\n")
    with pytest.raises(CheckpointError, match=f"{name} is not a readable weights file"):
        load_weights(timm.create_model("lenet5_a"), path)


def test_refuses_weights_that_do_not_fit(run_dir, tmp_path):
    # lenet5_a has conv1.weight where lenet5_a_pp has conv1.push.weight
    with pytest.raises(ValueError, match="does not fit 'lenet5_a'"):
        hub.publish(
            run_dir / "model.safetensors", "me/model", model="lenet5_a",
            results=run_dir / "results.json", dry_run=tmp_path / "out",
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_mismatched_tensors_fail_clearly(published, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(published, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "lenet5_a"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit the architecture 'lenet5_a'") as info:
        hub.create_model(f"local-dir:{folder}", pretrained=True)
    assert "conv1.push.weight" in str(info.value)


def test_unregistered_architecture_fails_clearly(published, tmp_path):
    folder = tmp_path / "unknown"
    shutil.copytree(published, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "lenet5_a_ppp"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match="'lenet5_a_ppp'.*not registered.*Did you mean lenet5_a_pp"
    ):
        hub.create_model(f"local-dir:{folder}", pretrained=True)
    del config[hub.VERSION_KEY]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="import that package"):
        hub.create_model(f"local-dir:{folder}", pretrained=True)
    (folder / "README.md").unlink()  # a model folder, not a written Hub folder
    with pytest.raises(ValueError, match="not registered"):
        hub.publish(folder, "me/model", dry_run=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_local_folder_without_safetensors_is_refused(published, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(published / "config.json", folder)
    torch.save(load_file(published / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="only from safetensors"):
        hub.create_model(f"local-dir:{folder}", pretrained=True)


def test_offline(published, tmp_path):
    """HF_HUB_OFFLINE=1, empty Hugging Face cache: local weights load, nothing else silently."""
    script = f"""
import json, torch, timm, timm_pushpull
from safetensors.torch import save_file
from timm_pushpull import hub
torch.set_num_threads(1)  # same arithmetic as the test process, so the logits compare bit for bit
out = {{}}
inputs = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    save_file({{"logits": timm.create_model("{DEMO_MODEL}", pretrained=True).eval()(inputs)}},
              "{tmp_path}/logits.safetensors")
def error(call):
    try:
        call()
    except Exception as e:  # the built-in kinds it is, and its message
        return [[kind.__name__ for kind in type(e).__mro__], str(e)]
out["pretrained"] = error(lambda: timm.create_model("lenet5_a.demo_fmnist", pretrained=True))
out["hf_hub"] = error(lambda: hub.create_model("hf-hub:timm-pushpull/lenet5_a.demo_fmnist", pretrained=True))
out["upload"] = error(lambda: hub.publish("{published}", "me/model"))
print(json.dumps(out))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env[hub.WEIGHTS_DIR_ENV] = str(published.parent)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout.strip().splitlines()[-1])

    expected = _logits(timm.create_model(f"local-dir:{published}", pretrained=True), _inputs())
    assert torch.equal(load_file(tmp_path / "logits.safetensors")["logits"], expected)
    kinds, message = errors["pretrained"]
    assert "FileNotFoundError" in kinds
    assert str(published.parent / "lenet5_a.demo_fmnist" / "model.safetensors") in message
    assert "timm-pushpull demo" in message  # the Hub does not hold them: how to make them
    assert "FileNotFoundError" in errors["hf_hub"][0] and "local-dir:" in errors["hf_hub"][1]
    assert "ConnectionError" in errors["upload"][0] and "--dry-run" in errors["upload"][1]


def test_official_model_card_and_weights(official_dir, tmp_path, monkeypatch, logits_atol):
    from timm_pushpull.models.official import convert_official_checkpoint
    from timm_pushpull.robustness.baselines import ALEXNET_CIFAR10_C

    converted = convert_official_checkpoint(
        official_dir / "checkpoints" / "resnet-20-pp.pth.tar", tmp_path / "converted"
    )
    target = tmp_path / "weights" / "resnet20_pp.official_c10"
    hub.publish(
        converted, hub_config=REPO_ROOT / "hub_configs" / "resnet20_pp.official_c10.yaml",
        dry_run=target, official_dir=official_dir,
    )  # fmt: skip
    assert (target / "LICENSE").read_text() == (official_dir / "LICENSE").read_text()

    card = ModelCard.load(target / "README.md")
    assert card.data.license == "mit"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["error"] == pytest.approx(100 - 91.71)
    # mCE from the authors' other summary file (C_average.txt: % error averaged over severities)
    averages = {}
    for line in (
        (official_dir / "results/resnet/resnet-20-pp/C_average.txt").read_text().splitlines()
    ):
        name, value = line.split("|")
        averages[name.split(":")[1].strip()] = float(value.split(":")[1]) / 100
    baseline = ALEXNET_CIFAR10_C.corruption_errors
    mce = sum(averages[c] / baseline[c] for c in baseline) / len(baseline)
    assert values["mCE"] == pytest.approx(100 * mce, abs=0.02)
    assert {r.source_name for r in card.data.eval_results} == {
        "Strisciuglio et al. 2020, the authors' released CIFAR-10-C/-P results"
    }
    assert "not measured by timm-pushpull" in card.text

    reference = torch.load(official_dir / "reference_logits.pt", weights_only=True)
    inputs = (reference["inputs_01"] - reference["mean"].view(1, -1, 1, 1)) / reference["std"].view(
        1, -1, 1, 1
    )
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(target.parent))
    model = timm.create_model("resnet20_pp.official_c10", pretrained=True)
    torch.testing.assert_close(
        _logits(model, inputs), reference["logits"]["resnet20_pp"], atol=logits_atol, rtol=0
    )


def test_hub_configs_match_registered_models(official_dir):
    from timm.models import get_pretrained_cfg

    files = sorted((REPO_ROOT / "hub_configs").glob("*.yaml"))
    names = {f.stem for f in files}
    official = {f"{a}{s}.official_c10" for a in ("resnet20", "resnet32", "resnet44", "resnet56",
                "densenet40_12", "densenet100_12") for s in ("", "_pp")}  # fmt: skip
    demo = {
        f"{a}.demo_fmnist"
        for a in ("lenet5_a", "lenet5_a_pp", "resnet20", "resnet20_pp", "resnet20_pp_b1")
    }
    assert names == official | demo
    for path in files:
        config = hub.HubConfig.load(path)
        assert config.model == path.stem and config.repo_id == f"timm-pushpull/{path.stem}"
        # the tag points at the Hub only once the hub config says the repository is there
        expected = config.repo_id if config.published else None
        assert get_pretrained_cfg(config.model).hf_hub_id == expected
        assert config.summary and config.title and config.dataset
        if path.stem in official:
            assert config.license == "mit" and config.training
            for key in ("official", "flip_baseline"):
                if key in config.results:
                    assert (
                        official_dir / "results" / config.results[key] / "C_details.txt"
                    ).is_file()


def test_hub_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"repo_id": "a/b", "licence": "mit"}))
    with pytest.raises(ValueError, match=r"unknown keys \['licence'\]"):
        hub.HubConfig.load(path)


def test_model_converted_for_fine_tuning_loads_back(tmp_path):
    """``train --convert`` saves the unconverted architecture plus the conversion it applied."""
    from timm_pushpull.layers import convert_to_pushpull
    from timm_pushpull.training.checkpoint import save_model_folder

    model = convert_to_pushpull(
        timm.create_model("test_resnet", num_classes=3), "stage1", pull_scale=3.0
    )
    save_model_folder(
        model, tmp_path, None, {"pushpull_conversion": {"scope": "stage1", "pull_scale": 3.0}}
    )
    loaded = timm_pushpull.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert isinstance(loaded.conv1[0], PushPull2d) and loaded.conv1[0].pull_scale == 3.0
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)


def _closed_port() -> int:
    """A localhost port nothing listens on: connections to it are refused at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_upload_without_network_is_one_line_naming_the_repo(published, tmp_path):
    """issue 26: publish with a token and no network gave an httpx ConnectError traceback."""
    env = dict(os.environ, HF_TOKEN="hf_not_a_real_token", HF_HOME=str(tmp_path / "hf"))
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    env.pop("HF_HUB_OFFLINE", None)
    cmd = [sys.executable, "-m", "timm_pushpull.cli", "publish", str(published),
           "--repo-id", f"timm-pushpull/{DEMO_MODEL}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"timm-pushpull/{DEMO_MODEL}" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert "--dry-run" in lines[0]


@pytest.mark.parametrize("offline", [True, False])
def test_uncached_hub_model_is_one_line_naming_the_repo_and_hf_hub_offline(tmp_path, offline):
    """issue 26 item 7: an `hf-hub:` model that is neither cached nor reachable is one line naming
    the repository and HF_HUB_OFFLINE, whether or not offline mode is set (the endpoint here is a
    closed local port: a real refused connection, nothing mocked)."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "empty-hf-home"), HF_HUB_ETAG_TIMEOUT="5")
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "timm_pushpull.cli", "evaluate", "--model",
           "hf-hub:org/not-cached", "--pretrained", "--dataset", "fashion_mnist", "--suite", "c",
           "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "org/not-cached" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert "local-dir:" in lines[0]
    assert not out.exists()
