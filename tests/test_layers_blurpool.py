import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BlurPool2d as TimmBlurPool2d

from timm_pushpull import native
from timm_pushpull.layers import (
    BlurPool2d,
    MaxBlurPool2d,
    antialias,
    blur_before_conv,
    blur_pool2d,
    blur_pool_class,
    blur_taps,
    conv_act_blur,
    parse_blur_spec,
)
from timm_pushpull.layers.blur_pool import _blur_pool_strided

requires_native = pytest.mark.skipif(
    native.find_compiler() is None, reason="no C compiler to build the blur-pool kernel"
)


def _padded_index(k: int, length: int, pad_mode: str) -> int | None:
    """Which input sample position ``k`` (possibly outside ``0..length-1``) reads; None = zero."""
    if 0 <= k < length:
        return k
    if pad_mode == "zero":
        return None
    if pad_mode == "replicate":
        return min(max(k, 0), length - 1)
    if pad_mode == "circular":
        return k % length
    return -k if k < 0 else 2 * (length - 1) - k  # reflect: mirror about the edge sample


def reference_blur_pool(x, taps, stride, pad_mode):
    """The definition, as explicit sums (no padding or convolution op): for filter length ``n``,
    ``y[i, j] = sum_a sum_b taps[a] taps[b] x[i*stride + a - l, j*stride + b - l]`` with
    ``l = floor((n - 1) / 2)`` samples of padding before and ``ceil((n - 1) / 2)`` after
    (Zhang 2019's asymmetric padding for even ``n``), outside samples given by ``pad_mode``."""
    n = len(taps)
    left = (n - 1) // 2
    height, width = x.shape[-2:]
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    y = torch.zeros(*x.shape[:-2], out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        for j in range(out_w):
            total = torch.zeros(x.shape[:-2], dtype=torch.float64)
            for a in range(n):
                row = _padded_index(i * stride + a - left, height, pad_mode)
                for b in range(n):
                    col = _padded_index(j * stride + b - left, width, pad_mode)
                    if row is not None and col is not None:
                        total += taps[a] * taps[b] * x[..., row, col].double()
            y[..., i, j] = total
    return y.to(x.dtype)


def test_reference_on_a_hand_computed_ramp():
    # x[i, j] = 4i + j, [1, 2, 1] / 4, stride 2, reflect: rows 0 and 2 smooth to 2 and 8, columns
    # 0 and 2 to 0.5 and 2 (edge: (1 + 0 + 1) / 4); the filter is separable and sums to 1
    x = torch.arange(16.0).view(1, 1, 4, 4)
    expected = torch.tensor([[[[2.5, 4.0], [8.5, 10.0]]]])
    torch.testing.assert_close(reference_blur_pool(x, [0.25, 0.5, 0.25], 2, "reflect"), expected)
    torch.testing.assert_close(BlurPool2d(1, "binomial", 3, 2, "reflect")(x), expected)
    # zero padding drops the missing neighbours: a corner keeps 0.75 * 0.75 of a constant image
    zero = reference_blur_pool(torch.ones(1, 1, 4, 4), [0.25, 0.5, 0.25], 2, "zero")
    torch.testing.assert_close(zero, torch.tensor([[[[0.5625, 0.75], [0.75, 1.0]]]]))


@pytest.mark.parametrize(
    "filter_type,size,expected",
    [
        ("binomial", 1, [1]),
        ("binomial", 3, [1, 2, 1]),
        ("binomial", 5, [1, 4, 6, 4, 1]),
        ("binomial", 7, [1, 6, 15, 20, 15, 6, 1]),
        ("rect", 2, [1, 1]),
        ("tri", 3, [1, 2, 1]),
        ("tri", 4, [1, 2, 2, 1]),
        ("tri", 5, [1, 2, 3, 2, 1]),
    ],
)
def test_filter_taps(filter_type, size, expected):
    total = sum(expected)
    assert blur_taps(filter_type, size) == pytest.approx([e / total for e in expected])


@pytest.mark.parametrize("filter_type", ["binomial", "rect", "tri"])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("pad_mode", ["reflect", "replicate", "zero", "circular"])
@pytest.mark.parametrize("height,width", [(12, 10), (40, 35)])  # matrix and convolution paths
@pytest.mark.parametrize("use_native", [True, False])
def test_matches_the_textbook_definition(filter_type, size, pad_mode, height, width, use_native):
    x = torch.randn(2, 3, height, width)
    taps = blur_taps(filter_type, size)
    expected = reference_blur_pool(x, taps, 2, pad_mode)
    with native.native_kernels(use_native):
        torch.testing.assert_close(BlurPool2d(3, filter_type, size, 2, pad_mode)(x), expected)
    # the form traced under torch.compile
    torch.testing.assert_close(_blur_pool_strided(x, taps, 2, pad_mode), expected)


@requires_native
class TestNativeKernel:
    """The C kernel (float32 on the CPU) against the textbook definition and the PyTorch path."""

    @pytest.mark.parametrize(
        "filter_type,size", [("rect", 1), ("binomial", 2), ("tri", 5), ("binomial", 7)]
    )
    @pytest.mark.parametrize("stride", [1, 2, 3])
    @pytest.mark.parametrize("pad_mode", ["reflect", "replicate", "zero", "circular"])
    @pytest.mark.parametrize("height,width", [(7, 9), (16, 5), (3, 4)])
    def test_strides_and_small_odd_maps(self, filter_type, size, stride, pad_mode, height, width):
        taps = blur_taps(filter_type, size)
        if pad_mode == "reflect" and (size - 1) - (size - 1) // 2 >= min(height, width):
            pytest.skip("too small for reflect padding")
        x = torch.randn(2, 3, height, width)
        torch.testing.assert_close(
            blur_pool2d(x, filter_type, size, stride, pad_mode),
            reference_blur_pool(x, taps, stride, pad_mode),
        )

    def test_runs_in_c_without_convolution_or_matrix_products(self):
        x = torch.randn(2, 4, 40, 40)
        for use_native, expect_torch_ops in ((True, False), (False, True)):
            with native.native_kernels(use_native), torch.profiler.profile() as prof:
                blur_pool2d(x)
            names = {event.name for event in prof.events()}
            assert bool(names & {"aten::conv2d", "aten::mm", "aten::matmul"}) is expect_torch_ops

    def test_threads_split_the_planes(self):
        x = torch.randn(3, 7, 64, 66)  # above the size that starts threads; 21 planes for 2 threads
        expected = reference_blur_pool(x, blur_taps("binomial", 3), 2, "reflect")
        threads = torch.get_num_threads()
        try:
            for count in (1, 2, 5):
                torch.set_num_threads(count)
                torch.testing.assert_close(blur_pool2d(x), expected)
        finally:
            torch.set_num_threads(threads)

    def test_non_contiguous_and_other_dtypes_take_the_pytorch_path(self):
        x = torch.randn(2, 3, 20, 20)
        expected = reference_blur_pool(x, blur_taps("binomial", 3), 2, "reflect")
        torch.testing.assert_close(
            blur_pool2d(x.contiguous(memory_format=torch.channels_last)), expected
        )
        torch.testing.assert_close(blur_pool2d(x.transpose(2, 3)).transpose(2, 3), expected)
        torch.testing.assert_close(
            blur_pool2d(x.bfloat16()), expected.bfloat16(), atol=2e-2, rtol=2e-2
        )

    def test_gradients_equal_the_pytorch_path(self):
        x = torch.randn(2, 3, 18, 21, requires_grad=True)
        weights = torch.randn(2, 3, 9, 11)
        grads = []
        for use_native in (True, False):
            with native.native_kernels(use_native):
                out = blur_pool2d(x, "tri", 4, 2, "replicate")
                (grad,) = torch.autograd.grad((out * weights).sum(), x, create_graph=True)
                # second order: the gradient is linear in the weights, so d(sum grad^2)/dx = 0
                (second,) = torch.autograd.grad(grad.pow(2).sum() + out.sum(), x)
            grads.append((grad, second))
        torch.testing.assert_close(grads[0], grads[1])

    def test_forward_mode_and_vmap(self):
        x, tangent = torch.randn(2, 3, 12, 12), torch.randn(2, 3, 12, 12)
        out, out_tangent = torch.func.jvp(blur_pool2d, (x,), (tangent,))
        torch.testing.assert_close(out, blur_pool2d(x))
        torch.testing.assert_close(out_tangent, blur_pool2d(tangent))  # a linear map
        with torch.autograd.forward_ad.dual_level():
            dual = torch.autograd.forward_ad.make_dual(x, tangent)
            out_tangent = torch.autograd.forward_ad.unpack_dual(blur_pool2d(dual)).tangent
        torch.testing.assert_close(out_tangent, blur_pool2d(tangent))
        batched = torch.func.vmap(blur_pool2d)(torch.stack([x, tangent]))
        torch.testing.assert_close(batched, torch.stack([blur_pool2d(x), blur_pool2d(tangent)]))

    def test_torch_export_records_the_custom_op(self):
        layer = BlurPool2d(3, "tri", 4)
        x = torch.randn(2, 3, 16, 18)
        with native.native_kernels(True):
            exported = torch.export.export(layer, (x,))
        targets = {node.target for node in exported.graph.nodes}
        assert torch.ops.timm_pushpull.blur_pool2d.default in targets
        torch.testing.assert_close(exported.module()(x), layer(x))

    def test_custom_op_passes_opcheck(self):
        from timm_pushpull.layers.blur_pool import _blur_pool_op

        x = torch.randn(2, 3, 9, 10, requires_grad=True)
        torch.library.opcheck(_blur_pool_op, (x, [0.25, 0.5, 0.25], 2, "reflect"))

    def test_jit_trace_records_pytorch_ops(self):
        layer = BlurPool2d(3, "binomial", 3)
        traced = torch.jit.trace(layer, torch.randn(1, 3, 16, 16))
        x = torch.randn(2, 3, 24, 20)  # another shape: the traced graph must hold the real ops
        torch.testing.assert_close(traced(x), layer(x))


@pytest.mark.parametrize(
    "filter_type,size,stride,pad_mode", [("binomial", 3, 2, "reflect"), ("tri", 4, 3, "circular")]
)
def test_torch_compile_takes_the_strided_form(filter_type, size, stride, pad_mode):
    layer = BlurPool2d(3, filter_type, size, stride, pad_mode)
    x = torch.randn(2, 3, 37, 40, requires_grad=True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    out, expected = compiled(x), layer(x)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(expected)
    torch.testing.assert_close(
        torch.autograd.grad((out * weights).sum(), x)[0],
        torch.autograd.grad((expected * weights).sum(), x)[0],
    )


@pytest.mark.parametrize("size", [3, 5, 7])  # timm has no size-1 filter
def test_odd_sizes_equal_timm(size):
    x = torch.randn(2, 4, 16, 16)
    torch.testing.assert_close(BlurPool2d(4, "binomial", size)(x), TimmBlurPool2d(4, size, 2)(x))


@pytest.mark.parametrize("size", [2, 4, 6])
def test_even_sizes_halve_exactly(size):
    assert BlurPool2d(8, "binomial", size)(torch.randn(1, 8, 32, 32)).shape == (1, 8, 16, 16)
    assert TimmBlurPool2d(8, size, 2)(torch.randn(1, 8, 32, 32)).shape == (1, 8, 17, 17)


def test_removes_the_aliased_nyquist_component():
    # A checkerboard subsampled by 2 aliases to a constant whose sign depends on a 1-px shift;
    # the binomial filter has a zero at Nyquist, so the blurred result is 0 for both shifts.
    idx = torch.arange(16)
    board = ((idx[:, None] + idx[None, :]) % 2 * 2 - 1).float()[None, None]
    shifted = torch.roll(board, 1, dims=3)
    assert board[..., ::2, ::2].mean() == -shifted[..., ::2, ::2].mean()
    for x in (board, shifted):
        torch.testing.assert_close(
            blur_pool2d(x, "binomial", 3, 2, "circular"), torch.zeros(1, 1, 8, 8)
        )


def test_stride_one_blur_is_shift_equivariant():
    x = torch.randn(1, 2, 12, 12)
    blur = BlurPool2d(2, "tri", 5, stride=1, pad_mode="circular")
    torch.testing.assert_close(
        blur(torch.roll(x, (3, -2), (2, 3))), torch.roll(blur(x), (3, -2), (2, 3))
    )


def test_fx_symbolic_trace_keeps_the_blur_pool_a_leaf():
    layer = BlurPool2d(4, "tri", 4, 2, "reflect")
    traced = torch.fx.symbolic_trace(layer)
    x = torch.randn(2, 4, 40, 33)
    torch.testing.assert_close(traced(x), layer(x))


@pytest.mark.parametrize("side", [8, 34])
def test_gradients_and_double(side):
    x = torch.randn(1, 2, side, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: blur_pool2d(t, "binomial", 4, 2, "reflect"), (x,))


def test_max_blur_pool():
    x = torch.randn(2, 3, 16, 16)
    expected = reference_blur_pool(F.max_pool2d(x, 2, 1), blur_taps("binomial", 3), 2, "reflect")
    torch.testing.assert_close(MaxBlurPool2d(3)(x), expected)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("bin5", ("binomial", 5)),
        ("tri3", ("tri", 3)),
        ("rect2", ("rect", 2)),
        ("binomial7", ("binomial", 7)),
    ],
)
def test_spec_parsing(spec, expected):
    assert parse_blur_spec(spec) == expected


