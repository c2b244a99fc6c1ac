"""Push and exact pull of a stride-1 layer from one matrix product, on the CPU.

A convolution is a sum over its taps, ``x * k = sum_ab shift_ab(z_ab)`` with the per-tap products
``z_ab = k[:, :, a, b] . x`` (a 1x1 convolution each). The pull kernel of Strisciuglio et al.
(2020) is the push kernel resized with ``align_corners=True``, ``resize(k) = U_v k U_h^T``, so

    x * resize(k) = sum_ab (u_a u_b^T) * z_ab

the same products, smoothed instead of shifted. One GEMM (the push convolution's multiply-adds)
therefore feeds both branches, and the pull costs only the smoothing of ``z``: about
``taps_v * s_w + taps_h`` multiply-adds per output value (44 for 3x3 -> 7x7), where the direct pull
costs ``p_h * p_w * C_in`` and the separable maps of :mod:`.exact_pull` a second GEMM. The C kernel
(``csrc/push_pull_taps.c``) computes ``z`` a few rows at a time into a ring that stays in a core's
cache and writes each output row once; in eval it can also apply the rectified inhibition.

Two ``torch.library`` custom ops: ``push_and_pull`` (both pre-activations, with an autograd
formula: the push conv's and the pull's own backward) and ``push_pull_response`` (inference only,
``relu(push) - alpha * relu(pull)``). They cover stride 1, no dilation, one group; the layer uses
them where :func:`shared_taps_pay` says so and the C kernel runs (float32/float64 CPU tensors with
the MKL that PyTorch ships), and elsewhere computes the two branches separately.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode
from torch.utils.flop_counter import register_flop_formula

from .. import native
from .exact_pull import (
    _scratch_buffer,
    blas_gemm,
    exact_pull,
    exact_pull_backward,
    interpolation_matrix,
    interpolation_taps,
    native_available,
)
from .pull import MAP_COST_CHANNELS, separable_pays

_INT, _LONG, _PTR = ctypes.c_int, ctypes.c_long, ctypes.c_void_p
_SIGNATURE = [_PTR, _PTR, _PTR, _LONG] + [_INT] * 11 + [_PTR, _PTR, _INT, _INT, _PTR, _PTR, _INT]
_SIGNATURE += [_PTR, _INT, _INT, _INT, _INT, _INT, _PTR, _LONG, _PTR, _INT]
_BACKWARD_SIGNATURE = [_PTR] * 5 + [_LONG] + [_INT] * 11 + [_PTR, _PTR, _INT, _INT, _PTR, _INT]
_BACKWARD_SIGNATURE += [_INT, _INT, _PTR, _LONG, _PTR, _INT]
_SUFFIX = {torch.float32: "float", torch.float64: "double"}
# Input pixels per GEMM call, at least: one 32-pixel row is too short a product for MKL.
GEMM_PIXELS = 512
# What the shared form adds to the push convolution, per output value: the push's shifted sum
# (s_h*s_w additions) and the pull's smoothing (taps_v*s_w + taps_h multiply-adds), each costing
# about SHARED_TAP_COST multiply-adds of a convolution (its operands come from the cache-resident
# ring of products instead of registers). Side by side on the 2-core x86 VM (BENCHMARKS.md, exact
# pull run 10, eval; shared / apart, in convs): 16->16 3x3 2.1 / 4.2, 64->64 1.4 / 2.6, 16->16 5x5
# 2.9 / 5.1, 20->50 5x5 1.5 / 2.5, and at the boundary, where the products far outnumber the
# inputs: 4->16 3x3 3.4 / 3.7 (picked), 6->16 5x5 4.5 / 4.3 (picked, 5% slower), the CIFAR 3->16
# stem 3.5 / 3.6 (not picked, a tie) and LeNet's 1->6 5x5 15 / 4.2 (not picked). In training the
# boundary lies a little higher (4->16 and 6->16 train 20% slower shared); one rule serves both.
SHARED_TAP_COST = 3.0


def _kernel(dtype: torch.dtype, backward: bool = False):
    name = f"push_pull_taps{'_backward' if backward else ''}_{_SUFFIX[dtype]}"
    signature = _BACKWARD_SIGNATURE if backward else _SIGNATURE
    return native.function("push_pull_taps", name, signature, ctypes.c_int)


def shared_taps_apply(stride, dilation, groups: int, pull_scales: int) -> bool:
    """Whether the layer's geometry has the form the shared-taps ops compute."""
    return (
        tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1 and pull_scales == 1
    )


