"""Frost textures for the ``frost`` corruption.

Hendrycks & Dietterich (ICLR 2019) blend each image with a random crop of one of the photos of
frost on glass shipped with their generation scripts (``ImageNet-C/create_c/`` of
https://github.com/hendrycks/robustness, Apache-2.0). Their ``frost()`` draws
``np.random.randint(5)``: only ``frost1.png`` ... ``frost5.jpg`` are used (``frost6.jpg`` never),
so only those five are read here.

The photos are used by default (``source="photos"``), looked up in this order:

1. the folder named by ``$TIMM_PUSHPULL_FROST_DIR`` (files ``frost1`` ... ``frost5`` with a
   ``.png``/``.jpg``/``.jpeg`` suffix; other photos there are allowed but are then not the
   reference ones);
2. the ``frost/`` folder of an installed ``imagecorruptions`` package, found through its
   installed-file metadata without importing it (it fails to import on current setuptools);
3. the download cache, ``$TIMM_PUSHPULL_CACHE/frost/<commit>/`` (default
   ``~/.cache/timm_pushpull``), filled on first use from :data:`FROST_URL`, pinned to a commit,
   each file checked against its SHA-256 in :data:`FROST_PHOTOS`.

``source="procedural"``, or no photo to be had (offline, a hash mismatch: a warning says so),
gives five textures *generated* here: fern-like ice crystals (needles with 60-degree side
branches, as in hexagonal ice) over a smooth haze, tinted icy blue, from fixed seeds. They are
weaker than the photos, so the ``frost`` column measured with them is not comparable with the
published CIFAR-10-C / ImageNet-C one; :func:`resolve_frost_source` says which source is used so
that results can record it.

Textures are "full-resolution photos": CIFAR-scale corruptions shrink them by 0.2 first, exactly as
``make_cifar_c.py`` does with ``cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)`` on the 8-bit image.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import math
import os
import urllib.request
import warnings
from pathlib import Path

import cv2
import numpy as np

from ... import native

__all__ = [
    "FROST_DIR_ENV",
    "FROST_PHOTOS",
    "FROST_SOURCES",
    "FROST_URL",
    "NUM_PROCEDURAL_TEXTURES",
    "FrostSource",
    "frost_textures",
    "imagecorruptions_frost_folder",
    "procedural_frost",
    "resolve_frost_source",
]

FROST_DIR_ENV = "TIMM_PUSHPULL_FROST_DIR"
FROST_SOURCES: tuple[str, ...] = ("photos", "procedural")
# The five photos the reference scripts draw from, and their SHA-256 (identical in the
# imagecorruptions wheel).
FROST_PHOTOS: dict[str, str] = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
}
FROST_COMMIT = "8190fe329f5f072a06e3a2aea02bb5dda69aed9f"
FROST_URL = (
    f"https://raw.githubusercontent.com/hendrycks/robustness/{FROST_COMMIT}/ImageNet-C/create_c/"
    "{name}"
)
NUM_PROCEDURAL_TEXTURES = 5
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_DOWNLOAD_TIMEOUT_S = 30
# Smallest full-resolution side generated, so that small images still get varied crops.
_MIN_PROCEDURAL_SIDE = 320


@dataclasses.dataclass(frozen=True)
class FrostSource:
    """Where the frost textures come from.

    ``kind``: ``"photos"`` or ``"procedural"``; ``files``: the five photos used, in draw order;
    ``origin``: ``"env"``, ``"imagecorruptions"``, ``"cache"`` or ``"procedural"``; ``reference``:
    the photos are byte for byte the reference ones, so the ``frost`` column is comparable with
    the published numbers.
    """

    kind: str
    origin: str
    files: tuple[str, ...] = ()
    reference: bool = False

    def to_json(self) -> dict:
        folder = str(Path(self.files[0]).parent) if self.files else None
        return {"kind": self.kind, "origin": self.origin, "folder": folder,
                "comparable": self.reference}  # fmt: skip


def resolve_frost_source(source: str = "photos") -> FrostSource:
    """The frost textures ``source`` (one of :data:`FROST_SOURCES`) resolves to, in the order of
    the module docstring; downloads the photos on first use. Warns when ``"photos"`` falls back
    to procedural textures."""
    if source not in FROST_SOURCES:
        raise ValueError(f"unknown frost {source!r}; expected one of: {', '.join(FROST_SOURCES)}")
    if source == "procedural":
        return FrostSource("procedural", "procedural")
    return _resolve_photos(os.environ.get(FROST_DIR_ENV) or None, str(_download_dir()))


def _download_dir() -> Path:
    # beside the C kernels' build cache, which honours $TIMM_PUSHPULL_CACHE and $XDG_CACHE_HOME
    return native.cache_dir().parent / "frost" / FROST_COMMIT


@functools.lru_cache(maxsize=8)
def _resolve_photos(env_folder: str | None, download_dir: str) -> FrostSource:
    if env_folder is not None:
        files = _folder_photos(Path(env_folder))
        return FrostSource("photos", "env", files, _is_reference(files))
    installed = imagecorruptions_frost_folder()
    if installed is not None:
        files = _folder_photos(installed)
        if _is_reference(files):
            return FrostSource("photos", "imagecorruptions", files, True)
    try:
        files = _download(Path(download_dir))
    except (OSError, ValueError) as error:  # urllib's URLError is an OSError
        warnings.warn(
            f"frost: the reference photos are not available ({error}); using procedural textures, "
            f"so the frost column is not comparable with published numbers (set {FROST_DIR_ENV} "
            "to a folder with frost1.png ... frost5.jpg)",
            stacklevel=3,
        )
        return FrostSource("procedural", "procedural")
    return FrostSource("photos", "cache", files, True)


def _folder_photos(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        raise ValueError(f"{FROST_DIR_ENV}={str(folder)!r} is not a folder")
    files, missing = [], []
    for name in FROST_PHOTOS:
        stem = Path(name).stem
        found = [folder / f"{stem}{suffix}" for suffix in _IMAGE_SUFFIXES]
        found = [path for path in found if path.is_file()]
        if found:
            files.append(str(found[0]))
        else:
            missing.append(stem)
    if missing:
        raise ValueError(
            f"frost folder {str(folder)!r} ({FROST_DIR_ENV}) lacks {', '.join(missing)} "
            f"(expected {', '.join(FROST_PHOTOS)})"
        )
    return tuple(files)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _is_reference(files: tuple[str, ...]) -> bool:
    return all(
        Path(path).name == name and _sha256(path) == digest
        for path, (name, digest) in zip(files, FROST_PHOTOS.items(), strict=True)
    )


def imagecorruptions_frost_folder() -> Path | None:
    """The ``frost/`` folder of an installed ``imagecorruptions``, found without importing it."""
    # importlib.util.find_spec would import the package's parents; the distribution's metadata
    # does not import anything.
    try:
        distribution = importlib.metadata.distribution("imagecorruptions")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(distribution.locate_file("imagecorruptions/frost"))
    return folder if folder.is_dir() else None


def _download(folder: Path) -> tuple[str, ...]:
    """The five photos in ``folder``, fetching the missing or damaged ones from
    :data:`FROST_URL`; raises ``ValueError`` on a hash mismatch (nothing is kept then)."""
    files = []
    for name, digest in FROST_PHOTOS.items():
        path = folder / name
        if not (path.is_file() and _sha256(path) == digest):
            url = FROST_URL.format(name=name)
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
            got = hashlib.sha256(data).hexdigest()
            if got != digest:
                raise ValueError(f"{url} has SHA-256 {got}, expected {digest}")
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a concurrent reader never sees half a photo
        files.append(str(path))
    return tuple(files)


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


def frost_textures(
    min_size: int, zoom: float, source: str | FrostSource = "photos"
) -> tuple[np.ndarray, ...]:
    """The frost textures of ``source`` (a :data:`FROST_SOURCES` name or a resolved
    :class:`FrostSource`) resized by ``zoom``, each at least ``min_size`` on both sides.

    Returns float32 RGB arrays in [0, 1], cached. Photos are resized as 8-bit images, as the
    reference scripts do.
    """
    if isinstance(source, str):
        source = resolve_frost_source(source)
    return _frost_textures(min_size, zoom, source)


@functools.lru_cache(maxsize=8)
def _frost_textures(min_size: int, zoom: float, source: FrostSource) -> tuple[np.ndarray, ...]:
    if source.kind == "photos":
        full = [_read_photo(path) for path in source.files]
    else:
        side = max(math.ceil(2 * min_size / zoom), _MIN_PROCEDURAL_SIDE)
        full = [procedural_frost(side, seed) for seed in range(NUM_PROCEDURAL_TEXTURES)]
    textures = []
    for texture in full:
        if zoom != 1.0:
            texture = cv2.resize(texture, (0, 0), fx=zoom, fy=zoom)
        if texture.dtype == np.uint8:
            texture = texture.astype(np.float32) / 255.0
        textures.append(_cover(texture, min_size))
    return tuple(textures)


def _read_photo(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read frost image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _cover(texture: np.ndarray, min_size: int) -> np.ndarray:
    """Upscale a texture smaller than ``min_size`` so a crop fits (as imagecorruptions does)."""
    short = min(texture.shape[:2])
    if short >= min_size:
        return texture
    factor = 1.1 * min_size / short
    size = (math.ceil(texture.shape[1] * factor), math.ceil(texture.shape[0] * factor))
    return cv2.resize(texture, size, interpolation=cv2.INTER_CUBIC)
