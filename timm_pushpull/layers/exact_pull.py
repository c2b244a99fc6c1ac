"""The exact pull as one CPU operation: separable smoothed maps, then one matrix product.

Strisciuglio et al. (2020) define the pull kernel as the push kernel resized with
``align_corners=True``. Resizing is linear and separable, ``resize(k) = U_v k U_h^T`` (a fixed
``[s, p]`` interpolation matrix per axis), so

    x * resize(k) = sum_ab k[:, :, a, b] * (x * u_a u_b^T)

``exact_pull`` builds the ``s_h * s_w`` maps ``x * u_a u_b^T`` of every input channel with a C
kernel (``csrc/pull_maps.c``, built by :mod:`timm_pushpull.native`) in one pass per axis
(channels-last, or channels-first for few input channels), then mixes them with the push kernel
in a matrix product, which has exactly the push convolution's multiply-adds. Each thread builds
a cache-sized block of output pixels (whole rows, or columns of one row:
``FORWARD_CHUNK_BYTES_PER_THREAD``) and mixes it at once with a GEMM called from the C kernel
(one parallel region for the whole op; :func:`kernel_gemm`: the kernels' own, ``csrc/gemm.c``,
with the MKL that PyTorch runs on for the products it does not cover), writing the output in the
layout ``nn.Conv2d`` gives; without MKL, or with groups, the blocks are built in parallel and mixed
with ``torch.mm``/``torch.bmm`` block by block. The backward pass rebuilds the maps block by block
(the weight gradient is one matrix product per block) and spreads the map gradient back through
the transposed filtering, also in C. Scratch memory is bounded by the block sizes whatever the
input's size.

It is a ``torch.library`` custom op with a fake implementation, an autograd formula, a vmap rule
and a FLOP formula, so ``torch.compile``, ``torch.export``, FX, ``torch.func`` and the FLOP counter
see one op. Where the C kernel does not apply (not float32/float64 on the CPU, no C compiler, more
than ``MAX_TAPS`` taps, a pull smaller than the push kernel) or its result is not finite, the op
runs the direct convolution with the resized kernel, the paper's formulation, and so has its NaNs
and infinities. Second derivatives and forward-mode AD are not implemented (custom ops have no
forward-mode formula).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from .. import native

_SUFFIX = {torch.float32: "float", torch.float64: "double"}
MAX_TAPS = 64  # per axis, csrc/pull_maps.c and csrc/push_pull_taps.c
# Bytes of maps each thread builds and mixes at once in the one-pass forward: small enough to stay
# in a core's cache, so they are not written to memory and read back (BENCHMARKS.md, "Pull alone
# (C form, eval) vs the push conv, by forward chunk size per thread").
FORWARD_CHUNK_BYTES_PER_THREAD = 512 << 10
# Bytes of maps per chunk where the maps are built and mixed in separate steps (the backward pass;
# the forward without MKL or with groups). Each chunk costs two parallel regions, which cost more
# than their work on a loaded machine when chunks are small (BENCHMARKS.md, "Where the time goes
# (64->64 3x3 h=2 ...)"), and its buffer is memory held during the call (BENCHMARKS.md, "Memory of
# one exact layer call").
CHUNK_BYTES = 16 << 20
# Scratch buffers up to this size are kept per thread and dtype between calls (a fresh buffer is
# paged in on every call); larger ones are freed after the call.
RETAINED_SCRATCH_BYTES = 16 << 20
# With few input channels the channels-last kernel's inner loops (over channels) run 1-4 times and
# cost more than their multiply-adds. Up to this many channels (one group) the planar kernel reads
# NCHW and loops over pixels instead, and the GEMM reads its maps transposed (BENCHMARKS.md, exact
# pull runs 7 and 8: the 3->64 7x7 stem).
PLANAR_MAX_CHANNELS = 4
_scratch = threading.local()


def scratch_buffer(numel: int, dtype: torch.dtype) -> Tensor:
    """A flat buffer of at least ``numel`` elements for this thread (contents undefined): reused
    up to ``RETAINED_SCRATCH_BYTES``, fresh above. Never an inference tensor, so that a buffer
    first made under ``torch.inference_mode`` serves later calls with autograd."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is not None and buffer.numel() >= numel:
        return buffer[:numel]
    with torch.inference_mode(False):  # on the CPU whatever torch.set_default_device says
        buffer = torch.empty(numel, dtype=dtype, device="cpu")
    if numel * buffer.element_size() <= RETAINED_SCRATCH_BYTES:
        buffers[dtype] = buffer
    return buffer