def shared_taps_pay(
    in_channels: int, out_channels: int, kernel_size: tuple[int, int], pull_size: tuple[int, int]
) -> bool:
    """Whether the shared form beats push convolution + the exact pull's best C form on the CPU
    (both per output value, in a convolution's multiply-adds)."""
    (sh, sw), (ph, pw) = kernel_size, pull_size
    taps_v = int((interpolation_taps(sh, ph) != 0).sum())
    taps_h = int((interpolation_taps(sw, pw) != 0).sum())
    added = SHARED_TAP_COST * (sh * sw + taps_v * sw + taps_h)
    maps, direct = sh * sw * (MAP_COST_CHANNELS + out_channels), ph * pw * out_channels
    return added < in_channels / out_channels * min(maps, direct)


def runs_shared_taps(x: Tensor, weight: Tensor) -> bool:
    """Whether a call with ``x`` runs the C kernel (else the ops compute the branches apart)."""
    return (
        native_available(x.device, x.dtype)
        and weight.dtype == x.dtype
        and x.numel() > 0
        and blas_gemm(x.dtype) is not None
        and _kernel(x.dtype) is not None
    )


def _output_shape(x: Tensor, weight: Tensor, push_padding) -> tuple[int, int, int, int]:
    (sh, sw), (top, left) = weight.shape[-2:], push_padding
    return (
        x.shape[0],
        weight.shape[0],
        x.shape[2] + 2 * top - sh + 1,
        x.shape[3] + 2 * left - sw + 1,
    )


def _check_geometry(x, weight, pull_size, push_padding, pull_padding) -> None:
    top, bottom, left, right = pull_padding
    pull_h = x.shape[2] + top + bottom - pull_size[0] + 1
    pull_w = x.shape[3] + left + right - pull_size[1] + 1
    if (pull_h, pull_w) != _output_shape(x, weight, push_padding)[2:]:
        raise ValueError(
            f"push_and_pull: the pull padding {list(pull_padding)} gives a {pull_h}x{pull_w} output, "
            f"the push padding {list(push_padding)} a different one"
        )


def _planar(x: Tensor) -> bool:
    """Whether ``x`` is NCHW (and not also channels-last, as with one channel or one pixel)."""
    return x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)


def _empty_output(x: Tensor, weight: Tensor, push_padding, planar: bool = False) -> Tensor:
    return torch.empty(
        _output_shape(x, weight, push_padding),
        dtype=x.dtype,
        device=x.device,
        memory_format=torch.contiguous_format if planar else torch.channels_last,
    )


def _branches_apart(
    x, weight, bias, pull_size, push_padding, pull_padding
) -> tuple[Tensor, Tensor]:
    push = F.conv2d(x, weight, bias, 1, list(push_padding))
    pull_bias = None if bias is None else -bias
    pull = exact_pull(x, -weight, pull_bias, list(pull_size), [1, 1], list(pull_padding), [1, 1], 1)
    return push.contiguous(memory_format=torch.channels_last), pull


