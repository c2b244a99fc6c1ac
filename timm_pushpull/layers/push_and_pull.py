"""Push and exact pull of a stride-1 layer from one matrix product, on the CPU.

A convolution is a sum over its taps, ``x * k = sum_ab shift_ab(z_ab)`` with the per-tap products
``z_ab = k[:, :, a, b] . x`` (a 1x1 convolution each). The pull kernel of Strisciuglio et al.
(2020) is the push kernel resized with ``align_corners=True``, ``resize(k) = U_v k U_h^T``, so

    x * resize(k) = sum_ab (u_a u_b^T) * z_ab

the same products, smoothed instead of shifted. One GEMM (the push convolution's multiply-adds)
therefore feeds both branches, and the pull costs only the smoothing of ``z``: about
``taps_v * s_w + taps_h`` multiply-adds per output value (44 for 3x3 -> 7x7), where the direct pull
costs ``p_h * p_w * C_in`` and the separable maps of :mod:`.exact_pull` a second GEMM. The C kernel
(``csrc/push_pull_taps.c``) computes ``z`` a few rows at a time in a bounded scratch (tiles of
columns where whole rows would not fit), sums each row along once into a ring, and writes each
output row once, in the layout ``nn.Conv2d`` gives; it can also apply the rectified inhibition.

Three ``torch.library`` custom ops: ``push_and_pull`` (both pre-activations, with an autograd
formula: the push conv's and the pull's own backward; for the variants that need both),
``push_pull_train`` (``relu(push) - alpha * relu(pull)`` with an autograd formula: the kernel
keeps a one-byte mask of the ReLUs that pass a gradient, and the backward pass masks the
response's gradient as it reads it) and ``push_pull_response`` (the same, inference only). They
cover stride 1, no dilation, one group; the layer uses them where :mod:`.exact_path` picks them. Where the C kernel cannot run (not float32/float64 CPU
tensors with the MKL that PyTorch ships, a scratch that would not fit) or its result is not
finite, the ops compute the two branches apart, by the definition where that has other
infinities or NaNs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode
from torch.utils.flop_counter import register_flop_formula

from .. import native
from .exact_pull import (
    blas_gemm,
    check_bias,
    check_output_size,
    exact_pull,
    exact_pull_backward,
    exact_pull_definition,
    graph_gradients,
    interpolation_taps,
    kernel_gemm,
    nonzero_taps,
    output_format,
    scratch_buffer,
)
from .exact_pull import c_kernel_runs as c_pull_runs

_SUFFIX = {torch.float32: "float", torch.float64: "double"}
# Input pixels per GEMM call, at least: one 32-pixel row is too short a product, and more than a
# few rows of products outgrow a core's cache before they are summed (BENCHMARKS.md, "Shared form
# (eval) vs conv, by input pixels per GEMM call", run 15).
GEMM_PIXELS = 256
# Each thread's scratch: rows of products and the ring of their sums along the row (forward), or
# the products' gradient (backward). Layers whose rows do not fit take fewer rows per GEMM, then
# tiles of columns; the tiles of the forward recompute the columns their neighbours share, so a
# layer whose tiles would be narrower than MIN_TILE_COLUMNS and twice those shared columns runs its
# branches apart (BENCHMARKS.md, "Memory of one exact layer call").
SCRATCH_BYTES_PER_THREAD = 8 << 20
MIN_TILE_COLUMNS = 16


def _kernel(dtype: torch.dtype, backward: bool = False):
    name = f"push_pull_taps{'_backward' if backward else ''}_{_SUFFIX[dtype]}"
    return native.function("push_pull_taps", name)


def _reach(sizes: tuple[int, int], paddings: tuple[int, int]) -> tuple[int, int]:
    """``(low, high)``: the input offsets, relative to an output pixel, that push (kernel size and
    padding first) and pull read along one axis."""
    (s, p), (top, pull_top) = sizes, paddings
    return min(-top, -pull_top), max(s - 1 - top, p - 1 - pull_top)


class Plan(NamedTuple):
    """How the C kernel covers one call: GEMM rows, ring rows, tile columns, scratch per thread
    (elements); ``fits`` is False where no plan keeps the scratch within the budget."""

    fits: bool
    gemm_rows: int
    ring_rows: int
    tile_cols: int
    per_thread: int


def plan(x_shape, weight_shape, pull_size, push_padding, pull_padding, itemsize: int,
         backward: bool = False, rings: bool = False) -> Plan:  # fmt: skip
    """The :class:`Plan` of a call (forward, or ``backward``, with rings of the outputs' gradients
    if ``rings``: NCHW gradients, or the response's)."""
    geometry = (tuple(x_shape), tuple(weight_shape), tuple(pull_size), tuple(push_padding))
    return _plan(*geometry, tuple(pull_padding), itemsize, backward, rings,
                 SCRATCH_BYTES_PER_THREAD, GEMM_PIXELS)  # fmt: skip


@functools.lru_cache(maxsize=256)
def _plan(x_shape, weight_shape, pull_size, push_padding, pull_padding, itemsize, backward, rings,
          budget_bytes, gemm_pixels) -> Plan:  # fmt: skip
    _, _, height, width = x_shape
    out_channels, _, sh, sw = weight_shape
    out_w = width + 2 * push_padding[1] - sw + 1
    low, high = _reach((sh, pull_size[0]), (push_padding[0], pull_padding[0]))
    col_low, col_high = _reach((sw, pull_size[1]), (push_padding[1], pull_padding[2]))
    pixel, budget = sh * sw * out_channels, budget_bytes // itemsize
    gemm_rows, tile_cols = max(1, min(height, gemm_pixels // width)), width if backward else out_w
    if out_w < 1 or height + 2 * push_padding[0] < sh:
        return Plan(False, gemm_rows, 0, tile_cols, 0)
    while True:
        if backward:  # and rings of the outputs' gradients' rows, channels-last
            ring_rows, ring_width = 0, min(width, tile_cols)
            per_thread = gemm_rows * ring_width * pixel
            per_thread += (ring_width + pull_size[1] - 1) * sh * out_channels
            grad_width = min(out_w, ring_width + col_high - col_low)
            per_thread += 2 * (high - low + 1) * grad_width * out_channels * rings
        else:
            ring_rows = high - low + 1
            tiled = tile_cols < out_w
            ring_width = min(width, tile_cols + col_high - col_low) if tiled else width
            per_thread = gemm_rows * ring_width * pixel
            per_thread += (2 * ring_rows * sh + 2) * tile_cols * out_channels
        if per_thread <= budget:
            return Plan(True, gemm_rows, ring_rows, tile_cols, per_thread)
        if gemm_rows > 1:
            gemm_rows = max(1, gemm_rows // 2)
            continue
        halo = 0 if backward else col_high - col_low
        narrowest = MIN_TILE_COLUMNS if backward else max(MIN_TILE_COLUMNS, 2 * halo)
        if tile_cols <= narrowest:
            return Plan(False, gemm_rows, ring_rows, tile_cols, per_thread)
        tile_cols = max(narrowest, tile_cols // 2)


@functools.cache
def _c_ready(dtype: torch.dtype) -> bool:
    """Whether the shared C kernel and the MKL GEMM it calls exist (with the C kernels on) and
    the kernel's vector code serves this CPU: its generic code takes longer than the branches
    apart (BENCHMARKS.md, run 15)."""
    if blas_gemm(dtype) is None or _kernel(dtype) is None:
        return False
    return bool(native.function("push_pull_taps", "taps_vector_code")())


def c_kernel_runs(
    x: Tensor, weight: Tensor, pull_size, push_padding, pull_padding, symbolic: bool = False
) -> bool:
    """Whether the shared ops run the C kernel for these tensors (else they compute the branches
    apart): the exact pull's C conditions, the MKL that PyTorch ships, and scratch within the
    budget (``symbolic``: not checked, for graphs whose op decides when it runs)."""
    if not c_pull_runs(x, weight, pull_size, pull_padding, symbolic):
        return False
    if symbolic:
        return True
    shapes = (x.shape, weight.shape, pull_size, push_padding, pull_padding, x.element_size())
    return _c_ready(x.dtype) and plan(*shapes).fits


def kernel_settings() -> tuple:
    """What besides a call's tensors and geometry decides whether the C kernel runs it: the C
    kernels switched on, and the scratch budget and GEMM rows its plan is made with."""
    return native.native_enabled(), SCRATCH_BYTES_PER_THREAD, GEMM_PIXELS, MIN_TILE_COLUMNS


def _output_shape(x: Tensor, weight: Tensor, push_padding) -> tuple[int, int, int, int]:
    (sh, sw), (top, left) = weight.shape[-2:], push_padding
    check_output_size((x.shape[2] + 2 * top, x.shape[3] + 2 * left), (sh, sw))
    return (
        x.shape[0],
        weight.shape[0],
        x.shape[2] + 2 * top - sh + 1,
        x.shape[3] + 2 * left - sw + 1,
    )


def _pull_output(x_shape, pull_size, pull_padding) -> tuple[int, int]:
    top, bottom, left, right = pull_padding
    return x_shape[2] + top + bottom - pull_size[0] + 1, x_shape[3] + left + right - pull_size[
        1
    ] + 1


def geometry_agrees(x_shape, weight_shape, pull_size, push_padding, pull_padding) -> bool:
    """Whether a 4-D push kernel reads the input's channels and its output has the pull's size
    (what :func:`_check_geometry` raises for), without raising."""
    if len(weight_shape) != 4 or weight_shape[1] != x_shape[1]:
        return False
    (sh, sw), (top, left) = weight_shape[-2:], push_padding
    push_output = (x_shape[2] + 2 * top - sh + 1, x_shape[3] + 2 * left - sw + 1)
    return _pull_output(x_shape, pull_size, pull_padding) == push_output


def _check_geometry(x, weight, pull_size, push_padding, pull_padding) -> None:
    if weight.dim() != 4 or weight.shape[1] != x.shape[1]:
        raise RuntimeError(  # as F.conv2d (one group)
            f"Given groups=1, weight of size {list(weight.shape)}, expected input"
            f"{list(x.shape)} to have {weight.shape[1] if weight.dim() > 1 else '?'} channels, "
            f"but got {x.shape[1]} channels instead"
        )
    pull_h, pull_w = _pull_output(x.shape, pull_size, pull_padding)
    if (pull_h, pull_w) != _output_shape(x, weight, push_padding)[2:]:
        raise ValueError(
            f"push_and_pull: the pull padding {list(pull_padding)} gives a {pull_h}x{pull_w} output, "
            f"the push padding {list(push_padding)} a different one"
        )


def _check_alpha(alpha: Tensor, weight: Tensor) -> None:
    """The C kernel reads one alpha, or one per output channel, from the weight's device: any
    other count would read past the tensor, another device's memory is not the CPU's."""
    if alpha.numel() not in (1, weight.shape[0]):
        raise ValueError(
            f"alpha must hold 1 or {weight.shape[0]} (out_channels) values, got shape "
            f"{list(alpha.shape)}"
        )
    if alpha.device != weight.device:
        raise ValueError(f"alpha is on {alpha.device}, the push weight on {weight.device}")


def _planar(x: Tensor) -> bool:
    """Whether the kernel reads ``x`` and writes its outputs NCHW (else channels-last)."""
    return output_format(x) == torch.contiguous_format


def _empty_output(x: Tensor, weight: Tensor, push_padding) -> Tensor:
    return torch.empty(
        _output_shape(x, weight, push_padding),
        dtype=x.dtype,
        device=x.device,
        memory_format=output_format(x),
    )


def _definition(
    x, weight, bias, pull_size, push_padding, pull_padding, pull_op=exact_pull_definition
) -> tuple[Tensor, Tensor]:
    """Push and pull by the paper's definition: the push convolution and the pull computed by
    ``pull_op`` (by default the resized kernel's convolution, differentiable twice, for
    ``create_graph``)."""
    push = F.conv2d(x, weight, bias, 1, list(push_padding))
    pull_bias = None if bias is None else -bias
    pull = pull_op(x, -weight, pull_bias, list(pull_size), [1, 1], list(pull_padding), [1, 1], 1)
    return push, pull


def _branches_apart(
    x, weight, bias, pull_size, push_padding, pull_padding
) -> tuple[Tensor, Tensor]:
    """The push convolution and the exact pull op on its own, in the layout of ``x``."""
    push, pull = _definition(x, weight, bias, pull_size, push_padding, pull_padding, exact_pull)
    return push.contiguous(memory_format=output_format(x)), pull


def _threads(numel: int, pull_rows: int, tasks: int, available: int) -> int:
    # small inputs: waking threads would cost more than it saves
    return min(available if numel * pull_rows >= 1 << 16 else 1, tasks)


class KernelCall(NamedTuple):
    """A forward call of the C kernel for inputs of one shape and layout: its arguments besides the
    tensors' memory, made once (:func:`_kernel_call`): making them on every call was a large part
    of a small layer's time (BENCHMARKS.md, run 17)."""

    # batch, channels, height, width, out_h, out_w, sh, sw, top, left, ph, pw
    sizes: tuple[int, ...]
    output_shape: tuple[int, int, int, int]
    taps: tuple[Tensor, Tensor]  # the interpolation taps, kept: the kernel reads their memory
    pull_corner: tuple[int, int]  # the pull's top and left padding
    out_channels: int
    schedule: tuple[int, int, int, int, bool]  # ring rows, GEMM rows, tile columns, bands, planar
    weights_size: int  # elements of the GEMM's weights at the scratch's start
    per_thread: int
    threads: int


@functools.lru_cache(maxsize=256)
def _kernel_call(x_shape, planar: bool, itemsize: int, weight_shape, pull_size, push_padding,
                 pull_padding, settings: tuple, threads_available: int) -> KernelCall:  # fmt: skip
    """The :class:`KernelCall` for these shapes (tuples) with the :func:`kernel_settings` and
    threads of the call (``settings``: for the cache, :func:`plan` reads them)."""
    batch, channels, height, width = x_shape
    out_channels, _, sh, sw = weight_shape
    (top, left), (ph, pw) = push_padding, pull_size
    out_h, out_w = height + 2 * top - sh + 1, width + 2 * left - sw + 1
    cover = plan(x_shape, weight_shape, pull_size, push_padding, pull_padding, itemsize)
    tiles = -(-out_w // cover.tile_cols)
    threads = _threads(batch * channels * height * width, ph, batch * out_h * tiles,
                       threads_available)  # fmt: skip
    bands = -(-threads // (batch * tiles))  # each band of rows recomputes the ring's first rows
    return KernelCall(
        sizes=(batch, channels, height, width, out_h, out_w, sh, sw, top, left, ph, pw),
        output_shape=(batch, out_channels, out_h, out_w),
        taps=(interpolation_taps(sh, ph), interpolation_taps(sw, pw)),
        pull_corner=(pull_padding[0], pull_padding[2]),
        out_channels=out_channels,
        schedule=(cover.ring_rows, cover.gemm_rows, cover.tile_cols, bands, planar),
        # cache lines apart from the threads' scratch
        weights_size=-(-out_channels * channels * sh * sw // 16) * 16,
        per_thread=cover.per_thread,
        threads=threads,
    )


def _prepared(x, weight, pull_size, push_padding, pull_padding):
    """``(x in its output layout, that layout, the KernelCall)`` of a forward call."""
    layout = output_format(x)
    x = x.contiguous(memory_format=layout)
    call = _kernel_call(
        x.shape, layout == torch.contiguous_format, x.element_size(), weight.shape,
        tuple(pull_size), tuple(push_padding), tuple(pull_padding), kernel_settings(),
        torch.get_num_threads(),
    )  # fmt: skip
    return x, layout, call


def _run_kernel(x, weight, bias, pull_size, push_padding, pull_padding, push, pull, alpha,
                mask=None, rectify_alpha: bool = False, prepared=None) -> bool:  # fmt: skip
    """Fill ``push`` and ``pull``, all in the layout of ``x``; or, when ``alpha`` (rectified by
    the kernel where ``rectify_alpha``), ``push`` with the response, and where ``mask`` is given,
    the mask of :class:`_Response` and ``pull`` (unless None) with the pull's pre-activation,
    channels-last. False where a result is not finite (the caller recomputes). ``prepared``:
    :func:`_prepared` of this call, where the caller made it."""
    check_bias(x, weight, bias)
    x, _, call = prepared or _prepared(x, weight, pull_size, push_padding, pull_padding)
    # the GEMM's weights (the kernel fills them from the push kernel) first, then the threads'
    scratch = scratch_buffer(call.weights_size + call.threads * call.per_thread, x.dtype)
    weights = scratch.data_ptr()
    bias = None if bias is None else bias.contiguous()
    if alpha is not None:
        alpha = alpha.contiguous()
    status = _kernel(x.dtype)(
        x.data_ptr(), push.data_ptr(), None if pull is None else pull.data_ptr(),
        None if mask is None else mask.data_ptr(), *call.sizes, call.taps[0].data_ptr(),
        call.taps[1].data_ptr(), *call.pull_corner, weight.data_ptr(), *weight.stride(), weights,
        None if bias is None else bias.data_ptr(), call.out_channels,
        None if alpha is None else alpha.data_ptr(), 0 if alpha is None else alpha.numel(),
        rectify_alpha, *call.schedule, weights + call.weights_size * x.element_size(), call.per_thread,
        kernel_gemm(x.dtype), call.threads,
    )  # fmt: skip
    if status == 1:
        raise RuntimeError("push-pull-taps C kernel: bad geometry")
    return status == 0


@torch.library.custom_op("timm_pushpull::push_and_pull", mutates_args=())
def push_and_pull(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    pull_size: list[int],
    push_padding: list[int],
    pull_padding: list[int],
) -> tuple[Tensor, Tensor]:
    """``(conv2d(x, k, b, padding=push_padding), exact_pull(x, -k, -b, pull_size, pull_padding))``.

    Stride 1, no dilation, one group; ``push_padding`` is (top, left), symmetric as ``nn.Conv2d``'s,
    ``pull_padding`` (top, bottom, left, right) zeros. Both outputs in the layout ``nn.Conv2d``
    gives (:func:`.exact_pull.output_format`); by the definition where the C form's results are
    not finite.
    """
    _check_geometry(x, weight, pull_size, push_padding, pull_padding)
    if c_kernel_runs(x, weight, pull_size, push_padding, pull_padding):
        push, pull = _empty_output(x, weight, push_padding), _empty_output(x, weight, push_padding)
        if _run_kernel(x, weight, bias, pull_size, push_padding, pull_padding, push, pull, None):
            return push, pull
    return _branches_apart(x, weight, bias, pull_size, push_padding, pull_padding)


@push_and_pull.register_fake
def _(x, weight, bias, pull_size, push_padding, pull_padding):
    return _empty_output(x, weight, push_padding), _empty_output(x, weight, push_padding)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, *ctx.args = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward_apart(x, weight, grad_push, grad_pull, pull_size, push_padding, pull_padding,
                    need_x: bool, need_weight: bool) -> list[Tensor | None]:  # fmt: skip
    """The two branches' own backward passes, summed (the definition's where the exact pull's
    is)."""
    grads: list[Tensor | None] = [None, None]
    if grad_push is not None:
        grads = list(
            torch.ops.aten.convolution_backward(
                grad_push, x, weight, None, [1, 1], list(push_padding), [1, 1], False, [0, 0], 1,
                [need_x, need_weight, False],
            )[:2]
        )  # fmt: skip
    if grad_pull is not None:
        args = (pull_size, [1, 1], pull_padding, [1, 1], 1)
        pull_x, pull_weight = exact_pull_backward(grad_pull, x, -weight, *args, need_x, need_weight)
        # the pull convolves with minus the resized kernel
        updates = (pull_x if need_x else None, -pull_weight if need_weight else None)
        for index, update in enumerate(updates):
            if update is not None:
                grads[index] = update if grads[index] is None else grads[index] + update
    return grads


class _Response(NamedTuple):
    """What the backward pass of :func:`push_pull_train` reads: the gradient of the response, the
    forward pass's mask (uint8, channels-last: bit 0 where the push's ReLU passes a gradient, bit 1
    the pull's) and the rectified alpha."""

    grad: Tensor
    mask: Tensor
    alpha: Tensor

    def branch_gradients(self) -> tuple[Tensor, Tensor]:
        """The gradients of push and pull, as PyTorch's ReLU and multiplication give them."""
        zero = self.grad.new_zeros(())
        grad_push = torch.where(self.mask & 1 != 0, self.grad, zero)
        pull = self.grad * -self.alpha.reshape(1, -1, 1, 1)
        return grad_push, torch.where(self.mask & 2 != 0, pull, zero)


def relu_mask(push: Tensor, pull: Tensor) -> Tensor:
    """The mask of :class:`_Response` for these pre-activations: a pre-activation > 0 or NaN
    passes its gradient (PyTorch's ``threshold_backward`` passes all but those <= 0)."""
    passes = [(~(t <= 0)).to(torch.uint8) for t in (push, pull)]
    return (passes[0] + 2 * passes[1]).contiguous(memory_format=torch.channels_last)


def _backward_shared(x, weight, grad_push, grad_pull, pull_size, push_padding, pull_padding,
                     need_x: bool, need_weight: bool,
                     response: _Response | None = None) -> list[Tensor | None] | None:  # fmt: skip
    """The transposed shared form: the products' gradient g (the transposed shift and smoothing
    of the outputs' gradients, built in cache; with ``response``, of the gradients the kernel
    forms from the response's) and two GEMMs, g @ k^T for x and x^T @ g for k. None where a
    gradient is not finite."""
    planar = _planar(x)
    x = x.contiguous(memory_format=output_format(x))
    batch, channels, height, width = x.shape
    out_channels, _, sh, sw = weight.shape
    grads = [g if g is None else g.contiguous(memory_format=output_format(x))
             for g in (grad_push, grad_pull)]  # fmt: skip
    out_h, out_w = _output_shape(x, weight, push_padding)[2:]
    weights = weight.permute(1, 2, 3, 0).reshape(channels, -1).contiguous()
    taps_v, taps_h = (interpolation_taps(s, p) for s, p in zip((sh, sw), pull_size))
    cover = plan(x.shape, weight.shape, pull_size, push_padding, pull_padding, x.element_size(),
                 backward=True, rings=planar or response is not None)  # fmt: skip
    if not cover.fits:
        if response is not None:
            grad_push, grad_pull = response.branch_gradients()
        return _backward_apart(x, weight, grad_push, grad_pull, pull_size, push_padding,
                               pull_padding, need_x, need_weight)  # fmt: skip
    saved = (None,) * 3
    if response is not None:
        saved = (response.grad.contiguous(memory_format=output_format(x)),
                 response.mask.contiguous(memory_format=torch.channels_last),
                 response.alpha.reshape(-1).expand(out_channels).to(x.dtype).contiguous())  # fmt: skip
    tiles = -(-width // cover.tile_cols)
    threads = _threads(x.numel(), pull_size[0], batch * height * tiles, torch.get_num_threads())
    bands = -(-threads // (batch * tiles))
    scratch = scratch_buffer(threads * cover.per_thread, x.dtype)
    grad_x = torch.empty_like(x) if need_x else None
    grad_weights = x.new_zeros(threads, *weights.shape) if need_weight else None

    def pointer(tensor: Tensor | None) -> int | None:
        return None if tensor is None else tensor.data_ptr()

    status = _kernel(x.dtype, backward=True)(
        x.data_ptr(), pointer(grads[0]), pointer(grads[1]), *(pointer(t) for t in saved),
        0 if response is None else saved[2].numel(), pointer(grad_x),
        pointer(grad_weights), batch, channels, height, width, out_h, out_w, sh, sw,
        *push_padding, *pull_size, taps_v.data_ptr(), taps_h.data_ptr(), pull_padding[0],
        pull_padding[2], weights.data_ptr(), out_channels, cover.gemm_rows, cover.tile_cols, bands,
        planar, scratch.data_ptr(), cover.per_thread, kernel_gemm(x.dtype), threads,
    )  # fmt: skip
    if status == 1:
        raise RuntimeError("push-pull-taps C kernel: bad geometry")
    if status == 2:
        return None
    if grad_weights is not None:
        grad_weights = grad_weights.sum(0).view(channels, sh, sw, out_channels)
        grad_weights = grad_weights.permute(3, 0, 1, 2).contiguous()
        if not torch.isfinite(grad_weights).all():
            return None
    return [grad_x, grad_weights]


def _op_gradients(x: Tensor, grad_x: Tensor | None, grad_weight: Tensor | None):
    """A backward op's outputs: ``x``'s gradient in its :func:`.exact_pull.output_format`, the
    weight's contiguous, empty where not needed."""
    empty = x.new_empty(0)
    grad_x = empty if grad_x is None else grad_x.contiguous(memory_format=output_format(x))
    return grad_x, empty if grad_weight is None else grad_weight.contiguous()


def _fake_gradients(x: Tensor, weight: Tensor, need_x: bool, need_weight: bool):
    """:func:`_op_gradients`' shapes and strides, for the backward ops' fake implementations."""
    grad_x = torch.empty_like(x, memory_format=output_format(x)) if need_x else x.new_empty(0)
    return grad_x, (torch.empty_like(weight, memory_format=torch.contiguous_format)
                    if need_weight else x.new_empty(0))  # fmt: skip


@torch.library.custom_op("timm_pushpull::push_and_pull_backward", mutates_args=())
def push_and_pull_backward(
    grad_push: Tensor | None,
    grad_pull: Tensor | None,
    x: Tensor,
    weight: Tensor,
    pull_size: list[int],
    push_padding: list[int],
    pull_padding: list[int],
    need_x: bool,
    need_weight: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`push_and_pull` for ``x`` (in its :func:`.exact_pull.output_format`)
    and ``weight`` (contiguous), empty where not needed; the branches' own where the C form's
    are not finite."""
    args = (x, weight, grad_push, grad_pull, pull_size, push_padding, pull_padding)
    grads = None
    if c_kernel_runs(x, weight, pull_size, push_padding, pull_padding):
        grads = _backward_shared(*args, need_x, need_weight)
    if grads is None:
        grads = _backward_apart(*args, need_x, need_weight)
    return _op_gradients(x, *grads)


@push_and_pull_backward.register_fake
def _(grad_push, grad_pull, x, weight, pull_size, push_padding, pull_padding, need_x, need_weight):
    return _fake_gradients(x, weight, need_x, need_weight)


def _backward(ctx, grad_push: Tensor | None, grad_pull: Tensor | None):
    x, weight = ctx.saved_tensors
    need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
    if torch.is_grad_enabled():  # create_graph=True
        outputs = _definition(x, weight, None, *ctx.args)
        grads = graph_gradients(outputs, [grad_push, grad_pull], [x, weight], [need_x, need_weight])
        grad_x, grad_weight = grads
    else:
        grad_x, grad_weight = push_and_pull_backward(
            grad_push, grad_pull, x, weight, *ctx.args, need_x, need_weight
        )
    grad_bias = None
    if need_bias:  # the push adds the bias, the pull subtracts it
        sums = [
            sign * g.sum((0, 2, 3))
            for sign, g in ((1, grad_push), (-1, grad_pull))
            if g is not None
        ]
        grad_bias = sum(sums[1:], sums[0])
    return (
        (grad_x if need_x else None),
        (grad_weight if need_weight else None),
        grad_bias,
        None,
        None,
        None,
    )


push_and_pull.register_autograd(_backward, setup_context=_setup_context)


def _channels_last_output(x: Tensor, weight: Tensor, push_padding, dtype=None) -> Tensor:
    return torch.empty(_output_shape(x, weight, push_padding), dtype=dtype or x.dtype,
                       device=x.device, memory_format=torch.channels_last)  # fmt: skip


@torch.library.custom_op("timm_pushpull::push_pull_train", mutates_args=())
def push_pull_train(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: Tensor,
    pull_size: list[int],
    push_padding: list[int],
    pull_padding: list[int],
    keep_pull: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``relu(push) - alpha * relu(pull)`` of :func:`push_and_pull` for training, with what its
    backward pass reads: ``(response, mask, pull)``, the response in the layout ``nn.Conv2d``
    gives, the mask of the ReLUs that pass a gradient (uint8, bit 0 push, bit 1 pull) and, if
    ``keep_pull`` (for a learned alpha's gradient), the pull's pre-activation, else an empty
    tensor; both channels-last and not differentiable. ``alpha``: the rectified one, one value or
    one per output channel. One pass of the kernel writes them, and the backward pass forms the
    branches' gradients as it reads the mask, where the ReLUs and the inhibition apart would each
    take a pass over the activations (BENCHMARKS.md, "Exact layer in training: the response from
    one op"). By the definition where the C form's results are not finite."""
    _check_geometry(x, weight, pull_size, push_padding, pull_padding)
    _check_alpha(alpha, weight)
    if c_kernel_runs(x, weight, pull_size, push_padding, pull_padding):
        response = _empty_output(x, weight, push_padding)
        mask = _channels_last_output(x, weight, push_padding, torch.uint8)
        pull = _channels_last_output(x, weight, push_padding) if keep_pull else x.new_empty(0)
        rectified = alpha.reshape(-1).to(x.dtype)
        args = (pull_size, push_padding, pull_padding, response, pull if keep_pull else None)
        if _run_kernel(x, weight, bias, *args, rectified, mask=mask):
            return response, mask, pull
    push, pull = _branches_apart(x, weight, bias, pull_size, push_padding, pull_padding)
    response = torch.addcmul(push.relu(), alpha.reshape(1, -1, 1, 1), pull.relu(), value=-1.0)
    kept = pull.contiguous(memory_format=torch.channels_last) if keep_pull else x.new_empty(0)
    return response, relu_mask(push, pull), kept


@push_pull_train.register_fake
def _(x, weight, bias, alpha, pull_size, push_padding, pull_padding, keep_pull):
    mask = _channels_last_output(x, weight, push_padding, torch.uint8)
    pull = _channels_last_output(x, weight, push_padding) if keep_pull else x.new_empty(0)
    return _empty_output(x, weight, push_padding), mask, pull


def _setup_train_context(ctx, inputs, output) -> None:
    x, weight, bias, alpha, *ctx.args, _ = inputs
    _, mask, pull = output
    ctx.save_for_backward(x, weight, alpha, mask, pull, bias)
    ctx.mark_non_differentiable(mask, pull)
    # no zero-filled gradients of the mask and the pull, activation-sized passes
    ctx.set_materialize_grads(False)


@torch.library.custom_op("timm_pushpull::push_pull_train_backward", mutates_args=())
def push_pull_train_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    alpha: Tensor,
    mask: Tensor,
    pull_size: list[int],
    push_padding: list[int],
    pull_padding: list[int],
    need_x: bool,
    need_weight: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`push_pull_train`'s response for ``x`` (in its
    :func:`.exact_pull.output_format`) and ``weight`` (contiguous), empty where not needed; the
    branches' own where the C form's are not finite."""
    response = _Response(grad, mask, alpha)
    args = (x, weight, None, None, pull_size, push_padding, pull_padding, need_x, need_weight)
    grads = None
    if c_kernel_runs(x, weight, pull_size, push_padding, pull_padding):
        grads = _backward_shared(*args, response=response)
    if grads is None:
        grad_push, grad_pull = response.branch_gradients()
        grads = _backward_apart(x, weight, grad_push, grad_pull, *args[4:])
    return _op_gradients(x, *grads)


@push_pull_train_backward.register_fake
def _(grad, x, weight, alpha, mask, pull_size, push_padding, pull_padding, need_x, need_weight):
    return _fake_gradients(x, weight, need_x, need_weight)


def _train_backward(ctx, grad: Tensor, _mask: Tensor | None, _pull: Tensor | None):
    x, weight, alpha, mask, pull, bias = ctx.saved_tensors
    need_x, need_weight, need_bias, need_alpha = ctx.needs_input_grad[:4]
    grad_x = grad_weight = grad_bias = grad_alpha = None
    if grad is None:  # the response was not used
        return None, None, None, None, None, None, None, None
    if torch.is_grad_enabled():  # create_graph=True: the mask is the definition's but for ties
        push, pull = _definition(x, weight, bias, *ctx.args)
        response = push.relu() - alpha.reshape(1, -1, 1, 1) * pull.relu()
        needs = [need_x, need_weight, need_bias, need_alpha]
        grads = graph_gradients([response], [grad], [x, weight, bias, alpha], needs)
        return (*grads, None, None, None, None)
    if need_x or need_weight:
        grad_x, grad_weight = push_pull_train_backward(
            grad, x, weight, alpha, mask, *ctx.args, need_x, need_weight
        )
    if need_bias:  # the push adds the bias, the pull subtracts it
        grad_push, grad_pull = _Response(grad, mask, alpha).branch_gradients()
        grad_bias = grad_push.sum((0, 2, 3)) - grad_pull.sum((0, 2, 3))
    if need_alpha:  # the response subtracts alpha * relu(pull)
        if pull.numel() == 0:
            raise RuntimeError("push_pull_train: alpha's gradient needs keep_pull=True")
        inhibition = -(grad * pull.relu())
        grad_alpha = inhibition.sum() if alpha.dim() == 0 else inhibition.sum_to_size(alpha.shape)
    return (
        grad_x if need_x else None,
        grad_weight if need_weight else None,
        grad_bias,
        grad_alpha,
        None,
        None,
        None,
        None,
    )


push_pull_train.register_autograd(_train_backward, setup_context=_setup_train_context)


def _response(x, weight, bias, alpha, pull_size, push_padding, pull_padding) -> Tensor:
    _check_geometry(x, weight, pull_size, push_padding, pull_padding)
    _check_alpha(alpha, weight)
    if c_kernel_runs(x, weight, pull_size, push_padding, pull_padding):
        response = _empty_output(x, weight, push_padding)
        args = (
            pull_size,
            push_padding,
            pull_padding,
            response,
            None,
            alpha.reshape(-1).to(x.dtype),
        )
        if _run_kernel(x, weight, bias, *args):
            return response
    return _response_apart(x, weight, bias, alpha, pull_size, push_padding, pull_padding)


def _response_apart(x, weight, bias, alpha, pull_size, push_padding, pull_padding) -> Tensor:
    push, pull = _branches_apart(x, weight, bias, pull_size, push_padding, pull_padding)
    return push.relu_().addcmul_(alpha.reshape(1, -1, 1, 1), pull.relu_(), value=-1.0)


def eager_response(
    x: Tensor, weight: Tensor, bias: Tensor | None, alpha: Tensor, geometry: tuple
) -> Tensor:
    """:func:`inference_response` with ``relu(alpha)`` of an eager call that
    :func:`.exact_path.eager_shared` sent to the C kernel (which rectifies ``alpha``: one operator
    fewer), without the checks its layer answered at construction (``geometry``, its
    ``kernel_geometry``; alpha's count) and that choice did (the kernel runs for these tensors);
    dispatch modes (the FLOP counter) still get the op."""
    pull_size, push_padding, pull_padding = geometry
    _check_alpha(alpha, weight)  # the layer's, unless replaced since
    if _get_current_dispatch_mode() is not None:
        return torch.ops.timm_pushpull.push_pull_response(
            x, weight, bias, F.relu(alpha), pull_size, push_padding, pull_padding
        )
    prepared = _prepared(x, weight, pull_size, push_padding, pull_padding)
    _, layout, call = prepared
    # on the CPU whatever torch.set_default_device says: the kernel writes it
    response = torch.empty(call.output_shape, dtype=x.dtype, device="cpu", memory_format=layout)
    kernel_alpha = alpha if alpha.dtype == x.dtype else alpha.to(x.dtype)
    if _run_kernel(x, weight, bias, pull_size, push_padding, pull_padding, response, None,
                   kernel_alpha, rectify_alpha=True, prepared=prepared):  # fmt: skip
        return response
    return _response_apart(x, weight, bias, F.relu(alpha), pull_size, push_padding, pull_padding)


@torch.library.custom_op("timm_pushpull::push_pull_response", mutates_args=())
def push_pull_response(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: Tensor,
    pull_size: list[int],
    push_padding: list[int],
    pull_padding: list[int],
) -> Tensor:
    """``relu(push) - alpha * relu(pull)`` of :func:`push_and_pull` (``alpha``: one value or one
    per output channel, used as given), in the layout ``nn.Conv2d`` gives; for inference, no
    autograd formula. By the definition where the C form's result is not finite."""
    return _response(x, weight, bias, alpha, pull_size, push_padding, pull_padding)


def inference_response(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: Tensor,
    pull_size: list[int],
    push_padding: list[int],
    pull_padding: list[int],
) -> Tensor:
    """:func:`push_pull_response`; in eager mode without the dispatcher, whose overhead per call
    is a large part of a small layer's time (BENCHMARKS.md, exact pull run 10). Compiled and
    exported graphs get the op, and so do dispatch modes (the FLOP counter)."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return torch.ops.timm_pushpull.push_pull_response(
            x, weight, bias, alpha, pull_size, push_padding, pull_padding
        )
    return _response(x, weight, bias, alpha, pull_size, push_padding, pull_padding)


@push_pull_response.register_fake
def _(x, weight, bias, alpha, pull_size, push_padding, pull_padding):
    return _empty_output(x, weight, push_padding)


def _smoothing_macs(weight_shape, pull_size, out_shape) -> int:
    (sh, sw), (ph, pw) = weight_shape[-2:], pull_size
    taps_v, taps_h = nonzero_taps(sh, ph), nonzero_taps(sw, pw)
    batch, out_channels, out_h, out_w = out_shape
    return batch * out_channels * out_h * out_w * (taps_v * sw + taps_h)


def _push_macs(x_shape, weight_shape, out_shape) -> int:
    batch, _, out_h, out_w = out_shape
    out_channels, channels, sh, sw = weight_shape
    return batch * out_h * out_w * out_channels * channels * sh * sw


@register_flop_formula(torch.ops.timm_pushpull.push_and_pull)
def _flops(
    x_shape, weight_shape, bias_shape, pull_size, push_padding, pull_padding, *, out_shape, **kwargs
) -> int:
    """The GEMM (the push conv's multiply-adds) and the pull's smoothing of its products."""
    out = out_shape[0]
    return 2 * (
        _push_macs(x_shape, weight_shape, out) + _smoothing_macs(weight_shape, pull_size, out)
    )


@register_flop_formula(torch.ops.timm_pushpull.push_pull_response)
def _response_flops(
    x_shape,
    weight_shape,
    bias_shape,
    alpha_shape,
    pull_size,
    push_padding,
    pull_padding,
    *,
    out_shape,
    **kwargs,
) -> int:
    return 2 * (
        _push_macs(x_shape, weight_shape, out_shape)
        + _smoothing_macs(weight_shape, pull_size, out_shape)
    )


@register_flop_formula(torch.ops.timm_pushpull.push_pull_train)
def _train_flops(
    x_shape,
    weight_shape,
    bias_shape,
    alpha_shape,
    pull_size,
    push_padding,
    pull_padding,
    keep_pull,
    *,
    out_shape,
    **kwargs,
) -> int:
    return _response_flops(x_shape, weight_shape, bias_shape, alpha_shape, pull_size,
                           push_padding, pull_padding, out_shape=out_shape[0])  # fmt: skip