def output_format(x: Tensor) -> torch.memory_format:
    """The layout ``nn.Conv2d`` gives its output for input ``x`` (PyTorch's
    ``suggest_memory_format``): the push-pull ops and layer return theirs in it too."""
    # the order of the strides, channels fastest (c10's is_channels_last_strides_2d)
    shape, strides, smallest = x.shape, x.stride(), 0
    if strides[1] == 0:
        return torch.contiguous_format
    for dim in (1, 3, 2, 0):
        if shape[dim] == 0 or strides[dim] < smallest or (dim == 0 and smallest == strides[1]):
            return torch.contiguous_format
        smallest = strides[dim] * max(1, shape[dim])
    return torch.channels_last


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


def nonzero_taps(size: int, new_size: int) -> int:
    """Non-zero entries of :func:`interpolation_taps`: the multiply-adds of one resize pass."""
    return int((interpolation_taps(size, new_size) != 0).sum())


def _kernel(name: str, dtype: torch.dtype):
    return native.function("pull_maps", f"{name}_{_SUFFIX[dtype]}")


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


_own_gemm_enabled = True


@contextlib.contextmanager
def own_gemm(enabled: bool) -> Iterator[None]:
    """Whether the kernels mix with their own GEMM (``csrc/gemm.c``) or MKL's alone inside the
    block (process-wide; for benchmarks and tests that compare the two side by side)."""
    global _own_gemm_enabled
    previous, _own_gemm_enabled = _own_gemm_enabled, bool(enabled)
    try:
        yield
    finally:
        _own_gemm_enabled = previous


@functools.cache
def _own_gemm_address(dtype: torch.dtype, fallback: int) -> int | None:
    gemm = native.function("gemm", f"gemm_{_SUFFIX[dtype]}")
    # its generic code (a CPU without AVX2 and FMA) is many times slower than MKL's (BENCHMARKS.md,
    # run 15)
    if gemm is None or not native.function("gemm", "gemm_vector_code")():
        return None
    native.function("gemm", f"set_fallback_gemm_{_SUFFIX[dtype]}")(fallback)
    return ctypes.cast(gemm, ctypes.c_void_p).value


def kernel_gemm(dtype: torch.dtype) -> int | None:
    """Address of the GEMM the C kernels mix with inside their parallel regions: their own
    (``csrc/gemm.c``: the products with A not transposed, faster than MKL's on the AMD CPU we
    measured, BENCHMARKS.md run 14), which passes every other product to MKL's; or MKL's alone
    inside :func:`own_gemm` ``(False)`` and where the own GEMM's vector code does not serve the
    CPU. None without MKL (:func:`blas_gemm`)."""
    fallback = blas_gemm(dtype)
    if fallback is None or not _own_gemm_enabled:
        return fallback
    return _own_gemm_address(dtype, fallback) or fallback


def planar_maps(channels: int, groups: int) -> bool:
    """Whether the maps are built channels-first (the kernel's planar form): one group of at most
    ``PLANAR_MAX_CHANNELS`` input channels."""
    return groups == 1 and channels <= PLANAR_MAX_CHANNELS


def _input_format(channels: int, groups: int) -> torch.memory_format:
    """The layout the map kernel reads its input in."""
    return torch.contiguous_format if planar_maps(channels, groups) else torch.channels_last


