"""Readers for the official robustness benchmark files and for the clean test sets they derive from.

Layouts (Hendrycks & Dietterich, ICLR 2019, github.com/hendrycks/robustness):

- CIFAR-10-C / CIFAR-100-C: ``<corruption>.npy``, uint8 ``[5 * N, 32, 32, 3]`` (severities 1..5
  stacked, N = 10,000), and ``labels.npy`` with 5 * N (or N) class indices.
- ImageNet-C: ``<corruption>/<severity>/<wnid>/*.JPEG``.
- CIFAR-10-P: ``<perturbation>.npy``, uint8 ``[N, T, 32, 32, 3]`` (no labels: flip probabilities
  compare a model with itself).
- ImageNet-P: ``<perturbation>/<wnid>/*.mp4``, one video of 224 x 224 frames per validation image.
  The difficulty-2/3 noise folders of the release (``gaussian_noise_2`` ...) are not read.

The ``.npy`` files are memory-mapped, so a 150 MB corruption costs nothing until its images are read.
Every reader yields images as tensors ``[C, H, W]`` (uint8 or float in [0, 1]); :func:`to_unit_images`
turns a batch of them into float in [0, 1], the input range of the corruptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.image_folder import DatasetFolder, ImageFolder
from ..errors import InvalidArgumentError, MissingFileError, UserError
from .corruptions import ALL_CORRUPTIONS
from .perturbations import PERTURBATIONS

__all__ = [
    "ArrayImageDataset",
    "CifarCFolder",
    "CifarPFolder",
    "ImageNetCFolder",
    "ImageNetPFolder",
    "check_severity",
    "detect_dataset_kind",
    "open_clean_dataset",
    "open_datasets",
    "read_npy",
    "read_video",
    "to_unit_images",
]

NUM_SEVERITIES = 5


def check_severity(severity: int) -> int:
    """``severity`` as an int in 1..5, or a ValueError naming the allowed values."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise InvalidArgumentError(f"severity must be an int in 1..5, got {severity!r}")
    if not 1 <= severity <= NUM_SEVERITIES:
        raise InvalidArgumentError(f"severity must be in 1..5, got {severity}")
    return int(severity)


def _check_name(name: str, allowed: Sequence[str], what: str) -> str:
    if name not in allowed:
        raise InvalidArgumentError(f"unknown {what} {name!r}; allowed: {', '.join(allowed)}")
    return name


