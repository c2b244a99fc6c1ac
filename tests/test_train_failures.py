"""`timm-pushpull train` on bad input and bad luck: a one-line error (exit 2) before any work, a
run that diverges stops at once keeping its last good checkpoint, and no failed run leaves
anything that blocks, or mixes with, the corrected rerun."""

import shutil
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_data import make_mnist_folder, write_idx

from timm_pushpull.training.checkpoint import RESUME_FILE, load_resume_state
from timm_pushpull.training.config import build_config
from timm_pushpull.training.trainer import prepare_training
from timm_pushpull_cli import main

TINY = ["--model", "lenet5_a", "--dataset", "mnist", "--batch-size", "8", "--eval-batch-size", "8",
        "--workers", "0", "--cpu", "--no-progress", "--lr", "0.05", "--sched", "constant"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    make_mnist_folder(folder, n_train=32, n_test=8)  # 4 steps of 8 images per epoch
    return folder


def train_cli(*argv) -> tuple[int, str]:
    err = StringIO()
    with redirect_stderr(err):
        code = main(["train", *map(str, argv)])
    return code, err.getvalue()


def one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("timm-pushpull train: error:"), err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(tiny_mnist, tmp_path):
    """The learning rate jumps by 1e8 after epoch 1: the loss turns NaN within epoch 2. Before,
    training went on to the end and saved a NaN model with exit status 0."""
    out = tmp_path / "run"
    code, err = train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "3", "--sched", "multistep",
                          "--milestones", "1", "--gamma", "1e8", "--output", out)  # fmt: skip
    line = one_line_error(code, err)
    assert "training diverged" in line and "at epoch 2" in line
    assert f"{out} keeps the checkpoint of step 4" in line
    state = load_resume_state(out)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 4)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not (out / "model.safetensors").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 1 only


def test_divergence_before_a_checkpoint_leaves_no_folder(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    code, err = train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "2", "--lr", "1e30",
                          "--output", out)  # fmt: skip
    assert "training diverged" in one_line_error(code, err) and "nothing was saved" in err
    assert not out.exists()
    # the corrected rerun needs no --overwrite
    assert train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "1", "--output", out)[0] == 0
    assert (out / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def stopped_run(tiny_mnist, tmp_path_factory):
    """A run stopped after 2 of its 4 steps: resumable."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    code, err = train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "1", "--max-steps", "2",
                          "--output", out)  # fmt: skip
    assert code == 0, err
    return out


def _another_models_state(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model"] = {k + "_other": v for k, v in state["model"].items()}
    torch.save(state, path)


def _nan_weights(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model"]["fc.weight"][0, 0] = float("nan")
    torch.save(state, path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "cannot be read"),
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read"),
        (lambda p: torch.save({"model": {}}, p), "not a checkpoint of timm-pushpull train"),
        (_another_models_state, "does not fit this run"),
        (_nan_weights, "non-finite weights in fc.weight"),
    ],
    ids=["garbage", "truncated", "foreign", "other-model", "nan-weights"],
)
def test_damaged_resume_checkpoint_is_one_line_and_nothing_changes(
    stopped_run, tiny_mnist, tmp_path, damage, message
):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    damage(run / RESUME_FILE)
    before = snapshot(run)
    line = one_line_error(*train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "1",
                                     "--resume", "--output", run))  # fmt: skip
    assert str(run / RESUME_FILE) in line and message in line
    assert snapshot(run) == before


def test_damaged_run_config_is_one_line(stopped_run, tiny_mnist, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    (run / "train_config.yaml").write_text("epochs: [unclosed")
    line = one_line_error(*train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "1",
                                     "--resume", "--output", run))  # fmt: skip
    assert "train_config.yaml cannot be read" in line


def test_batch_larger_than_the_data_is_refused_and_the_rerun_works(tiny_mnist, tmp_path):
    """Every step takes a full batch (drop_last): 33 of 32 images would make epochs of no step."""
    out = tmp_path / "run"
    line = one_line_error(*train_cli(*TINY, "--data-dir", tiny_mnist, "--batch-size", "33",
                                     "--output", out))  # fmt: skip
    assert "batch_size=33 is larger than the 32 training images" in line
    assert not out.exists()
    assert train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "1", "--output", out)[0] == 0


def _image_folder(root: Path, classes: int) -> None:
    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"class{c:02d}").mkdir(parents=True)
            Image.new("L", (28, 28), 10 * c).save(root / split / f"class{c:02d}" / "0.png")


def test_twelve_class_folder_for_a_ten_class_model(tmp_path):
    """Before: an IndexError in the middle of the first epoch."""
    _image_folder(tmp_path / "data", 12)
    out = tmp_path / "run"
    line = one_line_error(*train_cli("--model", "lenet5_a", "--dataset", f"folder:{tmp_path / 'data'}",
                                     "--val-split", "val", "--num-classes", "10", "--batch-size", "4",
                                     "--workers", "0", "--cpu", "--output", out))  # fmt: skip
    assert "has 12 classes but num_classes=10" in line and not out.exists()
    # left unset, num_classes follows the folder
    cfg = build_config(None, dict(model="lenet5_a", dataset=f"folder:{tmp_path / 'data'}",
                                  val_split="val", batch_size=4, workers=0))  # fmt: skip
    resolved, model, _, _ = prepare_training(cfg)
    assert resolved.num_classes == 12 and model.get_classifier().out_features == 12


def test_labels_outside_num_classes_are_refused(tmp_path):
    make_mnist_folder(tmp_path / "data", n_train=8, n_test=4)
    labels = torch.arange(8).numpy() + 5  # 5 .. 12
    write_idx(tmp_path / "data" / "train-labels-idx1-ubyte.gz", labels)
    out = tmp_path / "run"
    line = one_line_error(*train_cli(*TINY, "--data-dir", tmp_path / "data", "--num-classes", "10",
                                     "--output", out))  # fmt: skip
    assert "labels 5 to 12; num_classes=10 allows 0 to 9" in line and not out.exists()


def test_overwrite_never_mixes_the_old_runs_files_with_the_new(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    assert train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "1", "--output", out)[0] == 0
    (out / "notes.txt").write_text("the user's own file")
    code, err = train_cli(*TINY, "--data-dir", tiny_mnist, "--epochs", "2", "--max-steps", "2",
                          "--overwrite", "--output", out)  # fmt: skip
    assert code == 0, err
    # stopped before its end: no model of its own, and the old run's model is gone with it
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert (out / "metrics.jsonl").read_text() == "" and load_resume_state(out)["global_step"] == 2
    assert (out / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--set", "model_kwargs.no_such_argument=1"],
            "unexpected model argument(s) ['no_such_argument']",
        ),
        (["--convert", "no_such_conv"], "not convs: ['no_such_conv']"),
        (["--set", "model_kwargs.num_classes=3"], "model_kwargs sets ['num_classes']"),
        (["--mean", "[0.5, 0.5, 0.5]"], "mean=[0.5, 0.5, 0.5]; allowed: 1 value(s)"),
    ],
)
def test_model_settings_it_refuses_are_one_line(tiny_mnist, tmp_path, extra, message):
    out = tmp_path / "run"
    line = one_line_error(*train_cli(*TINY, "--data-dir", tiny_mnist, *extra, "--output", out))
    assert message in line and not out.exists()
