"""Readers of the official CIFAR-10-C / ImageNet-C / CIFAR-10-P / ImageNet-P layouts on small files
of those layouts."""

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from timm_pushpull.robustness.datasets import (
    ArrayImageDataset,
    CifarCFolder,
    CifarPFolder,
    ImageNetCFolder,
    ImageNetPFolder,
    check_severity,
    detect_dataset_kind,
    open_clean_dataset,
    read_npy,
    to_unit_images,
)

PER_SEVERITY = 4


def make_cifar_c(
    root, corruptions=("gaussian_noise", "fog"), per_severity=PER_SEVERITY, labels_per_image=True
):
    """Official layout: every image of severity s holds the value 10 * s + image index."""
    root.mkdir(parents=True, exist_ok=True)
    values = np.array(
        [10 * s + i for s in range(1, 6) for i in range(per_severity)], dtype=np.uint8
    )
    images = np.broadcast_to(values[:, None, None, None], (5 * per_severity, 32, 32, 3)).copy()
    for name in corruptions:
        np.save(root / f"{name}.npy", images)
    labels = np.arange(per_severity) % 10
    np.save(root / "labels.npy", np.tile(labels, 5) if labels_per_image else labels)
    return root


def test_cifar_c_reads_one_severity(tmp_path):
    folder = CifarCFolder(make_cifar_c(tmp_path / "CIFAR-10-C"))
    assert folder.corruptions == ("gaussian_noise", "fog")  # Hendrycks' order, not file order
    images, labels = folder.arrays("fog", 3)
    assert isinstance(images, np.memmap) or isinstance(images.base, np.memmap)
    assert images.shape == (PER_SEVERITY, 32, 32, 3)
    assert images[:, 0, 0, 0].tolist() == [30, 31, 32, 33]
    assert labels.tolist() == [0, 1, 2, 3]
    batch, batch_labels = folder.dataset("gaussian_noise", 5).batch(np.array([1, 3]))
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    assert batch[:, 0, 0, 0].tolist() == pytest.approx([51 / 255, 53 / 255])
    assert batch_labels.tolist() == [1, 3]


def test_cifar_c_accepts_one_label_per_image(tmp_path):
    folder = CifarCFolder(make_cifar_c(tmp_path, labels_per_image=False))
    assert folder.arrays("fog", 2)[1].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("severity", [0, 6, "3", True, 2.0])
def test_severity_outside_one_to_five(tmp_path, severity):
    folder = CifarCFolder(make_cifar_c(tmp_path))
    with pytest.raises(ValueError, match="severity"):
        folder.arrays("fog", severity)
    with pytest.raises(ValueError, match="severity"):
        check_severity(severity)


def test_unknown_corruption_names_the_allowed_ones(tmp_path):
    folder = CifarCFolder(make_cifar_c(tmp_path))
    with pytest.raises(ValueError, match="gaussian_noise, fog"):
        folder.arrays("fgo", 1)
    with pytest.raises(ValueError, match="gaussian_noise, fog"):
        folder.arrays("snow", 1)  # a real corruption, but not in this folder


def test_mismatched_label_count(tmp_path):
    make_cifar_c(tmp_path)
    np.save(tmp_path / "labels.npy", np.arange(7))
    with pytest.raises(ValueError, match="7 labels"):
        CifarCFolder(tmp_path).arrays("fog", 1)


