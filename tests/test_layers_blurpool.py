import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BlurPool2d as TimmBlurPool2d

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


def reference_blur_pool(x, taps, stride, pad_mode):
    """Pad (floor left, ceil right), depthwise 2-D filter, stride: the textbook definition."""
    n = len(taps)
    left, right = (n - 1) // 2, n - 1 - (n - 1) // 2
    mode = "constant" if pad_mode == "zero" else pad_mode
    padded = F.pad(x, (left, right, left, right), mode=mode)
    t = torch.tensor(taps, dtype=x.dtype)
    kernel = torch.outer(t, t).expand(x.shape[1], 1, n, n)
    return F.conv2d(padded, kernel, stride=stride, groups=x.shape[1])


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
def test_matches_the_textbook_definition(filter_type, size, pad_mode, height, width):
    x = torch.randn(2, 3, height, width)
    taps = blur_taps(filter_type, size)
    expected = reference_blur_pool(x, taps, 2, pad_mode)
    torch.testing.assert_close(BlurPool2d(3, filter_type, size, 2, pad_mode)(x), expected)
    # the form traced under torch.compile
    torch.testing.assert_close(_blur_pool_strided(x, taps, 2, pad_mode), expected)


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

    @pytest.mark.parametrize("spec", ["bin", "gauss3", "bin9", "", 3])
    def test_spec(self, spec):
        with pytest.raises(ValueError, match="blur spec|filter_size"):
            parse_blur_spec(spec)