def read_npy(path: str | Path) -> np.ndarray:
    """Memory-map a ``.npy`` file, turning numpy's errors on truncated files into one clear message."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise InvalidArgumentError(
            f"{path} is not a complete .npy file ({error}); the download or copy was probably truncated"
        ) from error


def _check_uint8_images(array: np.ndarray, path: Path, ndim: int, layout: str) -> None:
    if array.dtype != np.uint8:
        raise InvalidArgumentError(
            f"{path}: images must be uint8 as in the official files, got {array.dtype}"
        )
    if array.ndim != ndim or array.shape[-1] not in (1, 3):
        raise InvalidArgumentError(f"{path}: expected shape {layout}, got {tuple(array.shape)}")


def to_unit_images(images: torch.Tensor | np.ndarray, name: str = "images") -> torch.Tensor:
    """A batch of images as float32 ``[..., C, H, W]`` in [0, 1].

    Accepts uint8 (0..255) or floating point images already in [0, 1], channels first
    ``[N, C, H, W]``, channels last ``[N, H, W, C]`` (C = 1 or 3, the layout of the official
    files) or grey ``[N, H, W]``; anything else (other dtypes, floats outside [0, 1]) is a
    ValueError, since silently rescaling would corrupt the benchmark.
    """
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = np.array(images)  # a memory-mapped file is read-only; torch wants writable memory
    tensor = torch.as_tensor(images)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(-3)
    if tensor.ndim < 4:
        raise InvalidArgumentError(
            f"{name} must be [N, C, H, W], [N, H, W, C] or [N, H, W]; got {tuple(tensor.shape)}"
        )
    if tensor.shape[-1] in (1, 3) and tensor.shape[-3] not in (1, 3):
        tensor = tensor.movedim(-1, -3)
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255)
    if not tensor.is_floating_point():
        raise InvalidArgumentError(
            f"{name} must be uint8 or float in [0, 1], got dtype {tensor.dtype}"
        )
    tensor = tensor.float()
    if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
        raise InvalidArgumentError(
            f"{name} must lie in [0, 1] (corruptions act on [0, 1] images; normalisation comes "
            f"after), got range [{tensor.min().item():.3g}, {tensor.max().item():.3g}]"
        )
    return tensor


class ArrayImageDataset(Dataset):
    """Images (``[N, ...]`` array or tensor, any layout :func:`to_unit_images` takes) with labels.

    Items are ``(image [C, H, W] or sequence [T, C, H, W], label)``; the label is -1 for unlabelled
    data (perturbation sequences). :meth:`batch` reads many items at once, which for a
    memory-mapped file is one contiguous read instead of one per image.
    """

    def __init__(self, images, labels=None):
        if len(images) == 0:
            raise InvalidArgumentError("no images")
        if labels is None:
            labels = np.full(len(images), -1, dtype=np.int64)
        # a copy: labels.npy is memory-mapped read-only
        labels = (
            labels.clone()
            if isinstance(labels, torch.Tensor)
            else torch.as_tensor(np.array(labels))
        ).reshape(-1)
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise InvalidArgumentError(
                f"labels must be integer class indices, got dtype {labels.dtype}"
            )
        if len(labels) != len(images):
            raise InvalidArgumentError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(images as stored, e.g. uint8 ``[N, H, W, C]``, labels) of many items: only those rows
        are read from a memory-mapped file. Converting after moving them to the device
        (:func:`to_unit_images`) moves 4x fewer bytes than float images."""
        if isinstance(self.images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(self.images[indices]))
        else:
            images = self.images[torch.as_tensor(indices)]
        return images, self.labels[torch.as_tensor(indices)]

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(images in [0, 1] ``[N, C, H, W]``, labels) of many items, see :meth:`read`."""
        images, labels = self.read(indices)
        return to_unit_images(images), labels

    def __getitem__(self, index: int):
        images, labels = self.batch(np.array([index]))
        return images[0], int(labels[0])


class CifarCFolder:
    """A CIFAR-10-C / CIFAR-100-C folder: ``<corruption>.npy`` + ``labels.npy``."""

    kind = "cifar-c"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "labels.npy").is_file():
            raise InvalidArgumentError(f"{self.root} is not a CIFAR-C folder: it has no labels.npy")
        self.corruptions = tuple(c for c in ALL_CORRUPTIONS if (self.root / f"{c}.npy").is_file())
        if not self.corruptions:
            raise InvalidArgumentError(
                f"{self.root} holds none of the corruptions {', '.join(ALL_CORRUPTIONS)}"
            )

    def arrays(self, corruption: str, severity: int) -> tuple[np.ndarray, np.ndarray]:
        """(memory-mapped images [N, H, W, C] uint8, labels [N]) of one corruption and severity."""
        _check_name(corruption, self.corruptions, f"corruption in {self.root}")
        severity = check_severity(severity)
        path = self.root / f"{corruption}.npy"
        images = read_npy(path)
        _check_uint8_images(images, path, 4, "[5 * N, H, W, C]")
        if len(images) % NUM_SEVERITIES:
            raise InvalidArgumentError(
                f"{path}: {len(images)} images do not split into 5 severities"
            )
        count = len(images) // NUM_SEVERITIES
        labels = read_npy(self.root / "labels.npy")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidArgumentError(f"{self.root / 'labels.npy'} must be a 1-d integer array, got "
                             f"{labels.dtype} {tuple(labels.shape)}")  # fmt: skip
        if len(labels) not in (len(images), count):
            raise InvalidArgumentError(
                f"{self.root / 'labels.npy'} has {len(labels)} labels but {path} has {len(images)} "
                f"images (5 severities x {count}); expected {len(images)} or {count} labels"
            )
        start = (severity - 1) * count
        labels = labels[start : start + count] if len(labels) == len(images) else labels
        return images[start : start + count], np.asarray(labels, dtype=np.int64)

    def dataset(self, corruption: str, severity: int) -> ArrayImageDataset:
        return ArrayImageDataset(*self.arrays(corruption, severity))


class CifarPFolder:
    """A CIFAR-10-P folder: ``<perturbation>.npy`` of uint8 sequences ``[N, T, H, W, C]``."""

    kind = "cifar-p"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.perturbations = tuple(p for p in PERTURBATIONS if (self.root / f"{p}.npy").is_file())
        if not self.perturbations:
            raise InvalidArgumentError(
                f"{self.root} holds none of the perturbations {', '.join(PERTURBATIONS)}"
            )

    def array(self, perturbation: str) -> np.ndarray:
        _check_name(perturbation, self.perturbations, f"perturbation in {self.root}")
        path = self.root / f"{perturbation}.npy"
        sequences = read_npy(path)
        _check_uint8_images(sequences, path, 5, "[N, T, H, W, C]")
        if sequences.shape[1] < 2:
            raise InvalidArgumentError(
                f"{path}: sequences need at least 2 frames, got {sequences.shape[1]}"
            )
        return sequences

    def dataset(self, perturbation: str) -> ArrayImageDataset:
        return ArrayImageDataset(self.array(perturbation))


class ImageNetCFolder:
    """An ImageNet-C folder: ``<corruption>/<severity>/<wnid>/*.JPEG``.

    Class indices follow the sorted wnids of each severity folder, as torchvision's ``ImageFolder``
    (and the ImageNet validation folder) number them; ``transform`` maps a PIL image to a tensor
    without normalising it. Read by :class:`~timm_pushpull.data.image_folder.ImageFolder` (no
    directory links below a severity folder, unreadable files named).
    """

    kind = "imagenet-c"

    def __init__(self, root: str | Path, transform=None):
        self.root = Path(root)
        self.transform = transform
        self.corruptions = tuple(c for c in ALL_CORRUPTIONS if (self.root / c).is_dir())
        if not self.corruptions:
            raise InvalidArgumentError(
                f"{self.root} has no <corruption>/<severity>/<wnid>/ folders"
            )

    def dataset(self, corruption: str, severity: int) -> Dataset:
        _check_name(corruption, self.corruptions, f"corruption in {self.root}")
        folder = self.root / corruption / str(check_severity(severity))
        if not folder.is_dir():
            raise InvalidArgumentError(
                f"{folder} does not exist (expected <corruption>/<severity>/<wnid>/*.JPEG)"
            )
        return ImageFolder(str(folder), transform=self.transform)


def read_video(path: str | Path) -> torch.Tensor:
    """All frames of a video as uint8 RGB ``[T, H, W, C]``.

    Decoded with OpenCV, as the reference evaluation (hendrycks/robustness
    ``ImageNet-P/video_loader.py``) does, so frames match those behind the published numbers;
    OpenCV is already a dependency, whereas scikit-video (the reference's first choice) is
    unmaintained and calls aliases numpy removed, and PyAV would add a package for one reader.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InvalidArgumentError(f"{path} cannot be opened as a video")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))  # OpenCV decodes to BGR
    finally:
        capture.release()
    if len(frames) < 2:
        raise InvalidArgumentError(
            f"{path}: a perturbation sequence needs at least 2 frames, decoded {len(frames)}"
        )
    return torch.from_numpy(np.stack(frames))


class ImageNetPFolder:
    """An ImageNet-P folder: ``<perturbation>/<wnid>/*.mp4``, one video per validation image.

    Items are ``(uint8 frames [T, H, W, C], label)``, decoded by :func:`read_video` when read, so
    a process decodes only its shard; labels index the sorted wnids, as torchvision's
    ``DatasetFolder`` (which the reference evaluation uses) numbers them.
    """

    kind = "imagenet-p"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.perturbations = tuple(p for p in PERTURBATIONS if (self.root / p).is_dir())
        if not self.perturbations:
            raise InvalidArgumentError(f"{self.root} has no <perturbation>/<wnid>/*.mp4 folders")

    def dataset(self, perturbation: str) -> Dataset:
        _check_name(perturbation, self.perturbations, f"perturbation in {self.root}")
        return DatasetFolder(str(self.root / perturbation), loader=read_video, extensions=(".mp4",))


def detect_dataset_kind(path: str | Path) -> str:
    """``"cifar-c"``, ``"cifar-p"``, ``"imagenet-c"``, ``"imagenet-p"`` or ``"image-folder"`` for a
    dataset folder."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidArgumentError(f"dataset folder {path} does not exist")
    if (path / "labels.npy").is_file():
        return "cifar-c"
    if any((path / f"{p}.npy").is_file() for p in PERTURBATIONS):
        return "cifar-p"
    if any((path / c / str(s)).is_dir() for c in ALL_CORRUPTIONS for s in range(1, 6)):
        return "imagenet-c"
    if any(next((path / p).glob("*/*.mp4"), None) for p in PERTURBATIONS if (path / p).is_dir()):
        return "imagenet-p"
    if any(child.is_dir() for child in path.iterdir()):
        return "image-folder"
    raise InvalidArgumentError(
        f"cannot tell what {path} holds: expected a CIFAR-C folder (<corruption>.npy + labels.npy), "
        "a CIFAR-10-P folder (<perturbation>.npy), an ImageNet-C folder "
        "(<corruption>/<severity>/<wnid>/), an ImageNet-P folder (<perturbation>/<wnid>/*.mp4) "
        "or an image folder (<class>/<image>)"
    )


