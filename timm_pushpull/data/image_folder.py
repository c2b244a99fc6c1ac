"""Image and video folders (``<class>/<file>``), read so that no file can silently change the data.

torchvision's ``DatasetFolder`` walks class folders following directory links, so a link back
into the tree counts its images again (a loop multiplies them, under the wrong class) and a link
out of it reads whatever it points at; its loader converts 16-bit images with ``convert("RGB")``,
which clips every value above 255 to white. :class:`DatasetFolder` and :class:`ImageFolder` are
torchvision's classes with both fixed: a directory link below the root is refused, naming it
(the root itself may be a link), and :func:`load_image` scales 16-bit images to 8 bits. A file
that is not a readable image (truncated, or no image at all) is an error naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import folder as torchvision_folder

from ..errors import InvalidArgumentError, MissingFileError

__all__ = ["DatasetFolder", "ImageFolder", "load_image"]

# PIL's modes of 16-bit grey images (PNG, TIFF) and of 32-bit integer ones (older Pillow opens
# 16-bit PNGs as "I")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _refuse_link(path: str, root: str) -> None:
    raise InvalidArgumentError(
        f"{path} is a link to a directory ({os.path.realpath(path)}): image folders under {root} "
        "are read without following directory links, which can loop or count images twice; "
        "copy (or bind-mount) the images there instead"
    )


def load_image(path: str | Path) -> Image.Image:
    """An image file as an 8-bit RGB PIL image; 16-bit images are scaled (``v / 257``, so
    65535 -> 255), never clipped. A file PIL cannot decode is an error naming it."""
    try:
        image = Image.open(path)
        image.load()  # decodes now, and closes the file PIL opened
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidArgumentError(f"{path} is not a readable image: {error}") from None
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InvalidArgumentError(
                f"{path}: {image.mode} values in [{values.min()}, {values.max()}] are not a "
                "16-bit image; store 8- or 16-bit images"
            )
        image = Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")
    elif image.mode == "F":
        raise InvalidArgumentError(
            f"{path}: floating-point images are not read; store 8 or 16 bits"
        )
    return image.convert("RGB")


class DatasetFolder(torchvision_folder.DatasetFolder):
    """torchvision's ``DatasetFolder`` that refuses directory links below its root and says
    which folder holds no file, as a one-line error."""

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        for entry in os.scandir(directory):
            if entry.is_symlink() and entry.is_dir():
                _refuse_link(entry.path, str(directory))
        try:
            return super().find_classes(directory)
        except FileNotFoundError as error:
            raise MissingFileError(f"{directory}: {error}") from None

    @staticmethod
    def make_dataset(
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        for target_class in class_to_idx:
            for folder, subfolders, _ in os.walk(os.path.join(directory, target_class)):
                for name in subfolders:
                    if os.path.islink(os.path.join(folder, name)):
                        _refuse_link(os.path.join(folder, name), str(directory))
        # the walk above found no link, so torchvision's own walk (which follows links) is the
        # plain walk of the tree
        try:
            return torchvision_folder.make_dataset(
                directory, class_to_idx, extensions, is_valid_file, allow_empty
            )
        except FileNotFoundError as error:
            raise MissingFileError(f"{directory}: {error}") from None


class ImageFolder(DatasetFolder):
    """torchvision's ``ImageFolder`` read through :class:`DatasetFolder` and :func:`load_image`."""

    def __init__(self, root: str | Path, transform: Callable | None = None):
        super().__init__(
            str(root), load_image, torchvision_folder.IMG_EXTENSIONS, transform=transform
        )
        self.imgs = self.samples
