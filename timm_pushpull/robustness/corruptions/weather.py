"""Weather corruptions (snow, frost, fog, brightness, spatter) and the layers -P sequences reuse.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019; the operations of ``make_cifar_c.py`` / ``make_imagenet_c.py`` in
https://github.com/hendrycks/robustness, batched.

* Frost blends the scripts' photos frost1-frost5 by default (``source="photos"``) and generated
  textures only when asked or when no photo can be had; see :mod:`timm_pushpull.robustness.corruptions.frost`.
  The blend is the ``torch.library`` op ``timm_pushpull::frost_blend`` (:func:`frost_blend`: a
  fake implementation, its gradient and a vmap rule, so ``torch.compile``, ``torch.export``, FX
  and ``torch.func`` take one op); on the CPU it runs the C kernel of ``csrc/frost.c`` where a C
  compiler is found.
* Spatter turns the water layer into 8 bits with the scripts' wrap-around by default
  (``overflow="wrap"``, as in the released data; ``"clip"`` saturates); see :func:`water_spatter`.
  Its water drops (severities 1-3) use OpenCV's Canny, distance transform and histogram
  equalisation per image on the CPU.
* On grey images, colours (spatter, frost) become their luma and ``snow`` uses the image itself as
  its grey version.
"""

from __future__ import annotations

import ctypes
import functools

import cv2
import numpy as np
import torch

from .filters import clipped_zoom, gaussian_blur2d, motion_blur2d
from .frost import FrostSource, frost_textures, resolve_frost_source
from .params import GRID_TOLERANCE, SPATTER_MODES, CorruptionFn, check_choice
from .random import c_kernel, random_uniform, vmap_by_loop

__all__ = [
    "add_snow",
    "adjust_value",
    "frost_blend",
    "liquid_layer",
    "plasma_fractal",
    "snow_layer",
    "water_spatter",
]

# ITU-R BT.601 luma, as OpenCV's COLOR_RGB2GRAY used by the snow corruption.
_LUMA = (0.299, 0.587, 0.114)
_WATER_RGB = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise, as added to channels 0, 1, 2
_MUD_RGB = (63 / 255, 42 / 255, 20 / 255)
# ctypes signature of frost_blend in csrc/frost.c
_FROST_SIGNATURE = [ctypes.c_void_p] * 4 + [ctypes.c_long, ctypes.c_int, ctypes.c_int]
_FROST_SIGNATURE += [ctypes.c_long, ctypes.c_float, ctypes.c_float, ctypes.c_int]