def open_clean_dataset(spec: str, transform=None, native_transform=None) -> Dataset:
    """The clean test split named by ``spec``; items are ``(image tensor, label)``.

    ``spec`` is a dataset name of :func:`timm_pushpull.data.dataset_factory.create_dataset`, with
    its root after a colon where it needs one (``cifar10:ROOT``, ``fashion_mnist[:ROOT]``,
    ``hf:PATH``, ``folder:PATH``, ``torch/...``), or a plain image folder; ``@SPLIT`` at the end
    picks another split than ``test`` (``validation`` for folders). Images of the fixed-size
    datasets (CIFAR, MNIST family) go through ``native_transform`` (to a tensor, no resize), the
    others through ``transform``.
    """
    from ..data.dataset_factory import create_dataset

    spec, _, split = spec.partition("@")
    if Path(spec).is_dir():
        name, root = f"folder:{spec}", None
    elif spec.startswith(("hf:", "folder:", "torch/", "hfds/", "hfids/", "tfds/", "wds/")):
        name, root = spec, None
    else:
        name, _, root = spec.partition(":")
    split = split or ("validation" if name.startswith("folder:") else "test")
    fixed_size = name in ("cifar10", "cifar100", "mnist", "fashion_mnist", "kmnist")
    try:
        dataset = create_dataset(
            name, root or None, split=split, transform=native_transform if fixed_size else transform
        )
    except UserError:
        raise
    except (ValueError, OSError, RuntimeError) as error:  # the readers' own, often multi-line
        raise InvalidArgumentError(f"--dataset {spec}: {error}") from None
    if isinstance(getattr(dataset, "data", None), np.ndarray | torch.Tensor):
        # in-memory arrays (the IDX datasets): batched reads instead of one PIL image per item
        return ArrayImageDataset(dataset.data, dataset.targets)
    return dataset


