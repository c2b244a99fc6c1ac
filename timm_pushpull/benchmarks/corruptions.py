"""Corruption speed benchmark: batched torch ``corrupt`` vs per-image NumPy references.

Every corruption of :data:`~timm_pushpull.robustness.corruptions.ALL_CORRUPTIONS` is timed against
the function of the same name in :mod:`.corruption_references` (Hendrycks' scripts, one image at a
time, the references the tests check ``corrupt`` against; they need the ``bench`` extra), fed the
random draws of NumPy's legacy ``RandomState`` samplers as the scripts take them, and
:func:`~.corruption_references.numpy_motion_blur` for ImageMagick's motion blur (the extra has no
Wand). Section ``corruptions`` of ``timm-pushpull bench``; the options below (other scale, image
count, a subset) run it on its own:

    python -m timm_pushpull.benchmarks.corruptions --scale imagenet --num-images 20 --repeats 1
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from .. import native
from ..robustness.corruptions import ALL_CORRUPTIONS, SEVERITY_PARAMS, corrupt
from ..robustness.corruptions.frost import frost_textures
from .timing import bench_extra

__all__ = ["format_table", "main", "reference", "run"]

# (image [H, W, 3] uint8, the package's parameters, NumPy's generator) -> corrupted image
Reference = Callable[[np.ndarray, Any, np.random.RandomState], np.ndarray]


@functools.cache
def _frost_photos(size: int, zoom: float) -> tuple[np.ndarray, ...]:
    """The frost textures on the scripts' 0..255 scale, made once (outside the timings)."""
    return tuple(texture * 255 for texture in frost_textures(size, zoom))


def _frost_draws(rng: np.random.RandomState, x: np.ndarray, c: Any) -> tuple:
    photos = _frost_photos(x.shape[0], c[2])
    photo = photos[rng.randint(len(photos))]
    return (
        photo,
        rng.randint(0, photo.shape[0] - x.shape[0]),
        rng.randint(0, photo.shape[1] - x.shape[1]),
    )