def test_blur_pool_class_as_timm_aa_layer():
    cls = blur_pool_class("rect2")
    assert cls is blur_pool_class("rect2") and issubclass(cls, BlurPool2d)
    assert blur_pool_class(None) is None
    model = timm.create_model("resnet18", aa_layer=blur_pool_class("bin3"), num_classes=5)
    blurs = [m for m in model.modules() if isinstance(m, BlurPool2d)]
    assert blurs and all(b.filter_size == 3 for b in blurs)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


class TestPlacements:
    def test_blur_before_conv(self):
        conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        x = torch.randn(1, 3, 16, 16)
        weight = conv.weight.detach().clone()
        block = blur_before_conv(conv, "bin3")
        expected = F.conv2d(
            reference_blur_pool(x, blur_taps("binomial", 3), 2, "reflect"),
            weight,
            conv.bias,
            padding=1,
        )
        torch.testing.assert_close(block(x), expected)

    def test_conv_act_blur(self):
        conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        x = torch.randn(1, 3, 16, 16)
        full = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
        torch.testing.assert_close(
            conv_act_blur(conv, nn.ReLU, "tri3")(x),
            reference_blur_pool(full, blur_taps("tri", 3), 2, "reflect"),
        )

    def test_antialias_surgery_on_a_timm_model(self):
        model = timm.create_model("resnet18", num_classes=3)
        antialias(model, "bin3")
        assert not any(isinstance(m, nn.Conv2d) and max(m.stride) > 1 for m in model.modules())
        assert not any(isinstance(m, nn.MaxPool2d) and m.stride != 1 for m in model.modules())
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


class TestBadInput:
    @pytest.mark.parametrize("size", [0, 8])
    def test_filter_size(self, size):
        with pytest.raises(ValueError, match="filter_size.*1..7"):
            BlurPool2d(3, "binomial", size)

    def test_filter_type(self):
        with pytest.raises(ValueError, match="filter_type.*binomial"):
            BlurPool2d(3, "gauss", 3)

    def test_pad_mode(self):
        with pytest.raises(ValueError, match="pad_mode.*reflect"):
            BlurPool2d(3, "binomial", 3, pad_mode="mirror")

    @pytest.mark.parametrize("pad_mode,size", [("reflect", 2), ("circular", 1)])
    def test_map_too_small_for_the_padding(self, pad_mode, size):
        with pytest.raises(ValueError, match=f"{pad_mode} padding of 3 needs maps of at least"):
            blur_pool2d(torch.randn(1, 1, size, 8), "binomial", 7, 2, pad_mode)

    @pytest.mark.parametrize("spec", ["bin", "gauss3", "bin9", "", 3])
    def test_spec(self, spec):
        with pytest.raises(ValueError, match="blur spec|filter_size"):
            parse_blur_spec(spec)
