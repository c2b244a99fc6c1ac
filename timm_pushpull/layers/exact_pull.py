"""The exact pull as one CPU operation: separable smoothed maps, then one matrix product.

Strisciuglio et al. (2020) define the pull kernel as the push kernel resized with
``align_corners=True``. Resizing is linear and separable, ``resize(k) = U_v k U_h^T`` (a fixed
``[s, p]`` interpolation matrix per axis), so

    x * resize(k) = sum_ab k[:, :, a, b] * (x * u_a u_b^T)

``exact_pull`` builds the ``s_h * s_w`` maps ``x * u_a u_b^T`` of every input channel with a C
kernel (``csrc/pull_maps.c``, built by :mod:`timm_pushpull.native`) in one pass per axis
(channels-last, or channels-first for few input channels), then mixes them with the push kernel
in a matrix product, which has exactly the push convolution's multiply-adds. Each thread builds
a cache-sized block of output rows (``FORWARD_CHUNK_BYTES_PER_THREAD``) and mixes it at once with
the GEMM of the MKL that PyTorch runs on, called from the C kernel (one parallel region for the
whole op); without MKL, or with groups, the blocks are built in parallel and mixed with
``torch.mm``/``torch.bmm`` chunk by chunk. The backward pass rebuilds the maps chunk by chunk
(the weight gradient is one matrix product per chunk) and spreads the map gradient back through
the transposed filtering, also in C.

It is a ``torch.library`` custom op with a fake implementation, an autograd formula, a vmap rule
and a FLOP formula, so ``torch.compile``, ``torch.export``, FX, ``torch.func`` and the FLOP counter
see one op. Where the C kernel does not apply (not float32/float64 on the CPU, no C compiler) the
op runs the direct convolution with the resized kernel, the paper's formulation. Second
derivatives and forward-mode AD are not implemented (custom ops have no forward-mode formula).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from .. import native

_INT, _LONG, _PTR = ctypes.c_int, ctypes.c_long, ctypes.c_void_p
_GEOMETRY = [_LONG] + [_INT] * 10 + [_PTR, _PTR] + [_INT] * 6
_FORWARD_SIGNATURE = [_PTR, _PTR, *_GEOMETRY, _INT, _INT, _INT]
_MIXED_SIGNATURE = [_PTR, _PTR, *_GEOMETRY, _PTR, _PTR, _INT, _INT, _INT, _PTR, _PTR, _INT]
_BACKWARD_SIGNATURE = [_PTR, _PTR, *_GEOMETRY, _LONG, _LONG, _LONG, _LONG, _INT]
_SUFFIX = {torch.float32: "float", torch.float64: "double"}
MAX_TAPS = 64  # per axis, csrc/pull_maps.c
# Maps built and mixed per chunk (bytes). Each chunk costs two parallel regions (C kernel, GEMM),
# which cost far more than their work on a loaded machine: side by side on the busy 2-core VM, the
# 64->64 layer on 8x64x56x56 ran at 7.2x a conv with 4 MiB chunks, 3.6x with 32 MiB and 3.0x with
# 64 MiB (one chunk). The buffer is kept per thread (at most 64 MiB), so it is not page-faulted in
# on every call: a fresh 58 MB tensor cost 1.9x a conv to fill.
CHUNK_BYTES = 1 << 26
# The forward pass mixes each block right after building it, so blocks small enough to stay in a
# core's cache (1 MiB of L2 on the 2-core VM) are not written to memory and read back. Side by
# side (BENCHMARKS.md, exact pull run 9), the 64->64 pull on 8x64x56x56 against its push conv:
# 1.82x with 64 MiB blocks, 1.73x with 1 MiB on one thread; 2.58x and 2.02x on two. The 3->64 7x7
# stem's: 2.52x and 2.10x, 2.38x and 2.18x.
FORWARD_CHUNK_BYTES_PER_THREAD = 1 << 20
# With few input channels the channels-last kernel's inner loops (over channels) run 1-4 times and
# cost more than their multiply-adds. Up to this many channels (one group) the planar kernel reads
# NCHW and loops over pixels instead, and the GEMM reads its maps transposed: the exact 3->64 7x7
# stem went from 6.86x to 3.81x a conv in eval and from 8.61x to 5.03x in training
# (BENCHMARKS.md, exact pull runs 7 and 8, with the chunk size below).
PLANAR_MAX_CHANNELS = 4
_scratch = threading.local()


def _scratch_buffer(numel: int, dtype: torch.dtype) -> Tensor:
    """A reused flat buffer of at least ``numel`` elements for this thread (contents undefined)."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[dtype] = torch.empty(numel, dtype=dtype)
    return buffer[:numel]