def _fog_draws(rng: np.random.RandomState, x: np.ndarray, c: Any) -> tuple:
    # the references need the bench extra: imported once reference() has checked it is there
    from .corruption_references import fog_mapsize

    mapsize, uniforms = fog_mapsize(x.shape[0]), []
    step = mapsize
    while step >= 2:
        uniforms += [rng.uniform(size=(mapsize // step, mapsize // step)) for _ in range(3)]
        step //= 2
    return (uniforms,)


def _glass_draws(rng: np.random.RandomState, x: np.ndarray, c: Any) -> tuple:
    positions = len(range(x.shape[0] - c[1], c[1], -1)) * len(range(x.shape[1] - c[1], c[1], -1))
    return (rng.randint(-c[1], c[1], size=(c[2] * positions, 2)).tolist(),)


# corruption -> f(rng, image, params): the random values its reference takes, drawn as the script
# draws them (corruptions without draws are left out)
_NUMPY_DRAWS: dict[str, Callable[[np.random.RandomState, np.ndarray, Any], tuple]] = {
    "gaussian_noise": lambda rng, x, c: (rng.normal(size=x.shape),),
    "shot_noise": lambda rng, x, c: (rng.poisson(x / 255.0 * c),),
    "impulse_noise": lambda rng, x, c: (rng.uniform(size=x.shape),),
    "speckle_noise": lambda rng, x, c: (rng.normal(size=x.shape),),
    "glass_blur": _glass_draws,
    "motion_blur": lambda rng, x, c: (rng.uniform(-45, 45),),
    "snow": lambda rng, x, c: (rng.normal(size=x.shape[:2]), rng.uniform(-135, -45)),
    "frost": _frost_draws,
    "fog": _fog_draws,
    "elastic_transform": lambda rng, x, c: (
        rng.uniform(-c[2], c[2], size=(3, 2)),
        rng.uniform(-1, 1, size=(2, *x.shape[:2])),
    ),
    "spatter": lambda rng, x, c: (rng.normal(size=x.shape[:2]),),
}
# the scripts' form of a parameter where the package keeps another: zoom_blur's factors
_SCRIPT_PARAMS = {"zoom_blur": lambda c: np.arange(*c)}
# the references that blur with ImageMagick, given the NumPy stand-in
_MOTION_BLURS = ("motion_blur", "snow")

# How each corruption runs in ``corrupt``, for the table.
_IMPLEMENTATION = dict.fromkeys(ALL_CORRUPTIONS, "torch, batched")
_IMPLEMENTATION["jpeg_compression"] = "Pillow per image"
_IMPLEMENTATION["spatter"] = "torch + OpenCV per image"

# Corruptions whose large CPU draws come from the C kernel of csrc/random.c where it builds
# (small ones stay with torch's generator).
_C_DRAWS = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "elastic_transform")


def _implementation(name: str, device: torch.device) -> str:
    if device.type != "cpu":
        return _IMPLEMENTATION[name]
    if name == "frost" and native.load("frost") is not None:
        return "C kernel, batched"
    if name not in _C_DRAWS or native.load("random") is None:
        return _IMPLEMENTATION[name]
    if name == "shot_noise" and native.load("shot_noise") is not None:
        return "C draws + C kernel, batched"
    return "C draws + torch, batched"


def _references() -> ModuleType:
    with bench_extra("corruption"):
        from . import corruption_references
    return corruption_references


def reference(name: str) -> Reference:
    """The NumPy reference of corruption ``name``: the function of that name in
    :mod:`.corruption_references`, fed NumPy's draws; a corruption without one is an error naming
    the file to edit."""
    if name not in ALL_CORRUPTIONS:
        raise ValueError(
            f"unknown corruption {name!r}; expected one of: {', '.join(ALL_CORRUPTIONS)}"
        )
    references = _references()
    # only a function defined there: an import such as skimage's `gaussian` is no reference
    function = getattr(references, name, None)
    if not callable(function) or getattr(function, "__module__", None) != references.__name__:
        raise NotImplementedError(
            f"corruption {name!r} has no NumPy reference to time it against: add "
            f"`def {name}(x, c, *draws)` to {references.__file__}"
        )
    draws = _NUMPY_DRAWS.get(name, lambda rng, x, c: ())
    script_params = _SCRIPT_PARAMS.get(name, lambda c: c)
    blur = {"blur": references.numpy_motion_blur} if name in _MOTION_BLURS else {}
    return lambda x, c, rng: function(x, script_params(c), *draws(rng, x, c), **blur)


def _time_torch(images: torch.Tensor, name: str, scale: str, seed: int) -> float:
    start = time.perf_counter()
    for severity in range(1, 6):
        corrupt(images, name, severity, scale=scale, seed=seed + severity, output="float")
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _time_reference(
    images: np.ndarray, reference: Reference, name: str, scale: str, seed: int
) -> float:
    rng = np.random.RandomState(seed)
    start = time.perf_counter()
    for severity in range(1, 6):
        params = SEVERITY_PARAMS[name][scale][severity - 1]
        for image in images:
            reference(image, params, rng)
    return time.perf_counter() - start


def run(
    num_images: int = 1000,
    *,
    image_size: int | None = None,
    scale: str = "cifar",
    names: Sequence[str] = ALL_CORRUPTIONS,
    device: str = "cpu",
    seed: int = 0,
    repeats: int = 3,
    verbose: bool = True,
) -> list[dict]:
    """Time all 5 severities of each corruption on ``num_images`` random RGB images, batched
    torch vs the per-image NumPy reference, and print a markdown table (``verbose``).

    ``image_size`` defaults to 32 (``scale="cifar"``) or 224. Returns one dict per corruption
    (``name``, ``implementation``, ``torch_s``, ``numpy_s``, ``speedup``).
    """
    unknown = [name for name in names if name not in ALL_CORRUPTIONS]
    if unknown:
        raise ValueError(
            f"unknown corruptions {unknown}; expected some of: {', '.join(ALL_CORRUPTIONS)}"
        )
    references = {name: reference(name) for name in names}
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    size = image_size or (32 if scale == "cifar" else 224)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
    # contiguous NCHW, as a DataLoader delivers batches
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().float().div(255).to(device)
    rows = []
    for name in names:
        # warm-up (frost textures, kernel caches, oneDNN primitives) outside the timings
        corrupt(images[:2], name, 1, scale=scale, output="float")
        _time_reference(pixels[:1], references[name], name, scale, seed)
        # interleaved rounds, median of each side: load on a shared machine hits both alike
        rounds = [
            (
                _time_torch(images, name, scale, seed),
                _time_reference(pixels, references[name], name, scale, seed),
            )
            for _ in range(repeats)
        ]
        torch_s = statistics.median(t for t, _ in rounds)
        numpy_s = statistics.median(n for _, n in rounds)
        row = {
            "name": name,
            "implementation": _implementation(name, images.device),
            "torch_s": torch_s,
            "numpy_s": numpy_s,
            "speedup": numpy_s / torch_s,
        }
        rows.append(row)
        if verbose:
            print(f"{name}: torch {torch_s:.3f} s, NumPy {numpy_s:.3f} s", flush=True)
    if verbose:
        print()
        print(format_table(rows, num_images=num_images, size=size, scale=scale, device=device))
    return rows


def format_table(rows: list[dict], *, num_images: int, size: int, scale: str, device: str) -> str:
    """Markdown table of ``run``'s rows with a total line."""
    lines = [
        f"{num_images} random {size}x{size} RGB images, severities 1-5, {scale} parameters, "
        f"torch on {device} ({torch.get_num_threads()} threads) vs per-image NumPy reference",
        "",
        "| corruption | implementation | torch (s) | NumPy per image (s) | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['implementation']} | {row['torch_s']:.3f} | "
            f"{row['numpy_s']:.3f} | {row['speedup']:.1f}x |"
        )
    torch_total = sum(row["torch_s"] for row in rows)
    numpy_total = sum(row["numpy_s"] for row in rows)
    lines.append(
        f"| **total** | | {torch_total:.3f} | {numpy_total:.3f} | "
        f"{numpy_total / torch_total:.1f}x |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument(
        "--image-size", type=int, default=None, help="default: 32 cifar, 224 imagenet"
    )
    parser.add_argument("--scale", choices=("cifar", "imagenet"), default="cifar")
    parser.add_argument("--corruptions", nargs="+", default=list(ALL_CORRUPTIONS), metavar="NAME")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds; the median is reported"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(
        args.num_images,
        image_size=args.image_size,
        scale=args.scale,
        names=args.corruptions,
        device=args.device,
        seed=args.seed,
        repeats=args.repeats,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