def _run_kernel(
    x, weight, bias, pull_size, push_padding, pull_padding, push, pull, alpha, planar=False
) -> None:
    """Fill ``push`` and ``pull``, or ``push`` with the response when ``alpha``; all channels-last,
    or all NCHW when ``planar``."""
    x = x.contiguous(memory_format=torch.contiguous_format if planar else torch.channels_last)
    batch, channels, height, width = x.shape
    out_channels, _, sh, sw = weight.shape
    out_h, out_w = push.shape[-2:]
    # weights[c, (a*sw + b)*O + o] = k[o, c, a, b]: the GEMM's output is z in tap-major order
    weights = weight.permute(1, 2, 3, 0).reshape(channels, -1).contiguous()
    taps_v, taps_h = (interpolation_taps(s, p) for s, p in zip((sh, sw), pull_size))
    top, left = push_padding
    pull_top, pull_left = pull_padding[0], pull_padding[2]
    reach = max(sh - 1 - top, pull_size[0] - 1 - pull_top) - min(-top, -pull_top) + 1
    gemm_rows = max(1, min(height, GEMM_PIXELS // width))
    ring_rows = -(-(reach - 1 + gemm_rows) // gemm_rows) * gemm_rows
    threads = torch.get_num_threads() if x.numel() * pull_size[0] >= 1 << 16 else 1
    threads = min(threads, batch * out_h)
    bands = -(-threads // batch)  # each band of rows recomputes the ring's first rows
    per_thread = (ring_rows * width * sh + width) * sw * out_channels + 2 * out_w * out_channels
    scratch = _scratch_buffer(threads * per_thread, x.dtype)
    bias = None if bias is None else bias.contiguous()
    if alpha is not None:
        alpha = alpha.contiguous()
    failed = _kernel(x.dtype)(
        x.data_ptr(), push.data_ptr(), None if pull is None else pull.data_ptr(), batch, channels,
        height, width, out_h, out_w, sh, sw, top, left, pull_size[0], pull_size[1],
        taps_v.data_ptr(), taps_h.data_ptr(), pull_top, pull_left, weights.data_ptr(),
        None if bias is None else bias.data_ptr(), out_channels,
        None if alpha is None else alpha.data_ptr(), 0 if alpha is None else alpha.numel(),
        ring_rows, gemm_rows, bands, planar, scratch.data_ptr(), per_thread, blas_gemm(x.dtype),
        threads,
    )  # fmt: skip
    if failed:
        raise RuntimeError("push-pull-taps C kernel: bad geometry")


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
    ``pull_padding`` (top, bottom, left, right) zeros. Both outputs channels-last.
    """
    _check_geometry(x, weight, pull_size, push_padding, pull_padding)
    if not runs_shared_taps(x, weight):
        return _branches_apart(x, weight, bias, pull_size, push_padding, pull_padding)
    push, pull = _empty_output(x, weight, push_padding), _empty_output(x, weight, push_padding)
    _run_kernel(x, weight, bias, pull_size, push_padding, pull_padding, push, pull, None)
    return push, pull


@push_and_pull.register_fake
def _(x, weight, bias, pull_size, push_padding, pull_padding):
    return _empty_output(x, weight, push_padding), _empty_output(x, weight, push_padding)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, *ctx.args = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _pull_backward(grad, x, weight, pull_size, pull_padding, need_x: bool, need_weight: bool):
    """Gradients of the pull for x and for ``-weight`` (the kernel the pull resizes), in the form
    the layer would compute the pull apart: the C maps, or the direct convolution's backward."""
    if separable_pays(tuple(weight.shape[-2:]), tuple(pull_size), weight.shape[0]):
        args = (pull_size, [1, 1], pull_padding, [1, 1], 1)
        return exact_pull_backward(grad, x, -weight, *args, need_x, need_weight)
    kernel = -F.interpolate(weight, size=tuple(pull_size), mode="bilinear", align_corners=True)
    top, bottom, left, right = pull_padding
    symmetric = top == bottom and left == right
    padded = x if symmetric else F.pad(x, (left, right, top, bottom))
    grad_x, grad_kernel, _ = torch.ops.aten.convolution_backward(
        grad, padded, kernel, None, [1, 1], [top, left] if symmetric else [0, 0], [1, 1], False,
        [0, 0], 1, [need_x, need_weight, False],
    )  # fmt: skip
    if need_x and not symmetric:
        grad_x = grad_x[..., top : top + x.shape[2], left : left + x.shape[3]]
    if need_weight:
        # resize(k) = U_v^T k U_h, so the kernel's gradient goes back as U_v g U_h^T
        (sh, sw), (ph, pw) = weight.shape[-2:], pull_size
        rows = interpolation_matrix(sh, ph, weight.dtype, weight.device)
        cols = interpolation_matrix(sw, pw, weight.dtype, weight.device)
        grad_kernel = torch.einsum("ai,ocij,bj->ocab", rows, grad_kernel, cols)
    return grad_x, grad_kernel


def _backward_apart(x, weight, grad_push, grad_pull, pull_size, push_padding, pull_padding,
                    need_x: bool, need_weight: bool) -> list[Tensor | None]:  # fmt: skip
    """The two branches' own backward passes, summed (no C kernel)."""
    grads: list[Tensor | None] = [None, None]
    if grad_push is not None:
        grads = list(
            torch.ops.aten.convolution_backward(
                grad_push, x, weight, None, [1, 1], list(push_padding), [1, 1], False, [0, 0], 1,
                [need_x, need_weight, False],
            )[:2]
        )  # fmt: skip
    if grad_pull is not None:
        pull_x, pull_weight = _pull_backward(
            grad_pull, x, weight, pull_size, pull_padding, need_x, need_weight
        )
        # the pull convolves with minus the resized kernel
        updates = (pull_x if need_x else None, -pull_weight if need_weight else None)
        for index, update in enumerate(updates):
            if update is not None:
                grads[index] = update if grads[index] is None else grads[index] + update
    return grads


def _backward_shared(x, weight, grad_push, grad_pull, pull_size, push_padding, pull_padding,
                     need_x: bool, need_weight: bool) -> list[Tensor | None]:  # fmt: skip
    """The transposed shared form: the products' gradient g (the transposed shift and smoothing
    of the outputs' gradients, built in cache) and two GEMMs, g @ k^T for x and x^T @ g for k."""
    x = x.contiguous(memory_format=torch.channels_last)
    batch, channels, height, width = x.shape
    out_channels, _, sh, sw = weight.shape
    grads = [g if g is None else g.contiguous(memory_format=torch.channels_last)
             for g in (grad_push, grad_pull)]  # fmt: skip
    out_h, out_w = _output_shape(x, weight, push_padding)[2:]
    weights = weight.permute(1, 2, 3, 0).reshape(channels, -1).contiguous()
    taps_v, taps_h = (interpolation_taps(s, p) for s, p in zip((sh, sw), pull_size))
    gemm_rows = max(1, min(height, GEMM_PIXELS // width))
    threads = torch.get_num_threads() if x.numel() * pull_size[0] >= 1 << 16 else 1
    threads = min(threads, batch * height)
    bands = -(-threads // batch)
    per_thread = gemm_rows * width * sh * sw * out_channels + out_w * sh * out_channels
    scratch = _scratch_buffer(threads * per_thread, x.dtype)
    grad_x = torch.empty_like(x, memory_format=torch.channels_last) if need_x else None
    grad_weights = x.new_zeros(threads, *weights.shape) if need_weight else None

    def pointer(tensor: Tensor | None) -> int | None:
        return None if tensor is None else tensor.data_ptr()

    failed = _kernel(x.dtype, backward=True)(
        x.data_ptr(), pointer(grads[0]), pointer(grads[1]), pointer(grad_x),
        pointer(grad_weights), batch, channels, height, width, out_h, out_w, sh, sw,
        *push_padding, *pull_size, taps_v.data_ptr(), taps_h.data_ptr(), pull_padding[0],
        pull_padding[2], weights.data_ptr(), out_channels, gemm_rows, bands, scratch.data_ptr(),
        per_thread, blas_gemm(x.dtype), threads,
    )  # fmt: skip
    if failed:
        raise RuntimeError("push-pull-taps C kernel: bad geometry")
    if grad_weights is not None:
        grad_weights = grad_weights.sum(0).view(channels, sh, sw, out_channels)
        grad_weights = grad_weights.permute(3, 0, 1, 2).contiguous()
    return [grad_x, grad_weights]


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
    """Gradients of :func:`push_and_pull` for ``x`` and ``weight`` (empty where not needed)."""
    args = (x, weight, grad_push, grad_pull, pull_size, push_padding, pull_padding)
    backward = _backward_shared if runs_shared_taps(x, weight) else _backward_apart
    grad_x, grad_weight = backward(*args, need_x, need_weight)
    empty = x.new_empty(0)
    if grad_x is None:
        grad_x = empty
    elif grad_x.dim():  # the apart form's gradient has the input's layout
        grad_x = grad_x.contiguous(memory_format=torch.channels_last)
    return grad_x, empty if grad_weight is None else grad_weight


@push_and_pull_backward.register_fake
def _(grad_push, grad_pull, x, weight, pull_size, push_padding, pull_padding, need_x, need_weight):
    grad_x = torch.empty_like(x, memory_format=torch.channels_last) if need_x else x.new_empty(0)
    return grad_x, (torch.empty_like(weight) if need_weight else x.new_empty(0))


def _backward(ctx, grad_push: Tensor | None, grad_pull: Tensor | None):
    x, weight = ctx.saved_tensors
    need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
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


def _response(x, weight, bias, alpha, pull_size, push_padding, pull_padding) -> Tensor:
    _check_geometry(x, weight, pull_size, push_padding, pull_padding)
    if not runs_shared_taps(x, weight):
        push, pull = _branches_apart(x, weight, bias, pull_size, push_padding, pull_padding)
        response = push.relu_().addcmul_(alpha.reshape(1, -1, 1, 1), pull.relu_(), value=-1.0)
        return response.contiguous(memory_format=_response_format(x))
    # in the input's layout: a model kept NCHW would otherwise convert between the two around
    # every push-pull layer (21 copies per resnet20_pp_b1 forward, slower mixed-layout adds)
    planar = _planar(x)
    response = _empty_output(x, weight, push_padding, planar)
    alpha = alpha.reshape(-1).to(x.dtype)
    args = (pull_size, push_padding, pull_padding, response, None, alpha, planar)
    _run_kernel(x, weight, bias, *args)
    return response


def _response_format(x: Tensor) -> torch.memory_format:
    return torch.contiguous_format if _planar(x) else torch.channels_last


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
    per output channel, used as given), NCHW for an NCHW ``x``, else channels-last; for
    inference, no autograd formula."""
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
    """:func:`push_pull_response`; in eager mode without the dispatcher, whose 35 us per call
    were a sixth of a 16->16 layer on a batch of 8 CIFAR images. Compiled and exported graphs get
    the op, and so do dispatch modes (the FLOP counter)."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return torch.ops.timm_pushpull.push_pull_response(
            x, weight, bias, alpha, pull_size, push_padding, pull_padding
        )
    return _response(x, weight, bias, alpha, pull_size, push_padding, pull_padding)


@push_pull_response.register_fake
def _(x, weight, bias, alpha, pull_size, push_padding, pull_padding):
    return _empty_output(x, weight, push_padding, _planar(x))


def _smoothing_macs(weight_shape, pull_size, out_shape) -> int:
    (sh, sw), (ph, pw) = weight_shape[-2:], pull_size
    taps_v = int((interpolation_taps(sh, ph) != 0).sum())
    taps_h = int((interpolation_taps(sw, pw) != 0).sum())
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
