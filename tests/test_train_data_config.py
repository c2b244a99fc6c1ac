"""Training without a recipe follows the model and the data: input size, channels and normalisation
from the model's pretrained_cfg (as timm's ``resolve_data_config``), the number of classes from the
dataset. Every registered model family takes the pipeline of every built-in dataset (one batch
through the model, no training); a pipeline a model cannot take fails before the run, in one line.
"""

import json
import pickle
import re
from contextlib import redirect_stderr
from io import StringIO

import numpy as np
import pytest
import timm
import torch
from test_data import make_mnist_folder
from timm.models import model_entrypoint

from timm_pushpull.data import collate_uint8, normalize_batch
from timm_pushpull.errors import InvalidArgumentError
from timm_pushpull.training.config import build_config, with_model_data_config
from timm_pushpull.training.trainer import prepare_training
from timm_pushpull_cli import main

# one small model per module that registers models, with the input its pretrained_cfg states
# (the papers' settings: LeNet-5 on 28x28 grey Fashion-MNIST, CIFAR 32x32 RGB, ImageNet 224x224)
FMNIST = ((1, 28, 28), (0.2860,), (0.3530,))
CIFAR = ((3, 32, 32), (125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255))
IMAGENET = ((3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
FAMILIES = {
    "timm_pushpull.models.lenet": ("lenet5_a", FMNIST),
    "timm_pushpull.models.cifar_resnet": ("resnet20_pp", CIFAR),
    "timm_pushpull.models.cifar_wrn": ("wrn16_4_pp", CIFAR),
    "timm_pushpull.models.cifar_densenet": ("densenet40_12_pp", CIFAR),
    "timm_pushpull.models.imagenet_resnet_pp": ("resnet18_pp", IMAGENET),
}
DATASETS = {"mnist": 10, "fashion_mnist": 10, "kmnist": 10, "cifar10": 10, "cifar100": 100}


def write_cifar(root, classes: int, count: int = 4, seed: int = 0) -> None:
    """``count`` random images per split in CIFAR-10's or CIFAR-100's python-pickle layout."""
    rng = np.random.default_rng(seed)
    cifar10 = classes == 10
    folder = root / ("cifar-10-batches-py" if cifar10 else "cifar-100-python")
    folder.mkdir(parents=True)
    names = (
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if cifar10 else ["train", "test"]
    )
    key = "labels" if cifar10 else "fine_labels"
    for name in names:
        data = rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)
        with (folder / name).open("wb") as f:
            pickle.dump({"data": data, key: rng.integers(0, classes, count).tolist()}, f)
    meta, meta_key = ("batches.meta", "label_names") if cifar10 else ("meta", "fine_label_names")
    with (folder / meta).open("wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, f)


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_mnist_folder(root / "idx", n_train=4, n_test=2)
    write_cifar(root / "cifar10", 10)
    write_cifar(root / "cifar100", 100)
    return {"mnist": root / "idx", "fashion_mnist": root / "idx", "kmnist": root / "idx",
            "cifar10": root / "cifar10", "cifar100": root / "cifar100"}  # fmt: skip


def test_every_module_registering_models_has_a_family_here():
    modules = {model_entrypoint(name).__module__ for name in timm.list_models()}
    assert {m for m in modules if m.startswith("timm_pushpull.")} == set(FAMILIES)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("module", FAMILIES)
def test_without_a_recipe_every_family_takes_every_builtin_dataset(module, dataset, data_dirs):
    model_name, (input_size, mean, std) = FAMILIES[module]
    cfg = build_config(None, dict(model=model_name, dataset=dataset, data_dir=str(data_dirs[dataset]),
                                  batch_size=2, workers=0))  # fmt: skip
    resolved, model, train_set, _ = prepare_training(cfg)
    assert (resolved.in_chans, resolved.img_size, resolved.img_size) == input_size
    assert resolved.mean == pytest.approx(mean) and resolved.std == pytest.approx(std)
    assert resolved.num_classes == DATASETS[dataset]
    images, labels = collate_uint8([train_set[0], train_set[1]])
    assert tuple(images.shape) == (2, *input_size) and images.dtype == torch.uint8
    with torch.no_grad():
        logits = model.train()(normalize_batch(images, resolved.mean, resolved.std))
    assert logits.shape == (2, DATASETS[dataset]) and torch.isfinite(logits).all()


def _cli(*argv: str) -> tuple[int, str]:
    err = StringIO()
    with redirect_stderr(err):
        code = main(["train", *argv])
    return code, err.getvalue()


def test_the_obvious_command_trains_lenet_on_fashion_mnist(tmp_path):
    """`train --model lenet5_a --dataset fashion_mnist`, no recipe: it used to stop mid-epoch on
    32x32 RGB images that LeNet-5 (28x28 grey) cannot take."""
    data = tmp_path / "fmnist"
    make_mnist_folder(data, n_train=32, n_test=8)
    out = tmp_path / "run"
    code, err = _cli("--model", "lenet5_a", "--dataset", "fashion_mnist", "--data-dir", str(data),
                     "--epochs", "1", "--batch-size", "16", "--workers", "0", "--cpu",
                     "--no-progress", "--output", str(out))  # fmt: skip
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())["pretrained_cfg"]
    assert tuple(saved["input_size"]) == (1, 28, 28) and saved["mean"] == pytest.approx([0.2860])
    assert saved["std"] == pytest.approx([0.3530])
    assert timm.create_model(f"local-dir:{out}", pretrained=True)(
        torch.zeros(1, 1, 28, 28)
    ).shape == (1, 10)


def test_a_pipeline_the_model_cannot_take_is_refused_before_the_run(tmp_path):
    data = tmp_path / "fmnist"
    make_mnist_folder(data, n_train=8, n_test=2)
    out = tmp_path / "run"
    # the CIFAR recipe says 3x32x32; LeNet-5's fully connected layers take 28x28 only
    code, err = _cli("--recipe", "cifar_resnet", "--model", "lenet5_a", "--dataset",
                     "fashion_mnist", "--data-dir", str(data), "--batch-size", "4", "--workers", "0",
                     "--cpu", "--output", str(out))  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "lenet5_a fails on the (3, 32, 32) images" in err and "(1, 28, 28)" in err
    assert not out.exists()


def test_set_fields_win_and_model_values_fit_the_channels():
    model = timm.create_model("lenet5_a")
    cfg = build_config(None, dict(model="lenet5_a", in_chans=3, img_size=28, std=[0.5, 0.5, 0.5]))
    resolved = with_model_data_config(cfg, model)
    # one grey statistic for each of the three channels; the set std is kept
    assert resolved.mean == pytest.approx([0.2860] * 3) and resolved.std == [0.5, 0.5, 0.5]
    with pytest.raises(InvalidArgumentError, match="3 mean values.*1 input channel.*set mean"):
        with_model_data_config(build_config(None, dict(model="resnet20", in_chans=1)),
                               timm.create_model("resnet20"))  # fmt: skip
    # a pretrained_cfg that cannot normalise (std 0), or is not square, is refused by name
    broken = timm.create_model("lenet5_a")
    broken.pretrained_cfg = dict(broken.pretrained_cfg, std=(0.0,))
    with pytest.raises(
        InvalidArgumentError, match="pretrained_cfg of lenet5_a: std=.0.0.; allowed"
    ):
        with_model_data_config(build_config(None, dict(model="lenet5_a")), broken)
    broken.pretrained_cfg = dict(model.pretrained_cfg, input_size=(1, 28, 32))
    with pytest.raises(InvalidArgumentError, match=r"\(1, 28, 32\); training makes square"):
        with_model_data_config(build_config(None, dict(model="lenet5_a")), broken)


@pytest.mark.parametrize(
    "dataset, data_dir, message",
    [
        ("/nonexistent", None, "dataset='/nonexistent'; allowed:.*folder:/nonexistent"),
        ("folder:/nonexistent", None, "/nonexistent does not exist"),
        ("mnist", "/nonexistent", "data_dir of dataset 'mnist': /nonexistent does not exist"),
        ("cifar10", "/nonexistent", "cifar-10-batches-py does not exist"),
        ("cifar10", None, "needs data_dir"),
        ("torch/nosuchset", "/nonexistent", "Unknown torchvision dataset"),
        ("hf:/nonexistent", None, "dataset 'hf:/nonexistent': Couldn't find any data file"),
    ],
)
def test_missing_datasets_are_one_line_errors(tmp_path, dataset, data_dir, message):
    out = tmp_path / "run"
    extra = ["--data-dir", data_dir] if data_dir else []
    code, err = _cli(
        "--model", "lenet5_a", "--dataset", dataset, *extra, "--cpu", "--output", str(out)
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists()
