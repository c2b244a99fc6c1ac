"""Anti-aliased downsampling: low-pass filter, then subsample.

Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019.

Filters of 1-7 taps: ``binomial`` (Zhang's default), ``rect`` (box) and ``tri`` (triangle). Even
sizes are padded asymmetrically (floor left, ceil right, like the reference implementation), so a
32x32 input with stride 2 gives 16x16 (timm's ``BlurPool2d`` gives 17x17 there).

Why not timm's or kornia's blur pool: timm's has no even-size asymmetric padding and asserts
sizes > 1, kornia's only pads with zeros, and both are a depthwise convolution over a padded copy,
which is slow on the CPU. Implementations, picked per call:

- float32 on the CPU: a C kernel (``timm_pushpull/csrc/blur_pool.c``, built on first use by
  ``timm_pushpull.native``) that filters and subsamples in one pass without a padded copy, faster
  than the fastest of timm/kornia in eager mode; its backward is the PyTorch form's. It is the
  ``torch.library`` op ``timm_pushpull::blur_pool2d`` (fake implementation, autograd through a
  transposed op, vmap rule), so ``torch.compile``, ``torch.export`` and ``torch.func`` keep it as
  one op (it was faster than inductor's fused loop below).
- under ``torch.compile`` elsewhere: sums of strided slices of the padded input, which inductor
  fuses into one loop (faster than kornia on the CPU); in eager mode it costs one pass per tap.
- otherwise (other dtypes, GPU, no C compiler): a depthwise convolution over the padded input, or on
  small maps (<= 32 px) two banded matrix products ``A x B^T`` with the padding folded into A and
  B, which skips the padded copy; on larger maps the dense matrices cost more than they save.
- in TorchScript and in graphs recorded for ONNX or by ``torch.jit.trace`` (:mod:`.portable`): the
  depthwise convolution at every size, standard operators that hold no constant of the traced
  input's size (the matrices would).

The measurements: BENCHMARKS.md, "Blur-pool" (the table and its notes).
"""

from __future__ import annotations

import ctypes
import functools
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import forward_ad

from .. import native
from .portable import portable_graph

