"""Fingerprints of the data a unit of ``evaluate`` reads: a results.json never mixes numbers of
different data.

Each finished unit records, beside its numbers, a SHA-256 per input it read (results.json
``inputs``, see :mod:`.results`); a rerun recomputes them for the units it keeps and refuses the
folder when one differs. What a fingerprint covers:

- a ``.npy`` file (official -C / -P arrays, their ``labels.npy``) or the frost photos of generated
  frost: their bytes, hashed once per process and file version (:func:`file_sha256`);
- images held in memory (:class:`.datasets.ArrayImageDataset`): their dtype, shape and values
  and the labels;
- an image or video folder (torchvision ``DatasetFolder``): the list of files with their class,
  size and modification time (:func:`listing_sha256`), since hashing every JPEG of ImageNet-C
  would cost more than evaluating it;
- a Hugging Face ``datasets`` split: the bytes of its Arrow files;
- any other dataset: every item, read once (images and labels).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .datasets import (
    ArrayImageDataset,
    CifarCFolder,
    CifarPFolder,
    ImageNetCFolder,
    ImageNetPFolder,
)
from .results import array_sha256

__all__ = ["dataset_sha256", "file_sha256", "files_sha256", "folder_inputs", "listing_sha256"]

_CHUNK = 1 << 24
# (path, device, inode, size, mtime, ctime) -> SHA-256: a file is hashed once per version; ctime
# changes with every write, even one that restores the modification time
_file_hashes: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, computed once per version of the file in this process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
           stat.st_ctime_ns)  # fmt: skip
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def files_sha256(paths: Iterable[str | Path]) -> str:
    """SHA-256 of several files' bytes, in order (:func:`file_sha256` of each)."""
    return hashlib.sha256(":".join(map(file_sha256, paths)).encode()).hexdigest()


def listing_sha256(samples: Iterable[tuple[str, int]], root: str | Path) -> str:
    """SHA-256 of a folder's files as ``(path, class)`` samples: each file's path relative to
    ``root``, class, size and modification time (in ns), in the samples' order."""
    digest = hashlib.sha256()
    for path, label in samples:
        stat = os.stat(path)
        relative = os.path.relpath(path, root)
        digest.update(f"{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def dataset_sha256(dataset: Dataset) -> str:
    """SHA-256 of what a dataset's items are made of (see the module docstring)."""
    if isinstance(dataset, ArrayImageDataset):
        return hashlib.sha256(
            f"{array_sha256(dataset.images)}:{array_sha256(dataset.labels)}".encode()
        ).hexdigest()
    if isinstance(dataset, Subset):
        inner = dataset_sha256(dataset.dataset)
        indices = array_sha256(np.asarray(dataset.indices))
        return hashlib.sha256(f"{inner}:{indices}".encode()).hexdigest()
    # timm's ImageDataset reads through a reader that holds what the others hold themselves
    for source in (dataset, getattr(dataset, "reader", None)):
        samples, root = getattr(source, "samples", None), getattr(source, "root", None)
        if samples is not None and root is not None:  # torchvision's DatasetFolder, timm's folders
            return listing_sha256(samples, root)
        split = getattr(source, "dataset", None)
        arrow_files = [entry["filename"] for entry in getattr(split, "cache_files", None) or ()]
        if arrow_files:  # a Hugging Face datasets split (HfImageDataset, timm's hfds/)
            return files_sha256(arrow_files)
    digest = hashlib.sha256()
    for index in range(len(dataset)):
        image, label = dataset[index]
        digest.update(array_sha256(torch.as_tensor(image)).encode())
        digest.update(f":{int(label)}\n".encode())
    return digest.hexdigest()


def folder_inputs(
    folder: CifarCFolder | ImageNetCFolder | CifarPFolder | ImageNetPFolder,
    name: str,
    severities: Iterable[int] = (),
) -> dict[str, str]:
    """{input: SHA-256} of what the unit ``name`` (a corruption at ``severities``, or a
    perturbation) reads from an official -C / -P folder."""
    if isinstance(folder, CifarCFolder):
        return {f"{name}.npy": file_sha256(folder.root / f"{name}.npy"),
                "labels.npy": file_sha256(folder.root / "labels.npy")}  # fmt: skip
    if isinstance(folder, CifarPFolder):
        return {f"{name}.npy": file_sha256(folder.root / f"{name}.npy")}
    if isinstance(folder, ImageNetCFolder):
        return {f"{name}/{s}": dataset_sha256(folder.dataset(name, s)) for s in severities}
    return {name: dataset_sha256(folder.dataset(name))}
