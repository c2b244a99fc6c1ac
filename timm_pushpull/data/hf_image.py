"""Hugging Face ``datasets`` image classification splits as map-style torch datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import hub_unreachable, is_network_failure

IMAGE_COLUMNS = ("img", "image")  # uoft-cs/cifar10 uses "img", ylecun/mnist and most others "image"
LABEL_COLUMNS = ("label", "fine_label", "labels")  # cifar100 has fine_label/coarse_label


def _pick_column(
    names: list[str], candidates: tuple[str, ...], chosen: str | None, what: str
) -> str:
    if chosen is not None:
        if chosen not in names:
            raise ValueError(f"{what}_column={chosen!r} is not a column; columns are {names}")
        return chosen
    for candidate in candidates:
        if candidate in names:
            return candidate
    raise ValueError(
        f"no {what} column among {names}; expected one of {candidates} or set {what}_column"
    )


def load_hf_split(path: str, split: str):
    """One split of a dataset saved with ``save_to_disk`` or loadable with ``load_dataset``.

    ``datasets.load_dataset`` covers Hub ids (from the local cache when offline) and folders of
    data files; ``save_to_disk`` folders need ``load_from_disk`` instead. A Hub id neither cached
    nor reachable raises :class:`~timm_pushpull.errors.OfflineError` (one line).
    """
    import datasets  # deferred: importing `datasets` costs a second and most runs never need it

    local = Path(path)
    if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"split={split!r} is not in {path}; it has {list(loaded)}")
            return loaded[split]
        return loaded
    try:
        return datasets.load_dataset(path, split=split)
    except Exception as error:
        if not is_network_failure(error):
            raise
        where = "" if local.exists() else f"; {path} is not a local folder either"
        raise hub_unreachable(f"dataset {path}", f"hf:{path}", where.lstrip("; ")) from error


class HfImageDataset(Dataset):
    """Items ``(PIL image, int label)`` from an HF image classification split.

    Args:
        path: Hub id (cached) or local folder (``save_to_disk`` layout or data files).
        split: split name, e.g. ``"train"``/``"test"``.
        transform: applied to the PIL image.
        image_column / label_column: default to the first of ``IMAGE_COLUMNS`` / ``LABEL_COLUMNS`` present.
    """

    def __init__(
        self,
        path: str,
        split: str = "train",
        transform: Callable | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
    ):
        self.dataset = load_hf_split(path, split)
        names = list(self.dataset.column_names)
        self.image_column = _pick_column(names, IMAGE_COLUMNS, image_column, "image")
        self.label_column = _pick_column(names, LABEL_COLUMNS, label_column, "label")
        label_feature = self.dataset.features[self.label_column]
        self.classes = tuple(getattr(label_feature, "names", None) or ())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def targets(self) -> np.ndarray:
        """Every label, from the label column alone (no image is decoded)."""
        return np.asarray(self.dataset[self.label_column])

    def __getitem__(self, index: int):
        row = self.dataset[int(index)]
        image = row[self.image_column]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(row[self.label_column])