FILTER_TYPES = ("binomial", "rect", "tri")
PAD_MODES = ("reflect", "replicate", "zero", "circular")
_FILTER_ALIASES = {"bin": "binomial", "binomial": "binomial", "rect": "rect", "tri": "tri"}
MAX_FILTER_SIZE = 7
MATRIX_MAX_SIZE = 32  # largest map side blurred by matrix products (see module docstring)
# ctypes signature of blur_pool_float in csrc/blur_pool.c
_KERNEL_SIGNATURE = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long] + [ctypes.c_int] * 4
_KERNEL_SIGNATURE += [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_KERNEL_SIGNATURE += [ctypes.c_void_p, ctypes.c_int]


def blur_taps(filter_type: str = "binomial", filter_size: int = 3) -> tuple[float, ...]:
    """Normalised 1-D filter taps."""
    filter_type = _FILTER_ALIASES.get(filter_type, filter_type)
    if filter_type not in FILTER_TYPES:
        raise ValueError(
            f"filter_type must be one of {FILTER_TYPES} (or 'bin'), got {filter_type!r}"
        )
    if not isinstance(filter_size, int) or not 1 <= filter_size <= MAX_FILTER_SIZE:
        raise ValueError(f"filter_size must be an int in 1..{MAX_FILTER_SIZE}, got {filter_size!r}")
    if filter_type == "binomial":
        taps = [math.comb(filter_size - 1, k) for k in range(filter_size)]
    elif filter_type == "rect":
        taps = [1] * filter_size
    else:
        taps = [min(k + 1, filter_size - k) for k in range(filter_size)]
    total = sum(taps)
    return tuple(t / total for t in taps)


@functools.lru_cache(maxsize=128)
def blur_matrix(
    size: int,
    taps: tuple[float, ...],
    stride: int,
    pad_mode: str,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """``[out, size]`` matrix that pads, filters and subsamples a signal of ``size`` samples."""
    left = (len(taps) - 1) // 2
    right = len(taps) - 1 - left
    # built on the CPU whatever torch.set_default_device says (cached, then moved), one impulse
    # per input sample
    basis = torch.eye(size, dtype=torch.float64, device="cpu").unsqueeze(1)
    mode = "constant" if pad_mode == "zero" else pad_mode
    padded = F.pad(basis, (left, right), mode=mode)
    filtered = F.conv1d(
        padded, torch.tensor(taps, dtype=torch.float64, device="cpu").view(1, 1, -1), stride=stride
    )
    return filtered[:, 0, :].T.contiguous().to(dtype=dtype, device=device)


def _check_padding(size: int, num_taps: int, pad_mode: str) -> None:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    widest = num_taps - 1 - (num_taps - 1) // 2
    # F.pad's limits: reflect needs more samples than the padding, circular at least as many
    needed = {"reflect": widest + 1, "circular": widest}.get(pad_mode, 0)
    if size < needed:
        raise ValueError(
            f"{pad_mode} padding of {widest} needs maps of at least {needed} px, got {size}"
        )


def _blur_pool_conv(x: Tensor, taps: list[float], stride: int, pad_mode: str) -> Tensor:
    """A depthwise convolution over the padded input: standard operators only, so also the form of
    TorchScript and ONNX graphs."""
    left = (len(taps) - 1) // 2
    right = len(taps) - 1 - left
    # A plain int even in a trace, where a traced channel count would give the kernel a shape
    # unknown to the TorchScript-based ONNX exporter (the channels of a model never vary)
    channels = int(x.shape[1])
    taps_1d = torch.tensor(taps, dtype=x.dtype, device=x.device)
    kernel = torch.outer(taps_1d, taps_1d).expand(channels, 1, -1, -1)
    if pad_mode == "zero" and left == right:
        return F.conv2d(x, kernel, stride=stride, padding=left, groups=channels)
    mode = "constant" if pad_mode == "zero" else pad_mode
    padded = F.pad(x, [left, right, left, right], mode=mode)
    return F.conv2d(padded, kernel, stride=stride, groups=channels)


def _blur_pool_strided(x: Tensor, taps: tuple[float, ...], stride: int, pad_mode: str) -> Tensor:
    """The same result as sums of strided slices, a form inductor fuses into one loop."""
    size = len(taps)
    left = (size - 1) // 2
    right = size - 1 - left
    mode = "constant" if pad_mode == "zero" else pad_mode
    padded = F.pad(x, (left, right, left, right), mode=mode)
    span_h = stride * ((padded.shape[-2] - size) // stride) + 1
    span_w = stride * ((padded.shape[-1] - size) // stride) + 1
    rows = sum(tap * padded[..., k : k + span_w : stride] for k, tap in enumerate(taps))
    return sum(tap * rows[..., k : k + span_h : stride, :] for k, tap in enumerate(taps))


def _blur_pool_torch(x: Tensor, taps: tuple[float, ...], stride: int, pad_mode: str) -> Tensor:
    n, c, h, w = x.shape
    if max(h, w) > MATRIX_MAX_SIZE:
        return _blur_pool_conv(x, list(taps), stride, pad_mode)
    rows = blur_matrix(h, taps, stride, pad_mode, x.dtype, x.device)
    cols = blur_matrix(w, taps, stride, pad_mode, x.dtype, x.device)
    y = x.reshape(n * c * h, w) @ cols.T
    y = torch.matmul(rows, y.view(n * c, h, -1))
    return y.view(n, c, rows.shape[0], cols.shape[0])


@functools.lru_cache(maxsize=256)
def _source_index(size: int, num_taps: int, stride: int, pad_mode: str) -> Tensor:
    """``[out, num_taps]`` int32: the input index each tap of each output reads, -1 for a zero pad.

    Made by padding the indices themselves with ``F.pad``, so it follows PyTorch's padding rules.
    """
    left = (num_taps - 1) // 2
    # on the CPU whatever torch.set_default_device says: the C kernel reads it
    index = torch.arange(size, dtype=torch.float64, device="cpu").view(1, 1, size)
    if pad_mode == "zero":
        padded = F.pad(index, (left, num_taps - 1 - left), value=-1.0)
    else:
        padded = F.pad(index, (left, num_taps - 1 - left), mode=pad_mode)
    return padded[0, 0].unfold(0, num_taps, stride).to(torch.int32).contiguous()


@functools.lru_cache(maxsize=64)
def _taps_tensor(taps: tuple[float, ...]) -> Tensor:
    return torch.tensor(taps, dtype=torch.float32, device="cpu")  # the C kernel reads it


def _native_kernel():
    return native.function("blur_pool", "blur_pool_float", _KERNEL_SIGNATURE, ctypes.c_int)


def _has_tangent(x: Tensor) -> bool:
    return forward_ad.unpack_dual(x).tangent is not None


def _native_applies(x: Tensor) -> bool:
    return (
        native.native_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.is_contiguous()
        and x.numel() > 0
        and not _has_tangent(x)  # custom ops have no forward-mode formula
        and _native_kernel() is not None
    )


def _blur_pool_native(x: Tensor, taps: tuple[float, ...], stride: int, pad_mode: str) -> Tensor:
    n, c, h, w = x.shape
    rows = _source_index(h, len(taps), stride, pad_mode)
    cols = _source_index(w, len(taps), stride, pad_mode)
    out = x.new_empty(n, c, rows.shape[0], cols.shape[0])
    taps_tensor = _taps_tensor(taps)
    # small inputs: waking threads would cost more than it saves
    threads = torch.get_num_threads() if x.numel() >= 1 << 16 else 1
    failed = _native_kernel()(
        x.data_ptr(), out.data_ptr(), n * c, h, w, out.shape[2], out.shape[3],
        taps_tensor.data_ptr(), len(taps), stride, rows.data_ptr(), cols.data_ptr(), threads,
    )  # fmt: skip
    if failed:
        raise RuntimeError("blur-pool C kernel: out of memory for its row buffers")
    return out


@torch.library.custom_op("timm_pushpull::blur_pool2d", mutates_args=())
def _blur_pool_op(x: Tensor, taps: list[float], stride: int, pad_mode: str) -> Tensor:
    """Blur-pool as one op: the C kernel on float32 CPU tensors, the PyTorch form elsewhere."""
    if _native_applies(x.contiguous()):
        return _blur_pool_native(x.contiguous(), tuple(taps), stride, pad_mode)
    return _blur_pool_torch(x, tuple(taps), stride, pad_mode).contiguous()


@torch.library.custom_op("timm_pushpull::blur_pool2d_backward", mutates_args=())
def _blur_pool_backward_op(
    grad: Tensor, height: int, width: int, taps: list[float], stride: int, pad_mode: str
) -> Tensor:
    """The transpose of blur-pool (it is linear): its input gradient, from the PyTorch form."""
    zeros = grad.new_zeros(()).expand(*grad.shape[:2], height, width)
    _, vjp = torch.func.vjp(lambda t: _blur_pool_torch(t, tuple(taps), stride, pad_mode), zeros)
    return vjp(grad)[0].contiguous()


@_blur_pool_op.register_fake
def _(x, taps, stride, pad_mode):
    # padding adds len(taps) - 1 samples, so each side gives (size - 1) // stride + 1 outputs
    return x.new_empty(*x.shape[:2], (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1)


@_blur_pool_backward_op.register_fake
def _(grad, height, width, taps, stride, pad_mode):
    return grad.new_empty(*grad.shape[:2], height, width)


def _setup_forward(ctx, inputs, output) -> None:
    x, *ctx.args = inputs
    ctx.size = x.shape[-2:]


def _setup_backward(ctx, inputs, output) -> None:
    ctx.args = inputs[3:]


_blur_pool_op.register_autograd(
    lambda ctx, grad: (_blur_pool_backward_op(grad, *ctx.size, *ctx.args), None, None, None),
    setup_context=_setup_forward,
)
_blur_pool_backward_op.register_autograd(
    lambda ctx, grad: (_blur_pool_op(grad, *ctx.args), None, None, None, None, None),
    setup_context=_setup_backward,
)


def _fold_batch(op):
    """vmap rule: blur-pool is per plane, so a vmapped dimension folds into the batch."""

    def rule(info, in_dims, x, *args):
        x = x.movedim(in_dims[0], 0)
        return op(x.flatten(0, 1), *args).unflatten(0, x.shape[:2]), 0

    return rule


_blur_pool_op.register_vmap(_fold_batch(_blur_pool_op))
_blur_pool_backward_op.register_vmap(_fold_batch(_blur_pool_backward_op))


def _check_stride(stride: int) -> None:
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")


def blur_pool2d(
    x: Tensor,
    filter_type: str = "binomial",
    filter_size: int = 3,
    stride: int = 2,
    pad_mode: str = "reflect",
) -> Tensor:
    """Blur each channel with the separable filter, then subsample by ``stride``."""
    _check_stride(stride)
    return _blur_pool(x, list(blur_taps(filter_type, filter_size)), stride, pad_mode)


def _blur_pool(x: Tensor, taps: list[float], stride: int, pad_mode: str) -> Tensor:
    """Blur-pool with the normalised 1-D ``taps``, in the form that suits the call."""
    if torch.jit.is_scripting():  # TorchScript compiles nothing below this return
        return _blur_pool_conv(x, taps, stride, pad_mode)
    _check_padding(min(x.shape[-2:]), len(taps), pad_mode)
    if portable_graph():
        return _blur_pool_conv(x, taps, stride, pad_mode)
    if _native_applies(x):
        return _blur_pool_op(x, taps, stride, pad_mode)
    if torch.compiler.is_compiling():
        return _blur_pool_strided(x, tuple(taps), stride, pad_mode)
    return _blur_pool_torch(x, tuple(taps), stride, pad_mode)


# An FX leaf (torch.fx and timm's fx feature extraction): it picks its path from the input's size.
# Its arguments are what TorchScript can type, so a traced graph that holds it scripts.
torch.fx.wrap("_blur_pool")


class BlurPool2d(nn.Module):
    """Blur-pool layer; takes timm's ``aa_layer(channels=..., stride=...)`` arguments.

    ``channels`` is accepted for timm compatibility and only shown in the repr: the same filter is
    applied to every channel and no parameters are held.
    """

    def __init__(
        self,
        channels: int | None = None,
        filter_type: str = "binomial",
        filter_size: int = 3,
        stride: int = 2,
        pad_mode: str = "reflect",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        _check_stride(stride)
        self.channels = channels
        self.taps = list(blur_taps(filter_type, filter_size))  # a list: TorchScript types it
        self.filter_type = _FILTER_ALIASES[filter_type]
        self.filter_size = filter_size
        self.stride = stride
        self.pad_mode = pad_mode

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, filter={self.filter_type}{self.filter_size}, "
            f"stride={self.stride}, pad_mode={self.pad_mode}"
        )

    def forward(self, x: Tensor) -> Tensor:
        return _blur_pool(x, self.taps, self.stride, self.pad_mode)


class MaxBlurPool2d(nn.Module):
    """Zhang's anti-aliased max pooling: dense max (stride 1), then blur-pool with the stride."""

    def __init__(
        self,
        channels: int | None = None,
        kernel_size: int = 2,
        stride: int = 2,
        padding: int = 0,
        filter_type: str = "binomial",
        filter_size: int = 3,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.max_pool = nn.MaxPool2d(kernel_size, stride=1, padding=padding)
        self.blur = BlurPool2d(channels, filter_type, filter_size, stride, pad_mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.blur(self.max_pool(x))


def parse_blur_spec(spec: str) -> tuple[str, int]:
    """``"bin5"`` -> ``("binomial", 5)``; also ``"rect2"``, ``"tri3"``, ``"binomial3"``."""
    match = re.fullmatch(r"([a-z]+)(\d+)", spec.strip().lower()) if isinstance(spec, str) else None
    if match is None or match.group(1) not in _FILTER_ALIASES:
        raise ValueError(
            f"blur spec must be a filter name {('bin',) + FILTER_TYPES} followed by a size 1..{MAX_FILTER_SIZE}, "
            f"e.g. 'bin5', 'tri3', 'rect2'; got {spec!r}"
        )
    filter_type, size = _FILTER_ALIASES[match.group(1)], int(match.group(2))
    blur_taps(filter_type, size)
    return filter_type, size


@functools.cache
def blur_pool_class(spec: str | None, pad_mode: str = "reflect") -> type[BlurPool2d] | None:
    """A ``BlurPool2d`` subclass with the filter fixed, for timm's ``aa_layer`` (which needs a class).

    ``None`` passes through, so ``aa_layer=blur_pool_class(aa)`` works when anti-aliasing is off.
    """
    if spec is None:
        return None
    filter_type, size = parse_blur_spec(spec)

    def __init__(self, channels=None, stride=2, device=None, dtype=None, **kwargs):
        kwargs.setdefault("pad_mode", pad_mode)
        BlurPool2d.__init__(
            self, channels, filter_type, size, stride, device=device, dtype=dtype, **kwargs
        )

    name = f"BlurPool2d_{filter_type}{size}"
    return type(
        name, (BlurPool2d,), {"__init__": __init__, "__module__": __name__, "__qualname__": name}
    )
