"""Datasets in every supported on-disk format (tiny copies written here) and the augmentation."""

import gzip
import os
import pickle
import random
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import NAME_TO_OP, AugmentOp
from torch.utils.data import DataLoader

from timm_pushpull.data import (
    CIFAR10_POLICY,
    EpochShuffleSampler,
    SeededTransformDataset,
    collate_uint8,
    create_auto_augment,
    create_dataset,
    create_eval_transform,
    create_train_transform,
    cutout,
    normalize_batch,
    read_idx,
    subset,
)


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    """IDX as specified on LeCun's MNIST page: 0, 0, type 0x08 (ubyte), ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def make_mnist_folder(folder, n_train=6, n_test=4, size=28, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_read_back_exactly(tmp_path, compress):
    arrays = make_mnist_folder(tmp_path, compress=compress)
    images, labels = arrays["t10k"]
    dataset = create_dataset("fashion_mnist", root=tmp_path, split="test")
    assert len(dataset) == 4
    for i in range(4):
        image, label = dataset[i]
        assert image.mode == "L" and np.array_equal(np.asarray(image), images[i])
        assert label == int(labels[i]) and isinstance(label, int)
    assert dataset.classes[0] == "T-shirt/top"


def test_idx_torchvision_layout_and_bad_files(tmp_path):
    arrays = make_mnist_folder(tmp_path / "MNIST" / "raw")
    dataset = create_dataset("mnist", root=tmp_path, split="train")
    assert np.array_equal(dataset.data, arrays["train"][0])
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(FileNotFoundError, match="empty does not exist"):
        create_dataset("mnist", root=tmp_path / "empty", split="test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        create_dataset("mnist", root=tmp_path / "empty", split="test")
    with pytest.raises(ValueError, match="split="):
        create_dataset("mnist", root=tmp_path, split="holdout")
    with pytest.raises(ValueError, match="allowed:.*cifar10"):
        create_dataset("svhn", root=tmp_path)


def test_damaged_idx_files_are_user_errors_naming_the_file(tmp_path):
    from timm_pushpull.errors import UserError

    make_mnist_folder(tmp_path, n_train=3, n_test=2, compress=False)
    whole = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    damaged = {
        "cut": whole[:-5],  # shorter than the header's 3 x 28 x 28 bytes
        "padded": whole + b"\0",  # a file with more than its header says is not one split
        "cut.gz": gzip.compress(whole)[:-20],  # a download that stopped early
    }
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=str(tmp_path / name)):
            read_idx(tmp_path / name)


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 2).tolist()
        batches[name] = (data, labels)
        with (folder / name).open("wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": names}, f)

    train = create_dataset("cifar10", root=tmp_path, split="train")
    test = create_dataset("cifar10", root=tmp_path, split="test")
    assert (len(train), len(test)) == (10, 2) and train.classes == names
    data, labels = batches["data_batch_3"]
    image, label = train[5]  # batch 3, second image: rows are R plane, G plane, B plane
    expected = data[1].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(image), expected) and label == labels[1]


def test_hf_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(2)
    arrays = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    split = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(a) for a in arrays], "label": [2, 0, 1]}, features=features
    )
    datasets.DatasetDict(train=split, test=split.select([1])).save_to_disk(str(tmp_path / "dd"))
    dataset = create_dataset(f"hf:{tmp_path / 'dd'}", split="train")
    assert len(dataset) == 3 and dataset.classes == ("a", "b", "c")
    image, label = dataset[0]
    assert np.array_equal(np.asarray(image), arrays[0]) and label == 2
    assert create_dataset(f"hf:{tmp_path / 'dd'}", split="test")[0][1] == 0
    with pytest.raises(ValueError, match="split='val'"):
        create_dataset(f"hf:{tmp_path / 'dd'}", split="val")
    # a single saved split with an `image` column (the MNIST-style name)
    split.rename_column("img", "image").save_to_disk(str(tmp_path / "single"))
    assert create_dataset(f"hf:{tmp_path / 'single'}", split="train")[2][1] == 1
    split.rename_column("img", "pixels").save_to_disk(str(tmp_path / "odd"))
    with pytest.raises(ValueError, match="no image column"):
        create_dataset(f"hf:{tmp_path / 'odd'}")


def test_image_folder_with_split_folders(tmp_path):
    for split, count in (("train", 2), ("val", 1)):
        for cls, value in (("cat", 10), ("dog", 200)):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (5, 4), (value, i, 0)).save(tmp_path / split / cls / f"{i}.png")
    train = create_dataset(f"folder:{tmp_path}", split="train")
    val = create_dataset(f"folder:{tmp_path}", split="val")
    assert (len(train), len(val)) == (4, 2)
    assert sorted(label for _, label in train) == [0, 0, 1, 1]
    image, label = val[1]
    assert label == 1 and np.asarray(image)[0, 0].tolist() == [200, 0, 0]
    assert len(create_dataset("folder", root=tmp_path, split="val")) == 2  # the recipes' spelling


def test_cutout_fills_one_clipped_square():
    image = np.full((2, 10, 10), 255, np.uint8)
    for seed in range(30):
        out = cutout(image, 4, fill=(7, 9), rng=np.random.default_rng(seed))
        replay = np.random.default_rng(seed)  # the same centre draws
        cy, cx = int(replay.integers(10)), int(replay.integers(10))
        mask = np.zeros((10, 10), bool)
        mask[max(cy - 2, 0) : min(cy + 2, 10), max(cx - 2, 0) : min(cx + 2, 10)] = True
        assert (out[0][mask] == 7).all() and (out[1][mask] == 9).all()
        assert (out[:, ~mask] == 255).all()
        assert mask.sum() <= 16 and (mask.sum() == 16) == (2 <= cy <= 8 and 2 <= cx <= 8)
    assert (image == 255).all()  # input untouched
    with pytest.raises(ValueError, match="size=0"):
        cutout(image, 0)


def test_cifar10_autoaugment_policy_uses_the_papers_ranges():
    assert len(CIFAR10_POLICY) == 25 and all(len(sub) == 2 for sub in CIFAR10_POLICY)
    assert all(op in NAME_TO_OP and 0 <= p <= 1 for sub in CIFAR10_POLICY for op, p, _ in sub)
    policy = create_auto_augment("cifar10", 32, (0.5, 0.5, 0.5))
    # TranslateX at level 9 with the CIFAR hparams moves 9 px (10 px at level 10 on 32 px images)
    op = next(
        op for sub in policy.policy for op in sub if op.name == "TranslateX" and op.magnitude == 9
    )
    translate = AugmentOp("TranslateX", 1.0, 9, op.hparams)
    column = np.zeros((32, 32, 3), np.uint8)
    column[:, 16] = 255
    random.seed(0)
    moved = np.asarray(translate(Image.fromarray(column)))
    assert {int(np.flatnonzero(moved[5, :, 0] == 255)[0]) - 16} <= {-9, 9}
    out = policy(Image.fromarray(column))
    assert out.size == (32, 32)
    with pytest.raises(ValueError, match="allowed: cifar10"):
        create_auto_augment("cifar11", 32, (0.5,))


def test_pad_crop_is_a_shift_with_zero_fill():
    rng = np.random.default_rng(3)
    pixels = rng.integers(1, 256, (8, 8), dtype=np.uint8)
    transform = create_train_transform(8, 1, (0.0,), crop="pad", padding=2, hflip=0.0)
    padded = np.pad(pixels, 2)
    shifts = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = transform(Image.fromarray(pixels))
        assert out.dtype == np.uint8 and out.shape == (1, 8, 8)
        match = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[dy : dy + 8, dx : dx + 8], out[0])
        ]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) > 3  # it does move
    # evaluation: no randomness; a 28 px image centre-padded to 32
    evaluation = create_eval_transform(32, 1, crop="none")
    out = evaluation(Image.fromarray(np.full((28, 28), 255, np.uint8)))
    assert (
        out.shape == (1, 32, 32) and (out[0, 2:30, 2:30] == 255).all() and (out[0, :2] == 0).all()
    )
    # per batch: (x / 255 - mean) / std
    batch = collate_uint8([(out, 3), (out, 4)])
    assert batch[0].dtype == torch.uint8 and batch[1].tolist() == [3, 4]
    normalized = normalize_batch(batch[0], (0.5,), (0.25,))
    assert normalized[1, 0, 5, 5] == 2.0 and normalized[0, 0, 0, 0] == -2.0
    with pytest.raises(ValueError, match="crop='corner'"):
        create_train_transform(32, crop="corner")
    with pytest.raises(ValueError, match="in_chans=1"):
        create_train_transform(32, 1, (0.5, 0.5, 0.5))


def test_augmentation_depends_only_on_seed_epoch_index(tmp_path):
    make_mnist_folder(tmp_path, n_train=12)
    base = create_dataset("mnist", root=tmp_path, split="train")
    transform = create_train_transform(
        28, 1, (0.5,), crop="pad", hflip=0.5, auto_augment="rand-m9-mstd0.5", cutout=8
    )
    seeded = SeededTransformDataset(base, transform, seed=7)
    forward = [seeded[i][0] for i in range(12)]
    backward = [seeded[i][0] for i in reversed(range(12))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(forward, backward, strict=True))
    seeded.epoch = 1
    assert not all(np.array_equal(a, seeded[i][0]) for i, a in enumerate(forward))
    # the main-process torch stream (dropout's) is left where it was
    torch.manual_seed(5)
    reference = torch.rand(3)
    torch.manual_seed(5)
    seeded[0]
    assert torch.equal(torch.rand(3), reference)
    # workers give the batches of the main process
    sampler = EpochShuffleSampler(12, seed=3)
    sampler.epoch = seeded.epoch = 2

    def batches(workers):
        loader = DataLoader(
            seeded, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=collate_uint8
        )
        return [images for images, _ in loader]

    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(2), strict=True))


def test_epoch_sampler_and_subset():
    sampler = EpochShuffleSampler(10, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and list(sampler) == first
    sampler.epoch = 1
    second = list(sampler)
    assert sorted(second) == list(range(10)) and second != first
    sampler.epoch = 0
    assert list(sampler) == first  # the order of an epoch does not depend on history
    data = list(range(100))
    chosen = subset(data, 10, seed=4)
    assert len(chosen) == 10 and list(chosen) == list(subset(data, 10, seed=4))
    assert list(chosen) == sorted(chosen) and subset(data, None) is data
    with pytest.raises(ValueError, match="max_samples=0"):
        subset(data, 0)


def test_uncached_hf_dataset_offline_is_one_line_naming_it(tmp_path):
    """issue 26: `evaluate --dataset hf:org/not-cached` without the Hub gave a traceback."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "timm_pushpull.cli", "evaluate", "--model", "lenet5_a",
           "--dataset", "hf:org/not-cached", "--suite", "c", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "org/not-cached" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert not out.exists()


def test_network_failures_are_told_from_other_errors():
    from timm_pushpull.errors import is_network_failure

    def raised(error, cause):
        try:
            try:
                raise cause
            except BaseException as inner:
                raise error from inner
        except BaseException as outer:
            return outer

    assert is_network_failure(raised(RuntimeError("transport"), ConnectionRefusedError()))
    assert is_network_failure(raised(ValueError("x"), TimeoutError()))
    assert not is_network_failure(raised(ValueError("x"), FileNotFoundError()))
    assert not is_network_failure(KeyError("k"))