def native_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the C kernel runs for tensors of this device and dtype (and a C compiler exists)."""
    return device.type == "cpu" and dtype in _SUFFIX and native.native_enabled() and _built(dtype)


_BUILT: dict[torch.dtype, bool] = {}  # a dict, not functools.cache: torch.compile traces it


def _built(dtype: torch.dtype) -> bool:
    """Whether the C kernels for ``dtype`` were built and loaded (with the C kernels on)."""
    if dtype not in _BUILT:
        _BUILT[dtype] = _kernel("pull_maps", dtype) is not None
    return _BUILT[dtype]


def c_kernel_runs(x: Tensor, weight: Tensor, pull_size, padding, symbolic: bool = False) -> bool:
    """Whether :func:`exact_pull` runs the C kernel for these tensors (else the definition):
    float32/float64 CPU tensors of one dtype, at most ``MAX_TAPS`` taps per axis, no negative
    padding (a pull smaller than the push kernel), a non-empty input (``symbolic``: not checked,
    for graphs whose op decides when it runs)."""
    return (
        native_available(x.device, x.dtype)
        and weight.dtype == x.dtype
        and weight.dim() == 4  # else the definition's convolution raises
        and max(*pull_size, *weight.shape[-2:]) <= MAX_TAPS
        and min(padding) >= 0
        and (symbolic or x.numel() > 0)
    )


def check_bias(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """Raise as ``F.conv2d`` does for a bias that the C kernels would misread: of another dtype or
    device than the input, or not one value per output channel."""
    if bias is None:
        return
    if bias.dtype != x.dtype or bias.device != x.device:
        raise RuntimeError(
            f"Input type ({x.dtype}, {x.device}) and bias type ({bias.dtype}, {bias.device}) "
            "should be the same"
        )
    if bias.dim() != 1 or bias.numel() != weight.shape[0]:
        raise RuntimeError(
            f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
            f"{weight.shape[0]} elements, but got bias of size {list(bias.shape)} instead"
        )


def check_output_size(padded: tuple[int, int], extent: tuple[int, int]) -> None:
    """Raise as ``nn.Conv2d`` does when a padded input is smaller than the (dilated) kernel."""
    if padded[0] < extent[0] or padded[1] < extent[1]:
        raise RuntimeError(
            f"Calculated padded input size per channel: ({padded[0]} x {padded[1]}). Kernel size: "
            f"({extent[0]} x {extent[1]}). Kernel size can't be greater than actual input size"
        )


def _output_size(size: int, taps: int, stride: int, pad: int, dilation: int) -> int:
    return (size + pad - dilation * (taps - 1) - 1) // stride + 1


def _output_shape(x: Tensor, weight: Tensor, pull_size, stride, padding, dilation):
    top, bottom, left, right = padding
    check_output_size(
        (x.shape[-2] + top + bottom, x.shape[-1] + left + right),
        (dilation[0] * (pull_size[0] - 1) + 1, dilation[1] * (pull_size[1] - 1) + 1),
    )
    out_h = _output_size(x.shape[-2], pull_size[0], stride[0], top + bottom, dilation[0])
    out_w = _output_size(x.shape[-1], pull_size[1], stride[1], left + right, dilation[1])
    return x.shape[0], weight.shape[0], out_h, out_w


def exact_pull_definition(x, weight, bias, pull_size, stride, padding, dilation, groups) -> Tensor:
    """The definition: a convolution with the resized kernel (negative padding crops)."""
    top, bottom, left, right = padding
    kernel = F.interpolate(weight, size=tuple(pull_size), mode="bilinear", align_corners=True)
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, kernel, bias, tuple(stride), 0, tuple(dilation), groups)


def graph_gradients(outputs, grads, inputs, needs) -> list[Tensor | None]:
    """The gradients of ``outputs`` (given ``grads``, None for none) for the ``inputs`` whose
    ``needs`` is set, as a differentiable graph: what a C op's backward returns under
    ``create_graph=True`` (a double backward, e.g. a gradient penalty), computed through the
    definition recomputed from the saved inputs, since the C backward kernels have no derivative
    of their own."""
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None]
    wanted = [t for t, need in zip(inputs, needs) if need]
    found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                     create_graph=True, allow_unused=True))  # fmt: skip
    return [next(found) if need else None for need in needs]


def _mixing_weight(weight: Tensor, groups: int) -> Tensor:
    """``[groups, K, O/groups]``: the push kernel in the maps' channel order (a, b, channel)."""
    out_channels, group_channels, sh, sw = weight.shape
    kernel = weight.view(groups, out_channels // groups, group_channels, sh, sw)
    return kernel.permute(0, 3, 4, 2, 1).reshape(groups, sh * sw * group_channels, -1)


def block_shape(height: int, width: int, pixel_bytes: int, budget: int) -> tuple[int, int]:
    """``(rows, columns)`` of the largest block of output pixels within ``budget`` bytes: whole
    rows, or columns of one row when one row is larger."""
    if width * pixel_bytes <= budget:
        return max(1, min(height, budget // (width * pixel_bytes))), width
    return 1, max(1, budget // pixel_bytes)


class _Kernels:
    """The C kernels' geometry arguments for one call, and its blocks of maps."""

    def __init__(
        self, x: Tensor, weight: Tensor, pull_size, stride, padding, dilation, groups, budget
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
        pixel_bytes = self.maps_per_pixel * x.element_size()
        self.rows, self.cols = block_shape(self.out_h, self.out_w, pixel_bytes, budget)

    def blocks(self, batch: int) -> Iterator[tuple[int, int, int, int, int, int]]:
        """``(first image, images, first row, rows, first column, columns)`` covering the output:
        whole images, whole rows of one image, or columns of one row, each within the budget."""
        if self.rows >= self.out_h:
            step = max(1, self.rows // self.out_h)
            for n in range(0, batch, step):
                yield n, min(step, batch - n), 0, self.out_h, 0, self.out_w
            return
        for n in range(batch):
            for i in range(0, self.out_h, self.rows):
                for j in range(0, self.out_w, self.cols):
                    rows = min(self.rows, self.out_h - i)
                    yield n, 1, i, rows, j, min(self.cols, self.out_w - j)

    def buffer(self) -> Tensor:
        return scratch_buffer(self.rows * self.cols * self.maps_per_pixel, self.dtype)

    def maps(self, x: Tensor, buffer: Tensor, block: tuple) -> Tensor:
        """``[pixels, maps]`` of a block of :meth:`blocks` (a transposed view in the planar form);
        ``x`` in :func:`_input_format`."""
        n, images, row, rows, col, cols = block
        geometry = [images, *self.geometry[1:]]
        maps = buffer[: images * rows * cols * self.maps_per_pixel]
        kernel = _kernel("pull_maps_planar" if self.planar else "pull_maps", self.dtype)
        if kernel(x[n].data_ptr(), maps.data_ptr(), *geometry, row, rows, col, cols, self.threads):
            raise RuntimeError("pull-maps C kernel: bad geometry or out of memory")
        if self.planar:
            return maps.view(self.maps_per_pixel, -1).T
        return maps.view(-1, self.maps_per_pixel)

    def mix_in_one_pass(
        self, x: Tensor, weights: Tensor, bias: Tensor | None, out: Tensor, gemm: int
    ) -> bool:
        """``out`` = the maps of ``x`` mixed by ``weights [K, O]`` (+ ``bias``), one group, each
        thread building and mixing its own blocks (``csrc/pull_maps.h``). False where a result
        is not finite."""
        threads = min(self.threads, x.shape[0] * self.out_h)
        block_rows = self.rows
        if self.cols == self.out_w:  # work for every thread
            block_rows = min(block_rows, -(-x.shape[0] * self.out_h // threads))
        scratch = scratch_buffer(threads * block_rows * self.cols * self.maps_per_pixel, x.dtype)
        planar_out = output_format(out) == torch.contiguous_format
        bias_pointer = None if bias is None else bias.data_ptr()
        status = _kernel("pull_mixed", self.dtype)(
            x.data_ptr(), out.data_ptr(), *self.geometry, weights.data_ptr(), bias_pointer,
            out.shape[1], block_rows, self.cols, self.planar, planar_out, scratch.data_ptr(),
            gemm, threads,
        )  # fmt: skip
        if status == 1:
            raise RuntimeError("pull-maps C kernel: bad geometry or out of memory")
        return status == 0

    def spread(self, grad_maps: Tensor, grad_x: Tensor, block: tuple) -> None:
        """``grad_x[n .. n + images - 1]`` plus the transposed filtering of a block's map
        gradient ``[pixels, maps]`` (overwritten at the first block of an image)."""
        n, images, row, rows, col, cols = block
        geometry = [images, *self.geometry[1:]]
        k = self.maps_per_pixel
        strides = (rows * cols * k, 1, cols * k, k)
        failed = _kernel("pull_maps_backward", self.dtype)(
            grad_maps.data_ptr(), grad_x[n].data_ptr(), *geometry, *strides, row, rows, col,
            cols, row > 0 or col > 0, self.threads,
        )  # fmt: skip
        if failed:
            raise RuntimeError("pull-maps C kernel: bad geometry or out of memory")


def _empty_output(x: Tensor, batch: int, channels: int, height: int, width: int) -> Tensor:
    """The op's output, in :func:`output_format`: a tensor of its own, not a permuted view, since
    the layer applies its ReLU in place, which autograd forbids on a view made inside a custom op."""
    return torch.empty(
        (batch, channels, height, width),
        dtype=x.dtype,
        device=x.device,
        memory_format=output_format(x),
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


def _c_forward(x, weight, bias, pull_size, stride, padding, dilation, groups) -> Tensor | None:
    """The C form of :func:`exact_pull`; None where a result is not finite."""
    args = (pull_size, stride, padding, dilation, groups)
    shape = _output_shape(x, weight, pull_size, stride, padding, dilation)
    out = _empty_output(x, *shape)
    x = x.contiguous(memory_format=_input_format(x.shape[1], groups))
    mixing = _mixing_weight(weight, groups)
    gemm = kernel_gemm(x.dtype) if groups == 1 else None
    if gemm is not None:
        kernels = _Kernels(x, weight, *args, FORWARD_CHUNK_BYTES_PER_THREAD)
        bias = None if bias is None else bias.contiguous()
        return out if kernels.mix_in_one_pass(x, mixing[0].contiguous(), bias, out, gemm) else None
    kernels = _Kernels(x, weight, *args, CHUNK_BYTES)
    pixels_last = torch.empty(
        shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last
    )
    pixels_last = pixels_last.permute(0, 2, 3, 1)  # [N, Ho, Wo, O], contiguous
    buffer = kernels.buffer()
    for block in kernels.blocks(x.shape[0]):
        n, images, row, rows, col, cols = block
        chunk = pixels_last[n : n + images, row : row + rows, col : col + cols]
        _mix(kernels.maps(x, buffer, block), mixing, bias, chunk.reshape(-1, shape[1]))
    if not torch.isfinite(pixels_last).all():
        return None
    return out.copy_(pixels_last.permute(0, 3, 1, 2))


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
    """``conv2d(pad(x), resize(weight, pull_size), bias, stride, 0, dilation, groups)`` in
    :func:`output_format`.

    ``resize`` is bilinear with ``align_corners=True``; ``padding`` is (top, bottom, left, right)
    zeros (negative: cropped). The pull branch passes the negated push kernel and bias. Where the
    C form's result is not finite it is recomputed by the definition, whose infinities and NaNs
    it then has.
    """
    args = (pull_size, stride, padding, dilation, groups)
    if c_kernel_runs(x, weight, pull_size, padding):
        check_bias(x, weight, bias)
        out = _c_forward(x, weight, bias, *args)
        if out is not None:
            return out
    return exact_pull_definition(x, weight, bias, *args).contiguous(memory_format=output_format(x))


def _definition_backward(grad, x, weight, args, need_input, need_weight):
    _, vjp = torch.func.vjp(lambda t, w: exact_pull_definition(t, w, None, *args), x, weight)
    grad_x, grad_w = vjp(grad)
    return grad_x if need_input else None, grad_w if need_weight else None


def _c_backward(grad, x, weight, args, need_input, need_weight):
    """The C form's gradients; None where one is not finite."""
    groups = args[-1]
    x = x.contiguous(memory_format=_input_format(x.shape[1], groups))
    kernels = _Kernels(x, weight, *args, CHUNK_BYTES)
    out_channels, group_channels, sh, sw = weight.shape
    grad = grad.permute(0, 2, 3, 1).contiguous()  # [N, Ho, Wo, O]
    mixing = _mixing_weight(weight, groups)  # [groups, K, O/groups]
    grad_x = torch.empty_like(x, memory_format=torch.channels_last) if need_input else None
    grad_mixing = torch.zeros_like(mixing) if need_weight else None
    buffer = kernels.buffer()
    for block in kernels.blocks(x.shape[0]):
        n, images, row, rows, col, cols = block
        grad_out = grad[n : n + images, row : row + rows, col : col + cols]
        grad_out = grad_out.reshape(-1, groups, out_channels // groups).transpose(0, 1)
        pixels = grad_out.shape[1]
        if need_weight:
            maps = kernels.maps(x, buffer, block).unflatten(1, (groups, -1)).transpose(0, 1)
            grad_mixing.baddbmm_(maps.transpose(1, 2), grad_out)  # [g, K, O/g]
        if need_input:
            grad_maps = buffer[: pixels * kernels.maps_per_pixel].view(pixels, -1)
            if groups == 1:
                torch.mm(grad_out[0], mixing[0].T, out=grad_maps)
            else:
                mixed = torch.bmm(grad_out, mixing.transpose(1, 2))  # [g, P, K]
                grad_maps.view(pixels, groups, -1).copy_(mixed.transpose(0, 1))
            kernels.spread(grad_maps, grad_x, block)
    if need_weight:
        grad_w = grad_mixing.view(groups, sh, sw, group_channels, -1).permute(0, 4, 3, 1, 2)
        grad_w = grad_w.reshape(out_channels, group_channels, sh, sw).contiguous()
        if not torch.isfinite(grad_w).all():
            return None
    else:
        grad_w = None
    if need_input and not torch.isfinite(grad_x).all():
        return None
    return grad_x, grad_w


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
    """Gradients of :func:`exact_pull` for ``x`` (in :func:`output_format` of ``x``) and
    ``weight`` (contiguous), empty where not needed; by the definition where the C form's are
    not finite."""
    args = (pull_size, stride, padding, dilation, groups)
    grads = None
    if c_kernel_runs(x, weight, pull_size, padding):
        grads = _c_backward(grad, x, weight, args, need_input, need_weight)
    if grads is None:
        grads = _definition_backward(grad, x, weight, args, need_input, need_weight)
    grad_x, grad_w = grads
    empty = x.new_empty(0)
    grad_x = empty if grad_x is None else grad_x.contiguous(memory_format=output_format(x))
    return grad_x, empty if grad_w is None else grad_w.contiguous()


@exact_pull.register_fake
def _(x, weight, bias, pull_size, stride, padding, dilation, groups):
    shape = _output_shape(x, weight, pull_size, stride, padding, dilation)
    return _empty_output(x, *shape)


@exact_pull_backward.register_fake
def _(grad, x, weight, pull_size, stride, padding, dilation, groups, need_input, need_weight):
    grad_x = torch.empty_like(x, memory_format=output_format(x)) if need_input else x.new_empty(0)
    return grad_x, (torch.empty_like(weight, memory_format=torch.contiguous_format)
                    if need_weight else x.new_empty(0))  # fmt: skip


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, *ctx.args = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, grad: Tensor):
    x, weight = ctx.saved_tensors
    need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
    if torch.is_grad_enabled():  # create_graph=True
        pull = exact_pull_definition(x, weight, None, *ctx.args)
        grad_x, grad_w = graph_gradients([pull], [grad], [x, weight], [need_input, need_weight])
    else:
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
    taps_v, taps_h = nonzero_taps(sh, ph), nonzero_taps(sw, pw)  # over all a, b
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
