"""Frost textures for the ``frost`` corruption.

Hendrycks & Dietterich (ICLR 2019) blend each image with a random crop of one of six photos of
frost on glass (``frost1.png`` ... ``frost6.jpg``, shipped with their generation scripts; the
scripts only ever draw from the first five). Those photos are not available here, so by default
this module *generates* five frost-like textures procedurally: fern-like ice crystals (needles
with 60-degree side branches, as in hexagonal ice) over a smooth haze, tinted icy blue. They are
built from fixed seeds, so they behave like fixed files: every run sees the same five textures.
Numbers measured with them are therefore *not* comparable to the official CIFAR-10-C/ImageNet-C
``frost`` column.

To use the original photos (or any other frost images), point the environment variable
``TIMM_PUSHPULL_FROST_DIR`` at a folder holding them; every ``*.png``/``*.jpg``/``*.jpeg`` file in
it is used, in sorted name order.

Textures are "full-resolution photos": CIFAR-scale corruptions shrink them by 0.2 first, exactly as
``make_cifar_c.py`` does with ``cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)``.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["FROST_DIR_ENV", "NUM_PROCEDURAL_TEXTURES", "frost_textures", "procedural_frost"]

FROST_DIR_ENV = "TIMM_PUSHPULL_FROST_DIR"
NUM_PROCEDURAL_TEXTURES = 5
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Smallest full-resolution side generated, so that small images still get varied crops.
_MIN_PROCEDURAL_SIDE = 320


def procedural_frost(size: int, seed: int) -> np.ndarray:
    """One ``size`` x ``size`` frost texture, float32 RGB in [0, 1], deterministic in ``seed``.

    Crystal sizes are in full-resolution (ImageNet) pixels: stems 5-35 % of 448 px long, 1-4 px
    thick, so that they survive the 0.2 shrink of CIFAR scale.
    """
    rng = np.random.default_rng(seed)
    haze = np.zeros((size, size), np.float32)
    for octave, cells in enumerate((3, 6, 12, 24)):
        grid = rng.random((cells, cells)).astype(np.float32)
        haze += cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) * 0.5**octave
    haze = (haze - haze.min()) / max(float(np.ptp(haze)), 1e-6)

    # Crystals are drawn on an 8-bit canvas because OpenCV anti-aliases lines only there.
    crystals = np.zeros((size, size), np.uint8)
    reference_side = 448.0
    num_stems = max(int(70 * (size / reference_side) ** 2), 4)
    for _ in range(num_stems):
        length = rng.uniform(0.05, 0.35) * reference_side
        _draw_crystal(crystals, rng, length, thickness=int(rng.integers(1, 5)))
    crystals = crystals.astype(np.float32) / 255.0
    glow = cv2.GaussianBlur(crystals, (0, 0), sigmaX=6.0)

    grey = np.clip(0.1 + 0.35 * haze + 0.6 * crystals + 1.2 * glow, 0.0, 1.0)
    tint = np.array([0.80, 0.90, 1.0], np.float32)  # icy blue-white
    return (grey[..., None] * tint).astype(np.float32)


def _draw_crystal(
    canvas: np.ndarray, rng: np.random.Generator, length: float, thickness: int
) -> None:
    size = canvas.shape[0]
    start = rng.uniform(0, size, 2)
    angle = rng.uniform(0, 2 * math.pi)
    brightness = rng.uniform(0.35, 1.0)
    _draw_needle(canvas, start, angle, length, brightness, thickness)
    direction = np.array([math.cos(angle), math.sin(angle)])
    num_branches = int(length // (6 + 2 * thickness))
    for k in range(1, num_branches):
        along = k / num_branches
        root = start + direction * length * along
        branch_length = length * 0.35 * (1.0 - along) * rng.uniform(0.5, 1.0)
        for side in (-1, 1):
            branch_angle = angle + side * math.pi / 3
            _draw_needle(
                canvas, root, branch_angle, branch_length, brightness * 0.8, max(thickness - 1, 1)
            )


def _draw_needle(
    canvas: np.ndarray,
    start: np.ndarray,
    angle: float,
    length: float,
    brightness: float,
    thickness: int,
) -> None:
    end = start + length * np.array([math.cos(angle), math.sin(angle)])
    cv2.line(
        canvas,
        (round(start[0]), round(start[1])),
        (round(end[0]), round(end[1])),
        color=round(255 * brightness),
        thickness=thickness,
        lineType=cv2.LINE_AA,
    )


def frost_textures(min_size: int, zoom: float) -> tuple[np.ndarray, ...]:
    """The frost textures resized by ``zoom``, each at least ``min_size`` on both sides.

    Returns float32 RGB arrays in [0, 1]. Read from ``$TIMM_PUSHPULL_FROST_DIR`` when set,
    otherwise the procedural ones (cached).
    """
    folder = os.environ.get(FROST_DIR_ENV)
    return _frost_textures(min_size, zoom, folder)


@functools.lru_cache(maxsize=8)
def _frost_textures(min_size: int, zoom: float, folder: str | None) -> tuple[np.ndarray, ...]:
    if folder:
        full = _load_folder(Path(folder))
    else:
        side = max(math.ceil(2 * min_size / zoom), _MIN_PROCEDURAL_SIDE)
        full = [procedural_frost(side, seed) for seed in range(NUM_PROCEDURAL_TEXTURES)]
    textures = []
    for texture in full:
        if zoom != 1.0:
            texture = cv2.resize(texture, (0, 0), fx=zoom, fy=zoom)
        textures.append(_cover(texture, min_size))
    return tuple(textures)


def _load_folder(folder: Path) -> list[np.ndarray]:
    if not folder.is_dir():
        raise ValueError(f"{FROST_DIR_ENV}={str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"{FROST_DIR_ENV}={str(folder)!r} holds no {'/'.join(_IMAGE_SUFFIXES)} images"
        )
    textures = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read frost image {path}")
        textures.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    return textures


def _cover(texture: np.ndarray, min_size: int) -> np.ndarray:
    """Upscale a texture smaller than ``min_size`` so a crop fits (as imagecorruptions does)."""
    short = min(texture.shape[:2])
    if short >= min_size:
        return texture
    factor = 1.1 * min_size / short
    size = (math.ceil(texture.shape[1] * factor), math.ceil(texture.shape[0] * factor))
    return cv2.resize(texture, size, interpolation=cv2.INTER_CUBIC)