def test_truncated_npy(tmp_path):
    make_cifar_c(tmp_path)
    data = (tmp_path / "fog.npy").read_bytes()
    (tmp_path / "fog.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        CifarCFolder(tmp_path).arrays("fog", 1)
    (tmp_path / "fog.npy").write_bytes(data[:40])  # not even a header
    with pytest.raises(ValueError, match="truncated"):
        read_npy(tmp_path / "fog.npy")


def test_wrong_dtype_and_shape(tmp_path):
    make_cifar_c(tmp_path)
    np.save(tmp_path / "fog.npy", np.zeros((20, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        CifarCFolder(tmp_path).arrays("fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\[5 \* N, H, W, C\]"):
        CifarCFolder(tmp_path).arrays("fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((18, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="5 severities"):
        CifarCFolder(tmp_path).arrays("fog", 1)
    np.save(tmp_path / "labels.npy", np.zeros(20, np.float32))
    np.save(tmp_path / "fog.npy", np.zeros((20, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        CifarCFolder(tmp_path).arrays("fog", 1)


def test_cifar_c_folder_needs_labels(tmp_path):
    with pytest.raises(ValueError, match="labels.npy"):
        CifarCFolder(tmp_path)


def make_cifar_p(root, names=("translate", "gaussian_noise"), count=3, frames=5):
    root.mkdir(parents=True, exist_ok=True)
    sequences = np.zeros((count, frames, 32, 32, 3), np.uint8)
    sequences[:, :, 0, 0, 0] = np.arange(frames)
    for name in names:
        np.save(root / f"{name}.npy", sequences)
    return root


def test_cifar_p_reads_sequences(tmp_path):
    folder = CifarPFolder(make_cifar_p(tmp_path))
    assert folder.perturbations == ("gaussian_noise", "translate")
    sequences, labels = folder.dataset("translate").batch(np.arange(3))
    assert sequences.shape == (3, 5, 3, 32, 32)
    assert sequences[0, :, 0, 0, 0].tolist() == pytest.approx([f / 255 for f in range(5)])
    assert labels.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="allowed"):
        folder.dataset("rotate")
    np.save(tmp_path / "translate.npy", np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, T, H, W, C\]"):
        folder.dataset("translate")


def make_imagenet_c(root, corruption="fog", severities=(1, 2), wnids=("n01440764", "n01443537")):
    for severity in severities:
        for number, wnid in enumerate(wnids):
            folder = root / corruption / str(severity) / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (40, 40), (10 * number, 0, 0)).save(
                folder / f"ILSVRC2012_val_{number}.JPEG"
            )
    return root


def test_imagenet_c_folder(tmp_path):
    from torchvision.transforms import PILToTensor

    folder = ImageNetCFolder(make_imagenet_c(tmp_path), transform=PILToTensor())
    assert folder.corruptions == ("fog",)
    dataset = folder.dataset("fog", 2)
    assert [label for _, label in dataset] == [0, 1]  # sorted wnids, as ImageNet's class indices
    assert dataset[0][0].shape == (3, 40, 40)
    with pytest.raises(ValueError, match="does not exist"):
        folder.dataset("fog", 3)
    with pytest.raises(ValueError, match="severity"):
        folder.dataset("fog", 7)


def make_imagenet_p(root, videos, size=32):
    """ImageNet-P layout ``<perturbation>/<wnid>/<name>.mp4`` from ``{(perturbation, wnid, name):
    RGB levels [T, 3]}``, each frame one colour, written with OpenCV's MPEG-4 encoder (lossy: a
    few levels off)."""
    import cv2

    for (perturbation, wnid, name), levels in videos.items():
        folder = root / perturbation / wnid
        folder.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), fourcc, 10, (size, size))
        assert writer.isOpened()
        for rgb in levels:
            writer.write(np.full((size, size, 3), rgb[::-1], np.uint8))  # OpenCV writes BGR
        writer.release()
    return root


def test_imagenet_p_reads_videos(tmp_path):
    red, green = (200, 40, 30), (30, 180, 60)
    videos = {
        ("translate", "n01443537", "b"): [green] * 3 + [red] * 3,
        ("translate", "n01440764", "a"): [red] * 6,
        ("translate", "n01440764", "c"): [red, green] * 3,
        ("gaussian_noise", "n01440764", "a"): [red] * 4,
    }
    folder = ImageNetPFolder(make_imagenet_p(tmp_path, videos))
    assert folder.perturbations == ("gaussian_noise", "translate")
    dataset = folder.dataset("translate")
    # labels: indices of the sorted wnids, as ImageNet's class indices
    assert [label for _, label in dataset.samples] == [0, 0, 1]
    frames, label = dataset[2]
    assert label == 1 and frames.dtype == torch.uint8 and frames.shape == (6, 32, 32, 3)
    expected = torch.tensor([green] * 3 + [red] * 3, dtype=torch.float32)[:, None, None]
    # RGB, not OpenCV's BGR; within the MPEG-4 encoder's loss
    assert (frames.float() - expected).abs().mean() < 4
    assert (frames.float() - expected).abs().max() < 24
    assert dataset[1][0].shape == (6, 32, 32, 3) and len(folder.dataset("gaussian_noise")) == 1
    with pytest.raises(ValueError, match="allowed"):
        folder.dataset("rotate")
    (tmp_path / "translate" / "n01440764" / "a.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="a.mp4"):
        dataset[0]
    with pytest.raises(ValueError, match="mp4"):
        ImageNetPFolder(tmp_path / "translate")


def test_detect_dataset_kind(tmp_path):
    assert detect_dataset_kind(make_cifar_c(tmp_path / "c")) == "cifar-c"
    assert detect_dataset_kind(make_cifar_p(tmp_path / "p")) == "cifar-p"
    assert detect_dataset_kind(make_imagenet_c(tmp_path / "inc")) == "imagenet-c"
    videos = {("rotate", "n01440764", "a"): [(10, 20, 30)] * 2}
    assert detect_dataset_kind(make_imagenet_p(tmp_path / "inp", videos)) == "imagenet-p"
    (tmp_path / "folder" / "cat").mkdir(parents=True)
    assert detect_dataset_kind(tmp_path / "folder") == "image-folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell"):
        detect_dataset_kind(tmp_path / "empty")


def test_to_unit_images_layouts_and_ranges():
    channels_last = np.full((2, 5, 6, 3), 255, np.uint8)
    assert to_unit_images(channels_last).shape == (2, 3, 5, 6)
    assert to_unit_images(channels_last).max() == 1.0
    assert to_unit_images(np.zeros((2, 5, 6), np.uint8)).shape == (2, 1, 5, 6)
    assert to_unit_images(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_unit_images(torch.rand(2, 3, 8, 8) * 255)
    with pytest.raises(ValueError, match="dtype"):
        to_unit_images(np.zeros((2, 3, 8, 8), np.int32))


def test_array_dataset_checks_labels():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ArrayImageDataset(np.zeros((3, 8, 8, 3), np.uint8), [0, 1])
    with pytest.raises(ValueError, match="integer"):
        ArrayImageDataset(np.zeros((2, 8, 8, 3), np.uint8), [0.5, 1.0])


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_clean_mnist_style_and_folder(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 1, 4]))
    dataset = open_clean_dataset(f"mnist:{tmp_path}")
    batch, labels = dataset.batch(np.arange(3))
    assert batch.shape == (3, 1, 28, 28) and labels.tolist() == [7, 1, 4]
    assert torch.equal(batch[1, 0], torch.from_numpy(images[1]).float() / 255)

    from torchvision.transforms import PILToTensor

    for name in ("b", "a"):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / name / "x.png")
    folder = open_clean_dataset(str(tmp_path / "images"), transform=PILToTensor())
    assert [label for _, label in folder] == [0, 1]
    with pytest.raises(ValueError, match="allowed"):
        open_clean_dataset("imagenet-c-typo")


def test_array_dataset_reads_rows_as_stored(tmp_path):
    folder = CifarCFolder(make_cifar_c(tmp_path))
    images, labels = folder.dataset("fog", 2).read(np.array([0, 3]))
    # uint8 channels-last as in the file (a quarter of the bytes of float images to move)
    assert images.dtype == torch.uint8 and images.shape == (2, 32, 32, 3)
    assert images[:, 0, 0, 0].tolist() == [20, 23] and labels.tolist() == [0, 3]
    assert torch.equal(to_unit_images(images), folder.dataset("fog", 2).batch(np.array([0, 3]))[0])
