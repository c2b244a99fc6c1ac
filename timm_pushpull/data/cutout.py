"""Cutout: one fixed-size square per image set to the dataset mean (DeVries & Taylor, 2017,
arXiv:1708.04552).

timm's ``RandomErasing`` erases a rectangle of random area and aspect ratio with a probability;
Cutout as used in the CIFAR/WRN experiments is a *fixed-size* square, always applied, whose centre
may fall anywhere in the image so that the square is clipped at the border. The reference zeroes
the normalised image; on the uint8 images of our pipeline (normalised per batch later) that is
the mean colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cutout(
    image: np.ndarray, size: int, fill: Sequence[int] = (0,), rng: np.random.Generator | None = None
) -> np.ndarray:
    """A copy of ``image`` ([C, H, W]) with a ``size`` x ``size`` square (clipped) set to ``fill``.

    The centre is uniform over the image, drawn from ``rng`` (default: NumPy's global RNG, which
    the training data seeds per sample).
    """
    if size <= 0:
        raise ValueError(f"size={size}; the Cutout square needs a side of at least 1 pixel")
    height, width = image.shape[-2:]
    draw = rng.integers if rng is not None else np.random.randint
    cy, cx = int(draw(height)), int(draw(width))
    top, bottom = max(cy - size // 2, 0), min(cy + size - size // 2, height)
    left, right = max(cx - size // 2, 0), min(cx + size - size // 2, width)
    image = image.copy()
    image[..., top:bottom, left:right] = np.asarray(fill, dtype=image.dtype).reshape(-1, 1, 1)
    return image


class Cutout:
    """Transform form of :func:`cutout` for uint8 CHW arrays; 16 px is the CIFAR-10 setting."""

    def __init__(self, size: int = 16, fill: Sequence[int] = (0,)):
        if size <= 0:
            raise ValueError(f"size={size}; the Cutout square needs a side of at least 1 pixel")
        self.size = size
        self.fill = tuple(fill)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return cutout(image, self.size, self.fill)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fill={self.fill})"
