"""`evaluate` on several processes (torchrun, gloo on CPUs) against one process, on small files
in the official layouts: the same numbers, resume with another number of processes, a killed
process. Every launch starts real processes: few images, timm's tiny ``test_resnet``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from timm_pushpull.cli import main
from timm_pushpull.locking import user_files
from timm_pushpull.robustness.parallel import shard
from timm_pushpull.robustness.results import PER_IMAGE_FILE

WORKER = Path(__file__).with_name("evaluate_worker.py")


def _images(generator, count, size=32):
    """uint8 ``[count, size, size, 3]``: a random colour per image plus texture, so that a random
    network's predictions vary from image to image (on plain noise they are all one class)."""
    colours = generator.integers(0, 180, (count, 1, 1, 3))
    return (colours + generator.integers(0, 76, (count, size, size, 3))).astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Weights of a seeded test_resnet; CIFAR-10-C (70 images per severity: blocks of 32 split
    unevenly between 2 processes), CIFAR-10-P (10 sequences of 3 frames), ImageNet-C (2 classes x
    18 JPEGs, severities 1 and 3) and a clean image folder (3 classes x 15) in their official layouts."""
    import timm
    from timm.models import save_for_hf

    root = tmp_path_factory.mktemp("parallel")
    torch.manual_seed(0)
    save_for_hf(timm.create_model("test_resnet", num_classes=10), str(root / "model"),
                safe_serialization=True)  # fmt: skip
    generator = np.random.default_rng(0)
    cifar_c = root / "CIFAR-10-C"
    cifar_c.mkdir()
    for name in ("fog", "contrast"):
        np.save(cifar_c / f"{name}.npy", _images(generator, 5 * 70))
    np.save(cifar_c / "labels.npy", generator.integers(0, 10, 5 * 70))
    cifar_p = root / "CIFAR-10-P"
    cifar_p.mkdir()
    for name in ("translate", "gaussian_noise"):
        np.save(cifar_p / f"{name}.npy", _images(generator, 30).reshape(10, 3, 32, 32, 3))
    for severity in (1, 3):
        for wnid in ("n01440764", "n01443537"):
            folder = root / "ImageNet-C" / "fog" / str(severity) / wnid
            folder.mkdir(parents=True)
            for number, image in enumerate(_images(generator, 18, size=40)):
                Image.fromarray(image).save(folder / f"ILSVRC2012_val_{number}.JPEG")
    for label in range(3):
        (root / "clean" / f"class{label}").mkdir(parents=True)
        for number, image in enumerate(_images(generator, 15)):
            Image.fromarray(image).save(root / "clean" / f"class{label}" / f"{number}.png")
    return root


def _arguments(data: Path, out: Path, *datasets: str, model: str = "test_resnet") -> list[str]:
    arguments = ["evaluate", "--model", model, "--num-classes", "10", "--img-size", "32",
                 "--checkpoint", str(data / "model" / "model.safetensors"), "--device", "cpu",
                 "--batch-size", "16", "--severities", "1,3", "--out", str(out), "--no-progress",
                 "--no-report"]  # fmt: skip
    for dataset in datasets:
        arguments += ["--dataset", str(data / dataset)]
    return arguments


def _launch(arguments: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 tests/evaluate_worker.py ARGUMENTS``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(WORKER), *arguments]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})  # fmt: skip


def _read(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _per_image(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / PER_IMAGE_FILE) as stored:
        return {key: stored[key] for key in stored.files}


def _assert_same_outcomes(first: Path, second: Path) -> None:
    one, other = _per_image(first), _per_image(second)
    assert sorted(one) == sorted(other)
    for key, values in one.items():
        assert values.dtype == other[key].dtype and np.array_equal(values, other[key]), key


def test_shards_are_whole_blocks_covering_every_image_once():
    assert [shard(70, 32, rank, 2) for rank in range(2)] == [range(0, 32), range(32, 70)]
    assert [shard(70, 32, rank, 4) for rank in range(4)] == [
        range(0, 0), range(0, 32), range(32, 64), range(64, 70)
    ]  # fmt: skip
    for count, block, world_size in ((1, 32, 3), (100, 4, 7), (4096, 32, 8)):
        shards = [shard(count, block, rank, world_size) for rank in range(world_size)]
        assert [i for s in shards for i in s] == list(range(count))
        assert all(s.start % block == 0 for s in shards if len(s))
    with pytest.raises(ValueError, match="rank"):
        shard(10, 4, 2, 2)


def test_two_processes_give_the_numbers_of_one(data, tmp_path):
    # ImageNet-C JPEGs, CIFAR-10-P sequences, a clean folder for the seeded shift and noise draws
    datasets = ("ImageNet-C", "CIFAR-10-P", "clean")
    arguments = _arguments(data, tmp_path / "two", *datasets) + [
        "--suite", "c,p,shift,noise", "--max-images", "33", "--workers", "1"
    ]  # fmt: skip
    exits = tmp_path / "exits"
    exits.mkdir()
    launched = _launch(arguments, env={"EXIT_REPORT": str(exits)})
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("clean error") == 1  # the first process alone prints the table
    # each process destroyed its gloo group before the interpreter's finalization, where gloo's
    # threads abort the process now and then (pytorch/pytorch#190489)
    assert {p.name: p.read_text() for p in exits.iterdir()} == {"rank0": "False", "rank1": "False"}
    assert main(_arguments(data, tmp_path / "one", *datasets) + arguments[-6:]) == 0
    two, one = _read(tmp_path / "two"), _read(tmp_path / "one")
    assert (two.pop("world_size"), one.pop("world_size")) == (2, 1)
    assert two == one
    assert json.dumps(two, sort_keys=True) == json.dumps(one, sort_keys=True)
    # the numbers say something: predictions vary with the images
    assert 0 < one["clean_error"] < 1 and 0 < one["perturbations"]["translate"]["flip_probability"]
    assert one["n_images"] == 33 and one["perturbations"]["translate"]["n_sequences"] == 10
    # each image's outcomes too, gathered in image order from both processes
    _assert_same_outcomes(tmp_path / "two", tmp_path / "one")
    assert _per_image(tmp_path / "two")["noise_sweeps/gaussian"].shape == (7, 33)


def test_a_killed_process_leaves_whole_units_and_one_process_finishes_the_run(data, tmp_path):
    datasets = ("CIFAR-10-C", "clean")
    out = tmp_path / "killed"
    # the second process holds images 32..44 of the clean set (1 forward pass of 16) and 32..69
    # of each severity (3 passes): pass 11 is the first of contrast's second severity, after the
    # gather of its first, which the first process joins only once it has written fog
    launched = _launch(_arguments(data, out, *datasets, model="killable_test_resnet"),
                       env={"KILL_RANK": "1", "KILL_AT": "11"})  # fmt: skip
    assert launched.returncode != 0
    written = _read(out)
    assert written["world_size"] == 2 and written["clean_error"] is not None
    assert list(written["corruptions"]) == ["fog"]
    # and the lock of the killed run, which the OS released with its process
    assert sorted(path.name for path in user_files(out)) == [PER_IMAGE_FILE, "results.json"]

    assert main(_arguments(data, out, *datasets)) == 0  # resumed by one process
    assert main(_arguments(data, tmp_path / "whole", *datasets)) == 0
    assert (out / "results.json").read_text() == (tmp_path / "whole" / "results.json").read_text()
    assert list(_read(out)["corruptions"]) == ["fog", "contrast"]
    _assert_same_outcomes(out, tmp_path / "whole")


def test_processes_with_other_weights_are_refused(data, tmp_path):
    arguments = _arguments(data, tmp_path / "out", "clean", model="killable_test_resnet")
    at = arguments.index("--checkpoint")
    del arguments[at : at + 2]  # the seeded initial weights, other on the second process
    launched = _launch(arguments, env={"OTHER_WEIGHTS_RANK": "1"})
    assert launched.returncode != 0
    error = "the 2 processes evaluate different runs (weights_sha256 differ)"
    assert error in launched.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was evaluated or written
