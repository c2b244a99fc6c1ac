"""Common image corruptions of ImageNet-C / CIFAR-10-C as batched, device-agnostic torch ops.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019 (https://arxiv.org/abs/1903.12261).

``corrupt(images, name, severity, scale, seed)`` applies one of the 15 benchmark corruptions or the
4 extra ones to a batch ``[B, C, H, W]`` of float images in [0, 1], RGB (C=3) or grey (C=1), of any
size, on the images' device. Two parameter sets, copied from the dataset generation scripts in
https://github.com/hendrycks/robustness (``ImageNet-C/create_c/``):

* ``scale="cifar"``: ``make_cifar_c.py`` (CIFAR-10-C, 32x32 images);
* ``scale="imagenet"``: ``make_imagenet_c.py`` (ImageNet-C, 224x224 images).

Lengths in those scripts are pixels and are used as such on any image size (a 64-px image with
``scale="cifar"`` gets the blur radii of a 32-px one); the plasma-fractal map of ``fog`` is at least
the scripts' 32 (CIFAR) or 256 (ImageNet) pixels.

Noise, blurs (gaussian, defocus, motion, zoom, glass), brightness, contrast, saturate, pixelate,
elastic, fog, snow and frost are torch ops on the whole batch. JPEG goes through Pillow per image,
as in the scripts; the water drops of ``spatter`` (severities 1-3) use OpenCV's Canny, distance
transform and histogram equalisation per image on the CPU. On the CPU, three hot spots run in small
C kernels where a C compiler is found (``timm_pushpull.native``, ``csrc/``): large random draws,
the shot-noise Poisson look-up and the frost blend. Eager torch ops cost a pass over memory each
and bound these corruptions on the CPU; the torch forms stay for GPUs and as the fallback. Each
is a ``torch.library`` op (``timm_pushpull::random_fill``, ``quantise_8bit``, ``poisson_8bit``,
``frost_blend``) with a fake implementation and a vmap rule, so ``torch.compile``,
``torch.export`` and ``torch.vmap`` keep it as one op.

Why not ``imagecorruptions``: version 1.1.2 fails to import without ``pkg_resources``, and on
current NumPy / scikit-image glass blur and gaussian blur raise (``multichannel``) and fog raises
(``np.float_``); it is also per-image NumPy. ImageMagick's motion blur (Wand, used by the original
scripts) is reimplemented here after its ``MotionBlurImage`` source.

Layout, by the paper's categories: :mod:`.params` (names, the severity table, argument checks),
:mod:`.noise`, :mod:`.blur`, :mod:`.weather` (+ :mod:`.frost`, the frost textures) and
:mod:`.digital` (the corruptions and their faithfulness notes), :mod:`.filters` (image filters the
-P sequences share) and :mod:`.random` (large random draws). Outputs are stored like the released data sets by default
(``output="released"``: truncated to 8 bits as CIFAR-10-C, then a quality-85 JPEG as ImageNet-C,
:func:`quantise_like_released`); ``output="float"`` skips that.

Randomness comes from one ``torch.Generator`` seeded with ``seed`` on the images' device: the same
seed on the same device gives identical outputs. Large CPU draws (over 2^18 values) come in fixed
chunks from generators seeded by it, filled on all threads, so the thread count does not change
them; they come from the C kernel of ``csrc/random.c`` where a C compiler is found and from torch
generators where not, so those two set-ups draw different (equally distributed) noise for a seed.
Draws depend on an image's position in the batch, so pass a different seed per batch (e.g.
``seed + batch_index``) when corrupting a data set.
"""

from __future__ import annotations

import torch

from . import blur, digital, noise, weather
from .digital import quantise_like_released
from .filters import PAD_MODES, clipped_zoom, filter2d, gaussian_blur2d, motion_blur2d, pad2d
from .frost import FROST_SOURCES
from .params import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    OUTPUTS,
    RELEASED_JPEG_QUALITY,
    SCALES,
    SEVERITY_PARAMS,
    SPATTER_MODES,
    CorruptionFn,
    check_choice,
    check_images,
    check_severity,
    on_images_device,
)
from .random import RANDOM_CHUNK
from .weather import (
    add_snow,
    adjust_value,
    liquid_layer,
    plasma_fractal,
    snow_layer,
    water_spatter,
)

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "OUTPUTS",
    "PAD_MODES",
    "RANDOM_CHUNK",
    "RELEASED_JPEG_QUALITY",
    "SCALES",
    "SEVERITY_PARAMS",
    "SPATTER_MODES",
    "add_snow",
    "adjust_value",
    "check_images",
    "clipped_zoom",
    "corrupt",
    "filter2d",
    "gaussian_blur2d",
    "liquid_layer",
    "motion_blur2d",
    "pad2d",
    "plasma_fractal",
    "quantise_like_released",
    "snow_layer",
    "water_spatter",
]

# name -> corruption
_CORRUPTION_FNS: dict[str, CorruptionFn] = {
    **noise.CORRUPTION_FNS,
    **blur.CORRUPTION_FNS,
    **weather.CORRUPTION_FNS,
    **digital.CORRUPTION_FNS,
}


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    scale: str = "cifar",
    seed: int = 0,
    *,
    frost: str = "photos",
    spatter: str = "wrap",
    output: str = "released",
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to ``images [B, C, H, W]`` in [0, 1].

    Args:
        images: float tensor, RGB or grey, any size and device.
        name: one of :data:`ALL_CORRUPTIONS`.
        severity: 1 (mildest) .. 5.
        scale: parameter set, ``"cifar"`` (CIFAR-10-C) or ``"imagenet"`` (ImageNet-C).
        seed: seeds the random draws; same seed and device -> same output.
        frost: frost textures, ``"photos"`` (the reference photos, see
            :mod:`~timm_pushpull.robustness.corruptions.frost`) or ``"procedural"``.
        spatter: ``"wrap"`` (the reference's 8-bit wrap of the water layer, as in the released
            data) or ``"clip"``; see :func:`water_spatter`.
        output: ``"released"`` stores the result like the released data set of ``scale``
            (:func:`quantise_like_released`), ``"float"`` returns it as computed.

    Returns:
        Corrupted images, same shape, dtype and device, in [0, 1] (computed in float32).
    """
    check_choice(name, "corruption", ALL_CORRUPTIONS)
    check_severity(severity)
    check_choice(scale, "scale", SCALES)
    check_choice(frost, "frost", FROST_SOURCES)
    check_choice(spatter, "spatter", SPATTER_MODES)
    check_choice(output, "output", OUTPUTS)
    check_images(images)
    if images.numel() == 0:
        return images.clone()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    params = SEVERITY_PARAMS[name][scale][severity - 1]
    options = {"frost": {"source": frost}, "spatter": {"overflow": spatter}}.get(name, {})
    x = images.float().contiguous()  # mixed memory formats (channels-last in) slow every op down
    with on_images_device(images):
        out = _CORRUPTION_FNS[name](x, params, generator, **options)
    if out.data_ptr() == x.data_ptr():  # an identity (saturate on grey): never clamp the input
        out = out.clone()
    out = out.clamp_(0, 1)
    if output == "released":
        out = quantise_like_released(out, scale)
    return out.to(images.dtype)