def interpolation_matrix(
    size: int, new_size: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``[size, new_size]`` matrix U with ``linear_resize(v) = v @ U`` (``align_corners=True``).

    Made in float64 and cast, so that float64 users get float64 accuracy.
    """
    eye = torch.eye(size, dtype=torch.float64, device=device).unsqueeze(0)
    return F.interpolate(eye, size=new_size, mode="linear", align_corners=True)[0].to(dtype)


@functools.lru_cache(maxsize=64)
def interpolation_taps(size: int, new_size: int) -> Tensor:
    """:func:`interpolation_matrix` in float64 on the CPU, for the C kernel (cached)."""
    return interpolation_matrix(size, new_size, torch.float64, torch.device("cpu")).contiguous()


def _kernel(backward: bool, dtype: torch.dtype, planar: bool = False):
    name = f"pull_maps{'_backward' if backward else '_planar' if planar else ''}_{_SUFFIX[dtype]}"
    signature = _BACKWARD_SIGNATURE if backward else _FORWARD_SIGNATURE
    return native.function("pull_maps", name, signature, ctypes.c_int)


@functools.cache
def blas_gemm(dtype: torch.dtype) -> int | None:
    """Address of the Fortran GEMM (``sgemm_``/``dgemm_``) of the MKL that PyTorch runs on, for the
    C kernel that mixes inside its own parallel region; None where PyTorch has no MKL (other
    BLAS builds may start threads of their own there) or the symbol is not found."""
    if dtype not in _SUFFIX or not torch.backends.mkl.is_available():
        return None
    symbol = {torch.float32: "sgemm_", torch.float64: "dgemm_"}[dtype]
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = Path(torch.__file__).parent / "lib" / name
        try:
            return ctypes.cast(getattr(ctypes.CDLL(str(path)), symbol), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    return None


def planar_maps(channels: int, groups: int) -> bool:
    """Whether the maps are built channels-first (the kernel's planar form): one group of at most
    ``PLANAR_MAX_CHANNELS`` input channels."""
    return groups == 1 and channels <= PLANAR_MAX_CHANNELS


def _input_format(channels: int, groups: int) -> torch.memory_format:
    """The layout the map kernel reads its input in."""
    return torch.contiguous_format if planar_maps(channels, groups) else torch.channels_last


def native_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the C kernel runs for tensors of this device and dtype (and a C compiler exists)."""
    return (
        device.type == "cpu"
        and dtype in _SUFFIX
        and native.native_enabled()
        and _kernel(False, dtype) is not None
    )


def _output_size(size: int, taps: int, stride: int, pad: int, dilation: int) -> int:
    return (size + pad - dilation * (taps - 1) - 1) // stride + 1


def _output_shape(x: Tensor, weight: Tensor, pull_size, stride, padding, dilation):
    top, bottom, left, right = padding
    out_h = _output_size(x.shape[-2], pull_size[0], stride[0], top + bottom, dilation[0])
    out_w = _output_size(x.shape[-1], pull_size[1], stride[1], left + right, dilation[1])
    return x.shape[0], weight.shape[0], out_h, out_w


def _exact_pull_torch(x, weight, bias, pull_size, stride, padding, dilation, groups) -> Tensor:
    """The definition: a convolution with the resized kernel."""
    top, bottom, left, right = padding
    kernel = F.interpolate(weight, size=tuple(pull_size), mode="bilinear", align_corners=True)
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, kernel, bias, tuple(stride), 0, tuple(dilation), groups)


def _native_applies(x: Tensor, weight: Tensor, pull_size) -> bool:
    return (
        native_available(x.device, x.dtype)
        and weight.dtype == x.dtype
        and x.numel() > 0
        and max(*pull_size, *weight.shape[-2:]) <= MAX_TAPS
    )


def _mixing_weight(weight: Tensor, groups: int) -> Tensor:
    """``[groups, K, O/groups]``: the push kernel in the maps' channel order (a, b, channel)."""
    out_channels, group_channels, sh, sw = weight.shape
    kernel = weight.view(groups, out_channels // groups, group_channels, sh, sw)
    return kernel.permute(0, 3, 4, 2, 1).reshape(groups, sh * sw * group_channels, -1)


class _Kernels:
    """The C kernels' geometry arguments for one call, and its chunks of maps."""

    def __init__(
        self, x: Tensor, weight: Tensor, pull_size, stride, padding, dilation, groups, chunk_bytes
    ):
        (sh, sw), (ph, pw) = weight.shape[-2:], pull_size
        self.taps = [interpolation_taps(s, p) for s, p in ((sh, ph), (sw, pw))]
        n, c, h, w = x.shape
        _, _, self.out_h, self.out_w = _output_shape(
            x, weight, pull_size, stride, padding, dilation
        )
        self.maps_per_pixel = c * sh * sw
        self.geometry = [n, c, groups, h, w, self.out_h, self.out_w, sh, ph, sw, pw]
        self.geometry += [t.data_ptr() for t in self.taps]
        self.geometry += [stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1]]
        # small inputs: waking threads would cost more than it saves
        self.threads = torch.get_num_threads() if x.numel() * ph >= 1 << 16 else 1
        self.dtype = x.dtype
        self.planar = planar_maps(c, groups)
        self.row_bytes = self.out_w * self.maps_per_pixel * x.element_size()
        self.rows = max(1, chunk_bytes // self.row_bytes)  # output rows per chunk

    def chunks(self, batch: int, whole_images: bool = False):
        """``(first image, images, first row, rows)`` covering the output a few MiB at a time."""
        if whole_images or self.rows >= self.out_h:
            step = max(1, self.rows // self.out_h)
            for n in range(0, batch, step):
                yield n, min(step, batch - n), 0, self.out_h
        else:
            for n in range(batch):
                for i in range(0, self.out_h, self.rows):
                    yield n, 1, i, min(self.rows, self.out_h - i)

    def maps(self, x: Tensor, buffer: Tensor, n: int, images: int, row: int, rows: int) -> Tensor:
        """``[pixels, maps]`` of images ``n .. n + images - 1``, output rows ``row .. row + rows - 1``
        (a transposed view in the planar form); ``x`` in :func:`_input_format`."""
        geometry = [images, *self.geometry[1:]]
        image = x[n].data_ptr()
        maps = buffer[: images * rows * self.out_w * self.maps_per_pixel]
        kernel = _kernel(False, self.dtype, self.planar)
        if kernel(image, maps.data_ptr(), *geometry, row, rows, self.threads):
            raise RuntimeError("pull-maps C kernel: bad geometry or out of memory")
        if self.planar:
            return maps.view(self.maps_per_pixel, -1).T
        return maps.view(-1, self.maps_per_pixel)

    def mix_in_one_pass(
        self, x: Tensor, weights: Tensor, bias: Tensor | None, out: Tensor, gemm: int
    ) -> None:
        """``out [N, Ho, Wo, O]`` = the maps of ``x`` mixed by ``weights [K, O]`` (+ ``bias``), one
        group, each thread building and mixing its own blocks of rows (``csrc/pull_maps.h``)."""
        threads = min(self.threads, x.shape[0] * self.out_h)
        block_rows = max(1, FORWARD_CHUNK_BYTES_PER_THREAD // self.row_bytes)
        block_rows = min(block_rows, -(-x.shape[0] * self.out_h // threads))  # work for all
        scratch = _scratch_buffer(threads * block_rows * self.out_w * self.maps_per_pixel, x.dtype)
        kernel = native.function(
            "pull_maps", f"pull_mixed_{_SUFFIX[self.dtype]}", _MIXED_SIGNATURE, ctypes.c_int
        )
        bias_pointer = None if bias is None else bias.data_ptr()
        failed = kernel(
            x.data_ptr(), out.data_ptr(), *self.geometry, weights.data_ptr(), bias_pointer,
            out.shape[-1], block_rows, self.planar, scratch.data_ptr(), gemm, threads,
        )  # fmt: skip
        if failed:
            raise RuntimeError("pull-maps C kernel: bad geometry or out of memory")

    def spread(self, grad_maps: Tensor, grad_x: Tensor, n: int, images: int) -> None:
        """``grad_x[n .. n + images - 1]`` from the gradient of those images' maps."""
        geometry = [images, *self.geometry[1:]]
        pixels = self.out_h * self.out_w
        strides = (
            pixels * self.maps_per_pixel,
            1,
            self.out_w * self.maps_per_pixel,
            self.maps_per_pixel,
        )
        failed = _kernel(True, self.dtype)(
            grad_maps.data_ptr(), grad_x[n].data_ptr(), *geometry, *strides, self.threads
        )
        if failed:
            raise RuntimeError("pull-maps C kernel: bad geometry or out of memory")


def _channels_last_output(x: Tensor, batch: int, channels: int, height: int, width: int) -> Tensor:
    # a tensor of its own, not a permuted view: the layer applies its ReLU in place, which autograd
    # forbids on a view made inside a custom op
    return torch.empty(
        (batch, channels, height, width),
        dtype=x.dtype,
        device=x.device,
        memory_format=torch.channels_last,
    )


def _mix(maps: Tensor, mixing: Tensor, bias: Tensor | None, out: Tensor) -> None:
    """``out[P, O] = maps[P, K] @ mixing (+ bias)``, per group."""
    groups = mixing.shape[0]
    if groups == 1:
        if bias is None:
            torch.mm(maps, mixing[0], out=out)
        else:
            torch.addmm(bias, maps, mixing[0], out=out)
        return
    mixed = torch.bmm(maps.unflatten(1, (groups, -1)).transpose(0, 1), mixing)
    out.view(out.shape[0], groups, -1).copy_(mixed.transpose(0, 1))
    if bias is not None:
        out.add_(bias)


@torch.library.custom_op("timm_pushpull::exact_pull", mutates_args=())
def exact_pull(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    pull_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> Tensor:
    """``conv2d(pad(x), resize(weight, pull_size), bias, stride, 0, dilation, groups)``, channels-last.

    ``resize`` is bilinear with ``align_corners=True``; ``padding`` is (top, bottom, left, right)
    zeros. The pull branch passes the negated push kernel and bias.
    """
    args = (pull_size, stride, padding, dilation, groups)
    if not _native_applies(x, weight, pull_size):
        out = _exact_pull_torch(x, weight, bias, *args)
        return out.contiguous(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=_input_format(x.shape[1], groups))
    kernels = _Kernels(x, weight, *args, FORWARD_CHUNK_BYTES_PER_THREAD * torch.get_num_threads())
    batch, out_channels, out_h, out_w = _output_shape(
        x, weight, pull_size, stride, padding, dilation
    )
    out = _channels_last_output(x, batch, out_channels, out_h, out_w)
    pixels_last = out.permute(0, 2, 3, 1)  # [N, Ho, Wo, O], contiguous
    mixing = _mixing_weight(weight, groups)
    gemm = blas_gemm(x.dtype) if groups == 1 else None
    if gemm is not None:
        bias = None if bias is None else bias.contiguous()
        kernels.mix_in_one_pass(x, mixing[0].contiguous(), bias, pixels_last, gemm)
        return out
    buffer = _scratch_buffer(kernels.rows * out_w * kernels.maps_per_pixel, x.dtype)
    for n, images, row, rows in kernels.chunks(batch):
        maps = kernels.maps(x, buffer, n, images, row, rows)
        chunk = pixels_last[n : n + images, row : row + rows].view(-1, out_channels)
        _mix(maps, mixing, bias, chunk)
    return out


@torch.library.custom_op("timm_pushpull::exact_pull_backward", mutates_args=())
def exact_pull_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    pull_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    need_input: bool,
    need_weight: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`exact_pull` for ``x`` and ``weight`` (empty where not needed)."""
    args = (pull_size, stride, padding, dilation, groups)
    if not _native_applies(x, weight, pull_size):
        _, vjp = torch.func.vjp(lambda t, w: _exact_pull_torch(t, w, None, *args), x, weight)
        grad_x, grad_w = vjp(grad)
        grad_x = grad_x.contiguous(memory_format=torch.channels_last)
        return (grad_x if need_input else x.new_empty(0)), (
            grad_w if need_weight else x.new_empty(0)
        )
    x = x.contiguous(memory_format=_input_format(x.shape[1], groups))
    kernels = _Kernels(x, weight, *args, CHUNK_BYTES)
    out_channels, group_channels, sh, sw = weight.shape
    grad = grad.permute(0, 2, 3, 1).contiguous()  # [N, Ho, Wo, O]
    mixing = _mixing_weight(weight, groups)  # [groups, K, O/groups]
    grad_x = (
        torch.empty_like(x, memory_format=torch.channels_last) if need_input else x.new_empty(0)
    )
    grad_mixing = torch.zeros_like(mixing) if need_weight else x.new_empty(0)
    per_image = kernels.out_h * kernels.out_w * kernels.maps_per_pixel
    images_per_chunk = max(1, CHUNK_BYTES // (per_image * x.element_size()))
    buffer = _scratch_buffer(min(images_per_chunk, x.shape[0]) * per_image, x.dtype)
    for n, images, _, _ in kernels.chunks(x.shape[0], whole_images=True):
        pixels = images * kernels.out_h * kernels.out_w
        grad_out = grad[n : n + images].view(pixels, groups, -1).transpose(0, 1)  # [g, P, O/g]
        if need_weight:
            maps = kernels.maps(x, buffer, n, images, 0, kernels.out_h)
            maps = maps.unflatten(1, (groups, -1)).transpose(0, 1)  # [g, P, K]
            grad_mixing.baddbmm_(maps.transpose(1, 2), grad_out)
        if need_input:
            grad_maps = buffer[: pixels * kernels.maps_per_pixel].view(pixels, -1)
            if groups == 1:
                torch.mm(grad_out[0], mixing[0].T, out=grad_maps)
            else:
                mixed = torch.bmm(grad_out, mixing.transpose(1, 2))  # [g, P, K]
                grad_maps.view(pixels, groups, -1).copy_(mixed.transpose(0, 1))
            kernels.spread(grad_maps, grad_x, n, images)
    if need_weight:
        grad_mixing = grad_mixing.view(groups, sh, sw, group_channels, -1).permute(0, 4, 3, 1, 2)
        grad_mixing = grad_mixing.reshape(out_channels, group_channels, sh, sw)
    return grad_x, grad_mixing


@exact_pull.register_fake
def _(x, weight, bias, pull_size, stride, padding, dilation, groups):
    batch, out_channels, out_h, out_w = _output_shape(
        x, weight, pull_size, stride, padding, dilation
    )
    return _channels_last_output(x, batch, out_channels, out_h, out_w)


@exact_pull_backward.register_fake
def _(grad, x, weight, pull_size, stride, padding, dilation, groups, need_input, need_weight):
    grad_x = (
        torch.empty_like(x, memory_format=torch.channels_last) if need_input else x.new_empty(0)
    )
    return grad_x, (torch.empty_like(weight) if need_weight else x.new_empty(0))


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, *ctx.args = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, grad: Tensor):
    x, weight = ctx.saved_tensors
    need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
    grad_x, grad_w = exact_pull_backward(grad, x, weight, *ctx.args, need_input, need_weight)
    grad_b = grad.sum((0, 2, 3)) if need_bias else None
    none = [None] * len(ctx.args)
    return (grad_x if need_input else None), (grad_w if need_weight else None), grad_b, *none


exact_pull.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.timm_pushpull.exact_pull)
def _flops(
    x_shape,
    weight_shape,
    bias_shape,
    pull_size,
    stride,
    padding,
    dilation,
    groups,
    *,
    out_shape,
    **kwargs,
) -> int:
    """FLOPs of the separable form: the mixing (the push conv's multiply-adds) and the map filtering."""
    (batch, channels, _, width), (_, _, out_h, out_w) = x_shape, out_shape
    (sh, sw), (ph, pw) = weight_shape[-2:], pull_size
    taps_v = int((interpolation_taps(sh, ph) != 0).sum())  # non-zero taps over all a
    taps_h = int((interpolation_taps(sw, pw) != 0).sum())
    mixing = out_h * out_w * weight_shape[0] * weight_shape[1] * sh * sw
    filtering = channels * out_h * (width * taps_v + out_w * sh * taps_h)
    return 2 * batch * (mixing + filtering)


@exact_pull.register_vmap
def _(info, in_dims, x, weight, bias, *args):
    x_dim, weight_dim, bias_dim = in_dims[:3]
    if weight_dim is None and bias_dim is None:
        # the pull is per image: a vmapped input dimension folds into the batch
        x = x.movedim(x_dim, 0)
        return exact_pull(x.flatten(0, 1), weight, bias, *args).unflatten(0, x.shape[:2]), 0

    def select(tensor, dim, index):
        return tensor if dim is None or tensor is None else tensor.select(dim, index)

    outs = [
        exact_pull(
            select(x, x_dim, k), select(weight, weight_dim, k), select(bias, bias_dim, k), *args
        )
        for k in range(info.batch_size)
    ]
    return torch.stack(outs), 0