def open_datasets(specs: Sequence[str], data_config: dict) -> dict:
    """{"clean" | "c" | "p": (source, description)} from the --dataset values."""
    from timm.data.transforms import MaybePILToTensor
    from timm.data.transforms_factory import transforms_imagenet_eval

    size = data_config["input_size"][1:]
    interpolation = data_config["interpolation"]
    # ImageNet-C images are already cropped to the evaluation size: no extra resize margin
    corrupted_transform = transforms_imagenet_eval(
        size, crop_pct=1.0, interpolation=interpolation, normalize=False
    )
    clean_transform = transforms_imagenet_eval(
        size, crop_pct=data_config["crop_pct"], crop_mode=data_config.get("crop_mode"),
        interpolation=interpolation, normalize=False,
    )  # fmt: skip
    opened = {}
    for spec in specs:
        kind = detect_dataset_kind(spec) if Path(spec).is_dir() else "clean"
        if kind == "cifar-c":
            role, source = "c", CifarCFolder(spec)
        elif kind == "imagenet-c":
            role, source = "c", ImageNetCFolder(spec, transform=corrupted_transform)
        elif kind == "cifar-p":
            role, source = "p", CifarPFolder(spec)
        elif kind == "imagenet-p":
            role, source = "p", ImageNetPFolder(spec)
        else:
            role, source = "clean", open_clean_dataset(spec, clean_transform, MaybePILToTensor())
        if role in opened:
            raise InvalidArgumentError(
                f"--dataset {spec!r} and {opened[role][1]!r} both give the {role!r} data; give one"
            )
        description = f"{kind}:{spec}" if kind != "clean" else spec
        if not isinstance(
            source, ArrayImageDataset | CifarCFolder | CifarPFolder | ImageNetPFolder
        ):
            # images resized and cropped on loading: how is part of what the numbers depend on
            crop_pct = 1.0 if kind == "imagenet-c" else data_config["crop_pct"]
            description += (f" (resized to {list(size)}, crop_pct {crop_pct}, "
                            f"crop_mode {data_config.get('crop_mode')}, {interpolation})")  # fmt: skip
        opened[role] = (source, description)
    return opened
