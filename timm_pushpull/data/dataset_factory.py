"""One entry point for every dataset the recipes train on.

Names: ``cifar10``, ``cifar100`` (torchvision's python-pickle layout), ``mnist``, ``fashion_mnist``,
``kmnist`` (MNIST-format IDX files, ``.gz`` or not), ``hf:PATH_OR_ID`` (HF ``datasets``: a
``save_to_disk`` folder, a data folder or a cached Hub id with an ``img``/``image`` column),
``folder:PATH`` or ``folder`` with ``root`` (ImageFolder / ImageNet layout, ``PATH/train`` and
``PATH/val`` when present; read by :class:`.image_folder.ImageFolder`: no directory links, 16-bit
images scaled, unreadable files named), and
any timm dataset name (``torch/...``, ``hfds/...``, ``wds/...``) passed through to
``timm.data.create_dataset``. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import CIFAR10, CIFAR100

from ..errors import InvalidArgumentError, MissingFileError
from .cifar import Cifar10, Cifar100
from .hf_image import HfImageDataset
from .idx import FASHION_MNIST_CLASSES, FASHION_MNIST_SYSTEM_DIR, MNIST_CLASSES, IdxImageDataset
from .image_folder import ImageFolder

_IDX_DATASETS = {
    # name -> (torchvision's folder name for the same files, class names)
    "mnist": ("MNIST", MNIST_CLASSES),
    "fashion_mnist": ("FashionMNIST", FASHION_MNIST_CLASSES),
    "kmnist": ("KMNIST", tuple(str(i) for i in range(10))),
}
_CIFAR = {"cifar10": (Cifar10, CIFAR10), "cifar100": (Cifar100, CIFAR100)}
_TIMM_PREFIXES = ("torch/", "hfds/", "hfids/", "tfds/", "wds/")
DATASET_CHOICES = (
    "cifar10",
    "cifar100",
    *_IDX_DATASETS,
    "hf:PATH",
    "folder[:PATH]",
    "torch/... hfds/... (timm)",
)


def default_data_dir(name: str) -> Path | None:
    """Where ``name`` is found when no root is given (the Debian package for Fashion-MNIST)."""
    return FASHION_MNIST_SYSTEM_DIR if name == "fashion_mnist" else None


def _timm_dataset(name: str, root: str | None, split: str, transform, download: bool) -> Dataset:
    from timm.data import create_dataset as timm_create_dataset

    dataset = timm_create_dataset(name, root=root, split=split, download=download)
    dataset.transform = (
        transform  # timm's factory gives no transform; torchvision/timm datasets read this
    )
    return dataset


# the split folders timm's folder datasets look for when PATH/<split> does not exist
_SPLIT_SYNONYMS = {
    "train": ("train", "training"),
    "validation": ("val", "valid", "validation", "eval", "evaluation"),
}


def _split_folder(root: Path, split: str) -> Path:
    """``root/<split>``, else the first existing folder of the split's synonyms (``val`` for
    ``validation``, ...), else ``root`` itself: timm's ``_search_split`` rule."""
    if (root / split).exists():
        return root / split
    for synonyms in _SPLIT_SYNONYMS.values():
        if split in synonyms:
            return next((root / s for s in synonyms if (root / s).exists()), root)
    return root


def create_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable | None = None,
    download: bool = False,
) -> Dataset:
    """A map-style dataset of ``(transformed image, int label)`` for ``name`` (see module doc).

    An unknown name, a missing folder or file is a :class:`~timm_pushpull.errors.UserError`
    naming it, raised before anything is read.
    """
    root = None if root is None else str(root)
    if name in _IDX_DATASETS:
        folder_name, classes = _IDX_DATASETS[name]
        base = Path(root) if root is not None else default_data_dir(name)
        if base is None:
            raise InvalidArgumentError(
                f"dataset {name!r} needs data_dir: a folder with its four IDX files"
            )
        _check_folder(base, f"data_dir of dataset {name!r}")
        if (base / folder_name / "raw").is_dir():  # torchvision's download layout
            base = base / folder_name
        return IdxImageDataset(base, split, transform=transform, classes=classes)
    if name in ("cifar10", "cifar100"):
        if root is None:
            raise InvalidArgumentError(
                f"dataset {name!r} needs data_dir (the folder holding its python batches)"
            )
        reader, official = _CIFAR[name]
        if download:
            official(root, download=True)  # torchvision downloads and checks the md5s
        _check_folder(Path(root) / reader.base_folder, f"data_dir of dataset {name!r}")
        try:
            return reader(root, train=split in ("train", "training"), transform=transform)
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
            raise MissingFileError(f"dataset {name!r} in {root}: {error}") from None
    if name.startswith("hf:"):
        try:
            return HfImageDataset(name[3:], split, transform=transform)
        except FileNotFoundError as error:  # datasets: no such folder, files or cached Hub id
            raise MissingFileError(f"dataset {name!r}: {error}") from None
    if name == "folder" or name.startswith("folder:"):
        folder = name[7:] or root
        if not folder:
            raise InvalidArgumentError("dataset 'folder' needs data_dir (or name it folder:PATH)")
        _check_folder(Path(folder), f"image folder of dataset {name!r}")
        return ImageFolder(_split_folder(Path(folder), split), transform=transform)
    if name.startswith(_TIMM_PREFIXES):
        try:
            return _timm_dataset(name, root, split, transform, download)
        # timm's factory refuses an unknown name with an assert, torchvision's readers missing
        # files with RuntimeError (TypeError without a root): each is the user's dataset name
        except (AssertionError, RuntimeError, TypeError, FileNotFoundError) as error:
            raise InvalidArgumentError(f"dataset {name!r} (root {root}): {error}") from None
    hint = f" (an image folder is named folder:{name})" if "/" in name or "\\" in name else ""
    raise InvalidArgumentError(f"dataset={name!r}; allowed: {', '.join(DATASET_CHOICES)}{hint}")


def _check_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise MissingFileError(f"{what}: {folder} {state}")


def subset(dataset: Dataset, max_samples: int | None, seed: int = 0) -> Dataset:
    """A fixed random subset of ``max_samples`` items (all of them when None or larger)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    if max_samples <= 0:
        raise InvalidArgumentError(f"max_samples={max_samples}; must be positive (or None for all)")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:max_samples].tolist()))