def adjust_value(x: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """Add ``delta`` to the HSV value (clipped to [0, 1]) keeping hue and saturation; equals
    ``hsv2rgb`` of ``rgb2hsv`` with V shifted, since RGB scales with V at fixed H, S."""
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + delta).clamp(0.0, 1.0)
    scaled = x * (new_value / value.clamp_min(1e-12))
    return torch.where(value > 0, scaled, new_value.expand_as(x))


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _colour(rgb: tuple[float, float, float], channels: int, like: torch.Tensor) -> torch.Tensor:
    values = rgb if channels == 3 else (sum(w * c for w, c in zip(_LUMA, rgb, strict=True)),)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def plasma_fractal(
    batch: int, mapsize: int, decay: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Diamond-square height maps ``[B, mapsize, mapsize]`` in [0, 1] (the scripts' version of
    https://github.com/FLHerne/mapgen/blob/master/diamondsquare.py), batched."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    maps = torch.zeros(batch, mapsize, mapsize, device=device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=total.dtype, device=device)
        return total / 4 + wibble * (2 * noise - 1) * wibble

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        left = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        maps[:, 0::step, half::step] = wibbled_mean(left)
        top = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        maps[:, half::step, 0::step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    flat = maps.view(batch, -1)
    flat = flat - flat.amin(1, keepdim=True)
    return (flat / flat.amax(1, keepdim=True)).view_as(maps)


def snow_layer(
    x: torch.Tensor,
    loc: float,
    scale: float,
    zoom: float,
    threshold: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The scripts' snow flakes before motion blur: thresholded, zoomed noise, ``[B, 1, H, W]``,
    quantised to 8 bits like the PNG they go through."""
    batch, _, height, width = x.shape
    layer = loc + scale * torch.randn(
        batch, 1, height, width, generator=generator, device=x.device, dtype=x.dtype
    )
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    return torch.floor(layer.clamp(0, 1) * 255) / 255


def add_snow(x: torch.Tensor, flakes: torch.Tensor, mix: float) -> torch.Tensor:
    """Whiten the image towards ``1.5 * grey + 0.5`` by ``1 - mix`` and add the (motion-blurred)
    flakes and their 180-degree rotation."""
    # ImageMagick writes the blurred flakes as an 8-bit PNG, truncating (the tolerance absorbs
    # float error on exact levels)
    flakes = torch.floor(flakes * 255 + GRID_TOLERANCE) / 255
    whitened = torch.maximum(x, _luma(x) * 1.5 + 0.5)
    x = mix * x + (1 - mix) * whitened
    return (x + flakes + flakes.flip(-2, -1)).clamp(0, 1)


def liquid_layer(
    x: torch.Tensor,
    loc: float,
    scale: float,
    sigma: float,
    threshold: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Blurred Gaussian noise with values below ``threshold`` set to 0, ``[B, 1, H, W]``."""
    batch, _, height, width = x.shape
    layer = loc + scale * torch.randn(
        batch, 1, height, width, generator=generator, device=x.device, dtype=x.dtype
    )
    layer = gaussian_blur2d(layer, sigma)
    return torch.where(layer < threshold, torch.zeros_like(layer), layer)


_SPATTER_EDGE_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)


def _water_mask(liquid: np.ndarray, overflow: str) -> np.ndarray:
    # The scripts' (liquid * 255).astype(np.uint8) wraps values above 1 (the layer is >= 0).
    levels = np.floor(liquid * 255)
    levels = np.mod(levels, 256) if overflow == "wrap" else np.clip(levels, 0, 255)
    liquid = levels.astype(np.uint8)
    dist = 255 - cv2.Canny(liquid, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, _SPATTER_EDGE_KERNEL)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    mask = liquid * dist
    peak = mask.max()
    return mask / peak if peak > 0 else mask  # the scripts divide by 0 (NaN) on dry images


def water_spatter(
    x: torch.Tensor, liquid: torch.Tensor, strength: float, overflow: str = "wrap"
) -> torch.Tensor:
    """Add pale-turquoise water drops whose shading comes from the liquid layer's edges (OpenCV,
    per image on the CPU).

    The scripts turn the liquid layer into 8 bits with ``astype(np.uint8)``, which wraps values
    above 1 around (1.1 becomes 0.1): ``overflow="wrap"`` does the same, as in the released
    CIFAR-10-C (severity 3 has such values) and CIFAR-10-P; ``"clip"`` saturates them at 1
    instead, the evident intent.
    """
    check_choice(overflow, "spatter overflow", SPATTER_MODES)
    liquid_np = liquid[:, 0].detach().double().cpu().numpy()
    masks = np.stack([_water_mask(layer, overflow) for layer in liquid_np])
    mask = torch.from_numpy(masks).to(device=x.device, dtype=x.dtype).unsqueeze(1)
    return (x + strength * mask * _colour(_WATER_RGB, x.shape[1], x)).clamp(0, 1)


def _snow(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    loc, scale, zoom, threshold, radius, sigma, mix = params
    flakes = snow_layer(x, loc, scale, zoom, threshold, g)
    angles = random_uniform((x.shape[0],), -135, -45, x, g)
    return add_snow(x, motion_blur2d(flakes, radius, sigma, angles), mix)


@functools.lru_cache(maxsize=8)
def _frost_stack(
    min_size: int, zoom: float, source: FrostSource
) -> tuple[torch.Tensor, torch.Tensor]:
    textures = frost_textures(min_size, zoom, source)
    shapes = torch.tensor([texture.shape[:2] for texture in textures])
    stack = torch.zeros(len(textures), *shapes.amax(0).tolist(), 3)
    for index, texture in enumerate(textures):
        stack[index, : texture.shape[0], : texture.shape[1]] = torch.from_numpy(texture)
    return stack, shapes


def _crop_pixels(origin: torch.Tensor, height: int, width: int, texture_width: int) -> torch.Tensor:
    """``[B, H, W]``: the row of the ``[N * H_max * W_max, 3]`` texture table each crop pixel reads
    (index_select of rows beats 3-index gathering)."""
    rows = torch.arange(height, device=origin.device) * texture_width
    cols = torch.arange(width, device=origin.device)
    return origin.view(-1, 1, 1) + rows.view(1, -1, 1) + cols.view(1, 1, -1)


@torch.library.custom_op("timm_pushpull::frost_blend", mutates_args=())
def frost_blend(
    x: torch.Tensor,
    textures: torch.Tensor,
    origin: torch.Tensor,
    frost_ratio: float,
    image_weight: float,
) -> torch.Tensor:
    """``(x + frost_ratio * crop) * image_weight`` for images ``x [B, C, H, W]`` (C = 3, or 1 for
    the crop's luma), where image b's crop is the ``H x W`` window of ``textures [N, H_max, W_max,
    3]`` whose top-left pixel is row ``origin[b]`` of ``textures`` viewed as ``[N * H_max * W_max,
    3]``.

    By the C kernel of ``csrc/frost.c`` for float32 RGB on the CPU where a compiler is found (one
    pass), else by torch ops (which may round the last bit differently). Linear in ``x`` and
    ``textures``: both have gradients.
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3) or textures.dim() != 4 or textures.shape[3] != 3:
        raise ValueError(
            f"frost_blend: x must be [B, 1 or 3, H, W] and textures [N, H_max, W_max, 3], got "
            f"{list(x.shape)} and {list(textures.shape)}"
        )
    batch, channels, height, width = x.shape
    # the C kernel reads the crops without bounds checks: each must lie inside the textures
    last = (height - 1) * textures.shape[2] + width - 1  # a crop's last pixel, from its corner
    table_rows = textures.numel() // 3
    if origin.shape != (batch,) or (
        x.numel() and not (origin.min() >= 0 and origin.max() + last < table_rows)
    ):
        raise ValueError(
            f"frost_blend: origin must hold {batch} crop corners whose {height}x{width} crops lie "
            f"inside the textures {list(textures.shape)}, got {origin.tolist()}"
        )
    kernel = c_kernel("frost", "frost_blend", _FROST_SIGNATURE, x, textures, origin)
    float32 = x.dtype == textures.dtype == torch.float32
    if kernel is not None and channels == 3 and float32 and origin.dtype == torch.int64:
        out = torch.empty_like(x)
        kernel(
            x, textures, origin, out, batch, height, width, textures.shape[2], frost_ratio,
            image_weight,
        )  # fmt: skip
        return out
    pixel = _crop_pixels(origin, height, width, textures.shape[2])
    frost = textures.reshape(-1, 3).index_select(0, pixel.flatten())
    frost = frost.view(batch, height, width, 3).permute(0, 3, 1, 2)
    if channels == 1:
        frost = _luma(frost)
    out = torch.add(x, frost, alpha=frost_ratio)  # one pass over the crops
    return out if image_weight == 1 else out.mul_(image_weight)


@frost_blend.register_fake
def _(x, textures, origin, frost_ratio, image_weight):
    return torch.empty_like(x)


def _setup_frost_blend(ctx, inputs, output) -> None:
    x, textures, origin, ctx.frost_ratio, ctx.image_weight = inputs
    ctx.save_for_backward(origin)
    ctx.x_shape, ctx.textures_shape = x.shape, textures.shape


def _frost_blend_backward(ctx, grad: torch.Tensor):
    (origin,) = ctx.saved_tensors
    grad_x = grad * ctx.image_weight if ctx.needs_input_grad[0] else None
    grad_textures = None
    if ctx.needs_input_grad[1]:
        _, channels, height, width = ctx.x_shape
        scaled = grad * (ctx.frost_ratio * ctx.image_weight)
        if channels == 1:  # the crop's luma: spread over R, G, B by the luma weights
            luma = torch.tensor(_LUMA, dtype=grad.dtype, device=grad.device)
            scaled = scaled * luma.view(3, 1, 1)
        pixel = _crop_pixels(origin, height, width, ctx.textures_shape[2])
        grad_textures = grad.new_zeros(ctx.textures_shape)
        grad_textures.view(-1, 3).index_add_(
            0, pixel.flatten(), scaled.permute(0, 2, 3, 1).reshape(-1, 3)
        )
    return grad_x, grad_textures, None, None, None


frost_blend.register_autograd(_frost_blend_backward, setup_context=_setup_frost_blend)
frost_blend.register_vmap(vmap_by_loop(frost_blend))


def _frost(
    x: torch.Tensor, params: tuple, g: torch.Generator, source: str = "photos"
) -> torch.Tensor:
    image_weight, frost_weight, zoom = params
    batch, channels, height, width = x.shape
    stack, shapes = _frost_stack(max(height, width), zoom, resolve_frost_source(source))
    stack, shapes = stack.to(x.device, x.dtype), shapes.to(x.device)
    choice = torch.randint(len(stack), (batch,), generator=g, device=x.device)
    # like np.random.randint(0, side - size): a start strictly below the free room
    room = (shapes[choice] - torch.tensor([height, width], device=x.device)).clamp_min(1)
    start = (torch.rand(batch, 2, generator=g, device=x.device) * room).long()
    _, stack_h, stack_w, _ = stack.shape
    origin = (choice * stack_h + start[:, 0]) * stack_w + start[:, 1]  # crop corners' rows
    return frost_blend(x, stack, origin, frost_weight / image_weight, image_weight)


def _fog(x: torch.Tensor, params: tuple, g: torch.Generator) -> torch.Tensor:
    strength, decay, base_mapsize = params
    batch, _, height, width = x.shape
    mapsize = max(base_mapsize, 1 << (max(height, width) - 1).bit_length())
    fog = plasma_fractal(batch, mapsize, decay, g, x.device)[:, None, :height, :width]
    max_value = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * fog.to(x.dtype)) * max_value / (max_value + strength)


def _brightness(x: torch.Tensor, delta: float, g: torch.Generator) -> torch.Tensor:
    return adjust_value(x, delta)


def _spatter(
    x: torch.Tensor, params: tuple, g: torch.Generator, overflow: str = "wrap"
) -> torch.Tensor:
    loc, scale, sigma, threshold, strength, mud = params
    liquid = liquid_layer(x, loc, scale, sigma, threshold, g)
    if not mud:
        return water_spatter(x, liquid, strength, overflow)
    mask = gaussian_blur2d((liquid > threshold).to(x.dtype), strength)  # strength = blur sigma
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return x * (1 - mask) + _colour(_MUD_RGB, x.shape[1], x) * mask


CORRUPTION_FNS: dict[str, CorruptionFn] = {
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "spatter": _spatter,
}
