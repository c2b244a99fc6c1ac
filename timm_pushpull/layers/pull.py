"""The pull kernel of a push-pull layer: derived from the push kernel, never learned on its own.

Strisciuglio, Lopez-Antequera, Petkov, "Enhanced robustness of convolutional networks with a
push-pull inhibition layer", Neural Computing and Applications 32 (2020).

The pull kernel is the push kernel resized by a factor ``h`` (bilinear, ``align_corners=True``)
and negated. The pull ``mode`` says which kernel is applied: ``exact`` (that one) or ``fast`` (an
approximation). How an exact pull is computed is chosen per call by :mod:`.exact_path` (a
stride-1 layer usually computes push and pull together, :mod:`.push_and_pull`); the pull's own
forms, all differentiable in the push weights:

* ``direct``: a convolution with the resized kernel, the paper's formulation.
* ``separable``: resizing is linear and separable, ``resize(k) = U k U^T``, so
  ``x * resize(k) = sum_ab k[:, :, a, b] * (x * u_a u_b^T)``: per-channel separable filtering
  followed by a 1x1 convolution with the push kernel's multiply-adds; built by a C kernel and mixed
  by one GEMM on float CPU tensors (:mod:`.exact_pull`, path ``c_separable``), else by PyTorch's
  grouped convolutions (path ``torch_separable``).
* ``dilated`` (fast mode, approximate, opt-in): linear interpolation at integer spacing ``d`` equals
  zero-insertion with spacing ``d`` followed by a tent filter of half-width ``d``. The pull is then
  a small depthwise tent blur plus the push kernel applied with dilation ``d``, about the cost of
  the push convolution itself. It differs from the exact kernel in two documented ways: the
  spacing is ``d = round((p - 1) / (s - 1))`` (exact when that is an integer, e.g. 3x3 with
  h = 1.5, 2, 3), and the tent keeps its full support, ``(s - 1) * d + 2d - 1`` taps wide, where
  the exact kernel is cropped to ``p`` taps. Where those coincide (``h == 1``, 1-wide kernels, push
  kernels whose outer ring is zero) the two are equal.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import exact_path
from .exact_pull import interpolation_matrix  # also registers the op

PULL_MODES = ("exact", "fast")  # which kernel
PULL_IMPLS = ("direct", "separable", "dilated")  # how it is computed
MAX_PULL_SCALE = 64.0  # the papers use 1-3; a larger h only builds enormous kernels


def pull_kernel_size(kernel_size: int, pull_scale: float) -> int:
    """Pull kernel size for one dimension: ``floor(s * h)``, plus 1 when even, so it has a centre.

    ``h == 1`` keeps ``s`` (also for even ``s``). ``h`` may be any float in
    ``(0, MAX_PULL_SCALE]``, e.g. 1.5 turns a 3-tap kernel into 5 taps; sizes below 1 are clamped
    to 1.
    """
    if not (isinstance(pull_scale, (int, float)) and 0 < pull_scale <= MAX_PULL_SCALE):
        raise ValueError(
            f"pull_scale (h) must be a finite number in (0, {MAX_PULL_SCALE:g}], got {pull_scale!r}"
        )
    if pull_scale == 1:
        return kernel_size
    size = max(1, math.floor(kernel_size * pull_scale))
    return size + 1 if size % 2 == 0 else size


def pull_weight(push_weight: Tensor, pull_size: tuple[int, int]) -> Tensor:
    """The exact pull kernel: the push kernel resized to ``pull_size`` and negated."""
    return -F.interpolate(push_weight, size=pull_size, mode="bilinear", align_corners=True)


def fast_pull_spacing(kernel_size: int, pull_size: int) -> int:
    """Zero-insertion spacing of the fast pull: ``round((p - 1) / (s - 1))``, at least 1."""
    if kernel_size == 1:
        return 1
    return max(1, round((pull_size - 1) / (kernel_size - 1)))


def fast_pull_taps(kernel_size: int, pull_size: int, dtype=None, device=None) -> Tensor:
    """1-D smoothing applied after zero-insertion: a tent of half-width d (peak 1).

    A 1-tap kernel has nothing to interpolate between: its resize is constant over ``p`` taps, so
    the smoothing is a box of ``p`` ones and the fast pull is exact.
    """
    if kernel_size == 1:
        return torch.ones(pull_size, dtype=dtype, device=device)
    spacing = fast_pull_spacing(kernel_size, pull_size)
    offsets = torch.arange(-(spacing - 1), spacing, dtype=dtype, device=device)
    return (spacing - offsets.abs()) / spacing


def fast_pull_extent(kernel_size: int, pull_size: int) -> int:
    """Taps of the kernel the fast pull applies (zero-inserted push kernel convolved with the tent)."""
    if kernel_size == 1:
        return pull_size
    spacing = fast_pull_spacing(kernel_size, pull_size)
    return (kernel_size - 1) * spacing + 2 * spacing - 1


def fast_pull_weight(push_weight: Tensor, pull_size: tuple[int, int]) -> Tensor:
    """The dense kernel that the fast pull applies (for inspection and tests; forward never builds it)."""
    out_channels, in_channels = push_weight.shape[:2]
    kernel = -push_weight
    for dim, (size, target) in enumerate(zip(push_weight.shape[-2:], pull_size)):
        spacing = fast_pull_spacing(size, target)
        taps = fast_pull_taps(size, target, push_weight.dtype, push_weight.device)
        axis = 2 + dim
        # zero-insert along this axis, then full 1-D convolution with the taps
        shape = list(kernel.shape)
        shape[axis] = (size - 1) * spacing + 1
        inserted = kernel.new_zeros(shape)
        inserted.index_copy_(
            axis, torch.arange(0, shape[axis], spacing, device=kernel.device), kernel
        )
        flat = inserted.movedim(axis, -1).reshape(-1, 1, shape[axis])
        smoothed = F.conv1d(flat, taps.flip(0).view(1, 1, -1), padding=taps.numel() - 1)
        moved = list(inserted.movedim(axis, -1).shape[:-1]) + [smoothed.shape[-1]]
        kernel = smoothed.reshape(moved).movedim(-1, axis)
    return kernel.reshape(out_channels, in_channels, *kernel.shape[-2:])


def negated_bias(bias: Tensor | None) -> Tensor | None:
    return None if bias is None else -bias


def add_channel_bias(x: Tensor, bias: Tensor | None) -> Tensor:
    return x if bias is None else x + bias.view(1, -1, 1, 1)


# Leaves of FX graphs: TorchScript types a conv's bias Optional (nn.Conv2d declares it so), and a
# traced graph that scripts must only hand it to functions whose signatures say so.
torch.fx.wrap("negated_bias")
torch.fx.wrap("add_channel_bias")


class Pull(nn.Module):
    """Pull branch of a push-pull layer: ``x * pull_kernel(push_weight) - push_bias`` (pre-activation).

    ``mode`` (:data:`PULL_MODES`) is which pull kernel, ``impl`` (:data:`PULL_IMPLS`) how PyTorch
    computes it where no C kernel runs, from the mode and the measured rule of
    :mod:`.exact_path`, which picks the form of each call.

    Holds no parameters: it receives the push weights at every call. Constant filters (interpolation
    taps, tent) are non-persistent buffers so they follow ``.to()``; in eval mode the tensors derived
    from the push weights are cached and rebuilt whenever those weights change in any way
    (optimizer step, ``load_state_dict``, ``.to()``, in-place edits, even through ``.data``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        pull_scale: float,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        mode: str = "exact",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        smoothing = torch.empty(0)
        self.spacing = dilation
        self.blur_input = True
        if mode not in PULL_MODES:
            raise ValueError(f"pull_mode must be one of {PULL_MODES}, got {mode!r}")
        self.pull_scale = float(pull_scale)
        self.kernel_size = tuple(kernel_size)
        self.pull_size = tuple(pull_kernel_size(k, pull_scale) for k in kernel_size)
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.mode = mode
        self.in_per_group, self.out_per_group = in_channels // groups, out_channels // groups
        if mode == "fast":
            self.impl = "dilated"
            extent = tuple(fast_pull_extent(k, p) for k, p in zip(kernel_size, self.pull_size))
            self.spacing = tuple(
                fast_pull_spacing(k, p) * d
                for k, p, d in zip(kernel_size, self.pull_size, dilation)
            )
            # Blur whichever side has fewer channels; the depthwise blur commutes with the channel
            # mixing, but only at full resolution, i.e. before a strided conv.
            self.blur_input = in_channels <= out_channels or max(stride) > 1
            blur_channels = in_channels if self.blur_input else out_channels
            taps_h, taps_w = (
                fast_pull_taps(k, p, dtype=torch.float32)
                for k, p in zip(kernel_size, self.pull_size)
            )
            taps = torch.outer(taps_h, taps_w).expand(blur_channels, 1, -1, -1).contiguous()
            smoothing = taps
        else:
            extent = self.pull_size
        self.preferred_paths = (
            exact_path.pull_preferred_paths(self) if mode == "exact" else ["fast"]
        )
        if mode == "exact":
            self.impl = "separable" if "torch_separable" in self.preferred_paths else "direct"
        # TorchScript compiles every branch, so the buffer exists (empty when unused).
        self.register_buffer(
            "smoothing", smoothing.to(device=device, dtype=dtype), persistent=False
        )
        # Same centre and output size as the push conv. An even push kernel has its centre between
        # taps while the pull kernel is odd: the odd pixel of padding goes bottom/right. A pull
        # smaller than the push kernel (h < 1) has negative padding: the input is cropped.
        before = [
            d * ((e - k) // 2) + p for e, k, p, d in zip(extent, kernel_size, padding, dilation)
        ]
        total = [d * (e - k) + 2 * p for e, k, p, d in zip(extent, kernel_size, padding, dilation)]
        self.asymmetric = any(2 * b != t or b < 0 for b, t in zip(before, total))
        self.input_pad = [before[1], total[1] - before[1], before[0], total[0] - before[0]]
        self.sides = [before[0], total[0] - before[0], before[1], total[1] - before[1]]
        self.padding = (0, 0) if self.asymmetric else (before[0], before[1])
        self._cache: tuple[str, Tensor, Tensor] | None = None

    def extra_repr(self) -> str:
        c_form = "c_separable" in self.preferred_paths
        impl = f"{self.impl}, separable C kernel on the CPU" if c_form else self.impl
        return f"pull_scale={self.pull_scale}, pull_size={self.pull_size}, mode={self.mode}, impl={impl}"

    def derived_weight(self, push_weight: Tensor, path: str) -> Tensor:
        """The tensor that ``path`` convolves with, computed from the push weights (no caching)."""
        if path == "direct":
            if self.pull_size == self.kernel_size:  # decided from the geometry, so FX can trace it
                return -push_weight
            return pull_weight(push_weight, self.pull_size)
        if path == "torch_separable":
            return -push_weight.reshape(push_weight.shape[0], -1, 1, 1)
        return -push_weight

    @torch.jit.unused
    def _weight(self, push_weight: Tensor, path: str) -> Tensor:
        tracing = torch.jit.is_tracing() or isinstance(push_weight, torch.fx.Proxy)
        if self.training or tracing or torch.compiler.is_compiling():
            self._cache = None
            return self.derived_weight(push_weight, path)
        if torch.is_grad_enabled() and push_weight.requires_grad:
            return self.derived_weight(push_weight, path)
        return self._cached_weight(push_weight, path)

    @torch.jit.unused
    def _cached_weight(self, push_weight: Tensor, path: str) -> Tensor:
        # torch.equal on the (small) weight catches every kind of change, including `.data` edits
        # that bypass the version counter; it costs microseconds next to the convolution.
        cache = self._cache
        if (
            cache is None
            or cache[0] != path
            or cache[1].device != push_weight.device
            or cache[1].dtype != push_weight.dtype
            or cache[1].shape != push_weight.shape
            or cache[1].is_inference() != torch.is_inference_mode_enabled()
            or not torch.equal(cache[1], push_weight)
        ):
            with torch.no_grad():
                derived = self.derived_weight(push_weight, path)
                cache = (path, push_weight.detach().clone(), derived)
            self._cache = cache
        return cache[2]

    @torch.jit.unused
    def path(self, x: Tensor, push_weight: Tensor) -> str:
        """The form of a call with ``x`` (:func:`.exact_path.pull_path`)."""
        return exact_path.pull_path(self, x, push_weight)

    @torch.jit.unused
    def _native(self, x: Tensor, push_weight: Tensor, bias: Tensor | None) -> Tensor:
        args = (self.pull_size, self.stride, self.sides, self.dilation)
        # through the op's packet, not its overload: an FX graph then names
        # torch.ops.timm_pushpull.exact_pull, which TorchScript resolves (`.default` it cannot)
        pull_op = torch.ops.timm_pushpull.exact_pull
        return pull_op(x, -push_weight, bias, *[list(a) for a in args], self.groups)

    def forward(
        self,
        x: Tensor,
        push_weight: Tensor,
        push_bias: Tensor | None = None,
        path: str | None = None,
    ) -> Tensor:
        """The pull's pre-activation by ``path`` (one of :data:`.exact_path.EXACT_PATHS` but
        ``"shared"``, or ``"fast"``), by default the one :mod:`.exact_path` picks."""
        bias = negated_bias(push_bias)
        if torch.jit.is_scripting():
            # TorchScript runs the paper's direct form (or the dilated one): plain convolutions
            path = "fast" if self.mode == "fast" else "direct"
            weight = pull_weight(push_weight, self.pull_size) if path == "direct" else -push_weight
        else:
            if path is None:
                path = self.path(x, push_weight)
            if path == "c_separable":
                return self._native(x, push_weight, bias)
            weight = self._weight(push_weight, path)
        if self.asymmetric:
            x = F.pad(x, self.input_pad)
        if path == "torch_separable":
            out = self._separable(x, weight, bias)
            if bool(torch.isfinite(out).all()):
                return out
            # its sums of maps turn infinities into NaN: the definition's result instead
            path, weight = "direct", pull_weight(push_weight, self.pull_size)
        if path == "direct":
            return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return self._dilated(x, weight, bias)

    def _separable(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        channels = x.shape[1]
        kh, kw = self.kernel_size
        vertical = interpolation_matrix(kh, self.pull_size[0], x.dtype, x.device)
        horizontal = interpolation_matrix(kw, self.pull_size[1], x.dtype, x.device)
        rows = F.conv2d(
            x,
            vertical.repeat(channels, 1).view(channels * kh, 1, -1, 1),
            stride=(self.stride[0], 1),
            padding=(self.padding[0], 0),
            dilation=(self.dilation[0], 1),
            groups=channels,
        )
        maps = F.conv2d(
            rows,
            horizontal.repeat(channels * kh, 1).view(channels * kh * kw, 1, 1, -1),
            stride=(1, self.stride[1]),
            padding=(0, self.padding[1]),
            dilation=(1, self.dilation[1]),
            groups=rows.shape[1],
        )
        return F.conv2d(maps, weight, bias, groups=self.groups)

    def _dilated(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # Valid (unpadded) linear filters commute, so all zero padding goes into the first op.
        if self.blur_input:
            x = F.conv2d(
                x, self.smoothing, padding=self.padding, dilation=self.dilation, groups=x.shape[1]
            )
            return F.conv2d(x, weight, bias, self.stride, 0, self.spacing, self.groups)
        x = F.conv2d(x, weight, None, self.stride, self.padding, self.spacing, self.groups)
        x = F.conv2d(x, self.smoothing, dilation=self.dilation, groups=x.shape[1])
        return add_channel_bias(x, bias)
