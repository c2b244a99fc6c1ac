"""MNIST-format (IDX) image datasets read straight from their ``.gz`` files.

MNIST, Fashion-MNIST and KMNIST ship as four IDX files (LeCun et al., 1998; Xiao et al., 2017).
torchvision's ``MNIST`` only reads them decompressed under ``ROOT/<ClassName>/raw``, which would
mean copying system data (e.g. Debian's ``/usr/share/datasets/fashion-mnist``) somewhere writable
first; this reader takes any folder holding the files, compressed or not.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InvalidArgumentError, MissingFileError

# The folder a system package installs Fashion-MNIST into (Debian/Ubuntu `dataset-fashion-mnist`).
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(digit) for digit in range(10))

_SPLIT_PREFIX = {"train": "train", "test": "t10k", "val": "t10k", "validation": "t10k"}
# IDX type codes (the third magic byte) -> numpy dtype, all stored big-endian
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array of its stored shape.

    A file that is not IDX, or shorter than its header says, is an
    :class:`~timm_pushpull.errors.InvalidArgumentError` naming it.
    """
    path = Path(path)
    try:
        data = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a cut gzip, EOFError
        raise InvalidArgumentError(f"{path} cannot be read as IDX data: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InvalidArgumentError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * math.prod(shape)
    if len(data) != expected:
        raise InvalidArgumentError(
            f"{path} holds {len(data)} bytes; its IDX header (shape {shape}, {dtype.name}) "
            f"needs {expected}: a cut or padded file"
        )
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim, count=math.prod(shape))
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx_file(root: Path, stem: str) -> Path:
    for candidate in (
        root / stem,
        root / f"{stem}.gz",
        root / "raw" / stem,
        root / "raw" / f"{stem}.gz",
    ):
        if candidate.is_file():
            return candidate
    raise MissingFileError(
        f"no {stem}[.gz] under {root} (nor {root / 'raw'}); expected the four MNIST-format IDX files"
    )


class IdxImageDataset(Dataset):
    """A split of an MNIST-format dataset held in memory as uint8 arrays (``data`` [N, H, W],
    ``targets`` [N]); items are ``(PIL 'L' image, label)``.

    Args:
        root: folder holding ``train-images-idx3-ubyte[.gz]`` etc. (or a ``raw/`` sub-folder of it).
        split: ``"train"`` or ``"test"`` (``"val"``/``"validation"`` read the test files).
        transform: applied to the PIL image.
        classes: class names, for reports.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        classes: tuple[str, ...] = MNIST_CLASSES,
    ):
        if split not in _SPLIT_PREFIX:
            raise InvalidArgumentError(f"split={split!r}; allowed: {sorted(_SPLIT_PREFIX)}")
        root = Path(root)
        prefix = _SPLIT_PREFIX[split]
        images = read_idx(_find_idx_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise InvalidArgumentError(
                f"{root}: images {images.shape} and labels {labels.shape} do not form an N x H x W split"
            )
        if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"{root}: MNIST-format images are unsigned bytes and labels integers, not "
                f"{images.dtype} and {labels.dtype}"
            )
        # numpy, not tensors: indexing a tensor per item costs more than the rest of the item
        self.data = images.astype(np.uint8)
        self.targets = labels.astype(np.int64)
        self.transform = transform
        self.classes = classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])  # uint8 H x W -> mode "L"
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
