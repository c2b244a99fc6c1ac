"""CIFAR-10/100 from their python-pickle batches (``cifar-10-batches-py``, ``cifar-100-python``).

torchvision's readers accept only the official files, by md5; these accept any copy in the same
layout (a subset, a re-packed batch), as the data of the tests and of derived sets is. The batches
are unpickled, as torchvision does: read only CIFAR copies you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from torchvision.datasets import CIFAR10, CIFAR100


class _LayoutChecked:
    """Check that the batch files exist instead of comparing their md5 with the official ones."""

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not path.is_file():
            raise RuntimeError(f"CIFAR metadata file {path} not found")
        with path.open("rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class Cifar10(_LayoutChecked, CIFAR10):
    """torchvision's CIFAR-10 without the md5 check (root holds ``cifar-10-batches-py/``)."""


class Cifar100(_LayoutChecked, CIFAR100):
    """torchvision's CIFAR-100 without the md5 check (root holds ``cifar-100-python/``)."""
