import io
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from timm_pushpull import native
from timm_pushpull.layers import (
    PULL_IMPLS,
    PULL_MODES,
    PushPull2d,
    create_pushpull,
    fast_pull_weight,
    pull_kernel_size,
    pull_weight,
)
from timm_pushpull.layers.exact_path import force_path, separable_pays


def reference_pushpull(
    x, weight, bias, h, stride, padding, dilation, groups, alpha=1.0, rectify=True
):
    """The layer as the authors' README describes it, written out with plain torch ops."""
    s_h, s_w = weight.shape[-2:]
    p_h, p_w = pull_kernel_size(s_h, h), pull_kernel_size(s_w, h)
    pull_w = -F.interpolate(weight, size=(p_h, p_w), mode="bilinear", align_corners=True)
    # the authors' pull padding p//2 - s//2 + padding; for even push kernels the extra pixel of
    # padding that keeps the output size goes bottom/right
    left = (dilation * (p_w // 2 - s_w // 2) + padding, dilation * (p_h // 2 - s_h // 2) + padding)
    right = (
        dilation * (p_w - s_w) + 2 * padding - left[0],
        dilation * (p_h - s_h) + 2 * padding - left[1],
    )
    push = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    padded = F.pad(x, (left[0], right[0], left[1], right[1]))
    pull = F.conv2d(padded, pull_w, None if bias is None else -bias, stride, 0, dilation, groups)
    if rectify:
        push, pull = F.relu(push), F.relu(pull)
    return push - alpha * pull


@pytest.mark.parametrize(
    "kernel,h,expected",
    [
        (3, 2, 7),
        (3, 1.5, 5),
        (3, 1, 3),
        (4, 1, 4),
        (4, 2, 9),
        (5, 2, 11),
        (3, 3, 9),
        (7, 2, 15),
        (3, 2.5, 7),
        (1, 2, 3),
    ],
)
def test_pull_kernel_size_rule(kernel, h, expected):
    assert pull_kernel_size(kernel, h) == expected


def test_pull_kernel_of_a_centre_impulse_is_the_negated_tent():
    layer = PushPull2d(1, 1, 3, padding=1)
    with torch.no_grad():
        layer.push.weight.zero_()
        layer.push.weight[0, 0, 1, 1] = 1.0
    tent = torch.tensor([0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0])
    pull_kernel = -torch.outer(tent, tent)
    torch.testing.assert_close(pull_weight(layer.push.weight, (7, 7))[0, 0], pull_kernel)
    x = torch.randn(1, 1, 9, 9)  # one input channel: the separable implementation
    torch.testing.assert_close(
        layer.pulls[0](x, layer.push.weight), F.conv2d(x, pull_kernel[None, None], padding=3)
    )


@pytest.mark.parametrize(
    "in_ch,out_ch,kernel,stride,padding,dilation,groups,h",
    [
        (3, 8, 3, 1, 1, 1, 1, 2.0),  # separable exact (image-facing layer)
        (16, 8, 3, 1, 1, 1, 1, 2.0),  # direct exact
        (16, 8, 3, 2, 1, 1, 1, 1.5),
        (8, 8, 5, 1, 2, 1, 2, 2.0),
        (3, 6, (3, 5), 2, 2, 1, 1, 2.0),
        (16, 4, 3, 1, 2, 2, 1, 2.0),
        (2, 4, 7, 2, 3, 1, 1, 2.0),
        (16, 8, 4, 1, 1, 1, 1, 2.0),
        (6, 6, 3, 1, 1, 1, 3, 2.5),
    ],
)
def test_exact_layer_matches_the_papers_definition(
    in_ch, out_ch, kernel, stride, padding, dilation, groups, h
):
    layer = PushPull2d(
        in_ch, out_ch, kernel, stride, padding, dilation, groups, bias=True, pull_scale=h
    )
    x = torch.randn(2, in_ch, 17, 15)
    expected = reference_pushpull(
        x, layer.push.weight, layer.push.bias, h, stride, padding, dilation, groups
    )
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_alpha_scales_the_inhibition_and_unrectified_variant():
    x = torch.randn(2, 4, 9, 9)
    layer = PushPull2d(4, 5, 3, padding=1, alpha=0.5, rectify=False)
    expected = reference_pushpull(
        x, layer.push.weight, None, 2.0, 1, 1, 1, 1, alpha=0.5, rectify=False
    )
    torch.testing.assert_close(layer(x), expected)
    # unrectified push-pull is linear in the input
    torch.testing.assert_close(layer(2 * x), 2 * layer(x))


def test_learned_alpha_per_channel_and_scalar():
    layer = PushPull2d(4, 6, 3, padding=1, learn_alpha=True)
    assert layer.alpha.shape == (1, 6, 1, 1)
    # the authors' initialisation: uniform in 0.5 +- 1/sqrt(C_in * C_out) = 0.5 +- 0.2041
    bound = 1 / math.sqrt(4 * 6)
    assert torch.all((layer.alpha >= 0.5 - bound) & (layer.alpha <= 0.5 + bound))
    wide = PushPull2d(1, 4096, 1, learn_alpha=True).alpha  # many draws: they span the interval
    assert wide.min() < 0.5 - 0.9 * 1 / 64 and wide.max() > 0.5 + 0.9 * 1 / 64
    assert abs(wide.mean().item() - 0.5) < 0.002
    # an explicit alpha moves the centre; a fixed alpha defaults to the papers' 1.0
    assert abs(PushPull2d(1, 4096, 1, learn_alpha=True, alpha=1.0).alpha.mean().item() - 1) < 0.002
    fixed = PushPull2d(4, 6, 3)
    assert fixed.alpha_init == 1.0 and fixed.alpha.item() == 1.0 and not fixed.alpha.requires_grad
    assert PushPull2d(4, 6, 3, learn_alpha="scalar").alpha.shape == (1, 1, 1, 1)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        layer.alpha.copy_(torch.linspace(-1, 2, 6).view(1, 6, 1, 1))
    push = F.relu(F.conv2d(x, layer.push.weight, padding=1))
    pull = F.relu(layer.pulls[0](x, layer.push.weight))
    torch.testing.assert_close(layer(x), push - F.relu(layer.alpha) * pull)
    # alpha is learned: it gets a gradient
    layer(x).sum().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs().sum() > 0


def test_fixed_alpha_is_a_constant_that_follows_the_layer():
    layer = PushPull2d(3, 4, 3, padding=1, alpha=0.25)
    assert layer.alpha.shape == () and [n for n, _ in layer.named_parameters()] == ["push.weight"]
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    assert layer.double()(x).dtype == torch.float64 and layer.alpha.dtype == torch.float64
    layer.alpha_init = 0.75
    layer.reset_parameters()
    assert layer.alpha.item() == 0.75
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the response keeps autocast's dtype
        assert layer.float()(x.float()).dtype == torch.bfloat16


def test_state_dict_matches_the_authors_layer():
    assert set(PushPull2d(3, 4, 3).state_dict()) == {"push.weight"}
    assert set(PushPull2d(3, 4, 3, bias=True, learn_alpha=True).state_dict()) == {
        "push.weight",
        "push.bias",
        "alpha",
    }
    assert set(PushPull2d(3, 4, 3, pull_mode="fast").state_dict()) == {"push.weight"}
    conv = nn.Conv2d(3, 4, 3)
    assert sum(p.numel() for p in PushPull2d(3, 4, 3, bias=True).parameters()) == sum(
        p.numel() for p in conv.parameters()
    )


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("in_ch", [2, 6])
def test_gradcheck_float64(mode, in_ch):
    layer = PushPull2d(
        in_ch, 3, 3, 1, 1, bias=True, pull_mode=mode, learn_alpha=True, dtype=torch.float64
    )
    x = torch.randn(1, in_ch, 6, 6, dtype=torch.float64, requires_grad=True)
    params = (layer.push.weight, layer.push.bias, layer.alpha)

    def fn(inp, weight, bias, alpha):
        return torch.func.functional_call(
            layer, {"push.weight": weight, "push.bias": bias, "alpha": alpha}, (inp,)
        )

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_push_weights_get_gradient_through_both_branches():
    layer = PushPull2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    pull = layer.pulls[0](x, layer.push.weight)
    (grad,) = torch.autograd.grad(F.relu(pull).sum(), layer.push.weight)
    assert grad.abs().sum() > 0  # the pull branch alone moves the push weights


def _optimizer_step(layer, x):
    layer.train()
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).square().mean().backward()
    opt.step()
    layer.eval()


@pytest.mark.parametrize("in_ch,mode", [(8, "exact"), (3, "exact"), (8, "fast")])
def test_eval_cache_is_used_and_never_stale(in_ch, mode):
    # the C form of the exact pull derives nothing worth caching: this is the PyTorch forms' cache
    with native.native_kernels(False):
        _check_eval_cache(in_ch, mode)


def _check_eval_cache(in_ch, mode):
    layer = PushPull2d(in_ch, 4, 3, padding=1, pull_mode=mode).eval()
    pull = layer.pulls[0]
    x = torch.randn(2, in_ch, 8, 8)

    def check():
        with torch.no_grad():
            out = layer(x)
            fresh = F.relu(F.conv2d(x, layer.push.weight, padding=1)) - F.relu(
                F.conv2d(x, fast_pull_weight(layer.push.weight, (7, 7)), padding=5)
                if mode == "fast"
                else F.conv2d(
                    x,
                    -F.interpolate(
                        layer.push.weight, size=(7, 7), mode="bilinear", align_corners=True
                    ),
                    padding=3,
                )
            )
        torch.testing.assert_close(out, fresh, atol=1e-5, rtol=1e-5)

    check()
    cached = pull._cache[-1]
    check()
    assert pull._cache[-1] is cached  # second eval call reused the derived kernel

    _optimizer_step(layer, x)
    check()
    layer.load_state_dict({"push.weight": torch.randn_like(layer.push.weight)})
    check()
    with torch.no_grad():
        layer.push.weight.mul_(-2)  # in-place edit
    check()
    layer.push.weight.data[0].zero_()  # edit that bypasses autograd's version counter
    check()
    layer.to(torch.float64)
    x = x.double()
    check()


def test_cache_not_used_when_weight_gradients_are_needed():
    layer = PushPull2d(8, 4, 3, padding=1).eval()
    x = torch.randn(1, 8, 6, 6)
    layer(x).sum().backward()
    assert layer.push.weight.grad is not None and layer.pulls[0]._cache is None


def test_inference_mode_cache_then_grad_mode():
    layer = PushPull2d(8, 4, 3, padding=1).eval()
    for p in layer.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 8, 6, 6)
    with torch.inference_mode():
        expected = layer(x)
    x.requires_grad_(True)
    out = layer(x)  # must not reuse an inference tensor in autograd
    out.sum().backward()
    torch.testing.assert_close(out.detach(), expected)


class TestFastPull:
    @pytest.mark.parametrize("in_ch,out_ch,stride", [(3, 8, 1), (16, 4, 1), (16, 4, 2), (4, 4, 1)])
    def test_equals_dense_fast_kernel(self, in_ch, out_ch, stride):
        layer = PushPull2d(in_ch, out_ch, 3, stride, 1, bias=True, pull_mode="fast")
        x = torch.randn(2, in_ch, 13, 11)
        kernel = fast_pull_weight(layer.push.weight, (7, 7))
        assert kernel.shape[-2:] == (11, 11)  # full tent support: (s-1)*d + 2d - 1
        push = F.relu(F.conv2d(x, layer.push.weight, layer.push.bias, stride, 1))
        pull = F.relu(F.conv2d(x, kernel, -layer.push.bias, stride, 5))
        torch.testing.assert_close(layer(x), push - pull, atol=1e-5, rtol=1e-5)

    @pytest.mark.parametrize("h,pull", [(1.5, 5), (2.0, 7), (3.0, 9)])
    def test_centre_crop_is_the_exact_kernel_for_integer_spacing(self, h, pull):
        weight = torch.randn(4, 3, 3, 3)
        fast = fast_pull_weight(weight, (pull, pull))
        margin = (fast.shape[-1] - pull) // 2
        exact = -F.interpolate(weight, size=(pull, pull), mode="bilinear", align_corners=True)
        torch.testing.assert_close(fast[..., margin : margin + pull, margin : margin + pull], exact)

    @pytest.mark.parametrize(
        "kernel,h,zero_ring", [(3, 1.0, False), (1, 2.0, False), (3, 2.0, True), (5, 1.5, False)]
    )
    def test_coincides_with_exact_where_the_math_says(self, kernel, h, zero_ring):
        exact = PushPull2d(8, 4, kernel, padding=kernel // 2, pull_scale=h)
        fast = PushPull2d(8, 4, kernel, padding=kernel // 2, pull_scale=h, pull_mode="fast")
        if (
            kernel == 5
        ):  # 5x5 with h=1.5: spacing (7-1)/(5-1) is not an integer -> documented difference
            fast.load_state_dict(exact.state_dict())
            x = torch.randn(2, 8, 10, 10)
            assert not torch.allclose(exact(x), fast(x), atol=1e-4)
            return
        with torch.no_grad():
            if zero_ring:
                exact.push.weight[..., [0, -1], :] = 0
                exact.push.weight[..., :, [0, -1]] = 0
        fast.load_state_dict(exact.state_dict())
        x = torch.randn(2, 8, 10, 10)
        torch.testing.assert_close(fast(x), exact(x), atol=1e-5, rtol=1e-5)

    def test_stem_geometry_is_supported(self):
        layer = PushPull2d(3, 16, 7, 2, 3, pull_mode="fast")  # ResNet stem: pull 15x15, spacing 2
        assert layer.pulls[0].spacing == (2, 2)
        assert layer(torch.randn(1, 3, 32, 32)).shape == (1, 16, 16, 16)


class TestVariants:
    def test_se_attention_on_the_push_response(self):
        layer = PushPull2d(4, 8, 3, padding=1, attention="se", attention_reduction=4)
        x = torch.randn(2, 4, 7, 7)
        push = F.relu(F.conv2d(x, layer.push.weight, padding=1))
        pull = F.relu(layer.pulls[0](x, layer.push.weight))
        se = layer.attention
        squeeze = push.mean((2, 3))
        gate = torch.sigmoid(
            F.linear(
                F.relu(F.linear(squeeze, se.fc1.weight[:, :, 0, 0], se.fc1.bias)),
                se.fc2.weight[:, :, 0, 0],
                se.fc2.bias,
            )
        )
        assert se.fc1.out_channels == 2  # reduction 4
        torch.testing.assert_close(layer(x), push * gate[:, :, None, None] - pull)

    def test_simam_is_parameter_free(self):
        layer = PushPull2d(4, 8, 3, padding=1, attention="simam")
        assert set(layer.state_dict()) == {"push.weight"}
        x = torch.randn(2, 4, 7, 7)
        push = F.relu(F.conv2d(x, layer.push.weight, padding=1))
        pull = F.relu(layer.pulls[0](x, layer.push.weight))
        d = (push - push.mean((2, 3), keepdim=True)) ** 2
        v = d.sum((2, 3), keepdim=True) / (7 * 7 - 1)
        torch.testing.assert_close(
            layer(x), push * torch.sigmoid(d / (4 * (v + 1e-4)) + 0.5) - pull
        )

    def test_multi_scale(self):
        layer = PushPull2d(
            4, 8, 3, padding=1, pull_scale=(1.5, 2, 3), attention="se", rectify=False
        )
        assert [p.pull_size for p in layer.pulls] == [(5, 5), (7, 7), (9, 9)]
        x = torch.randn(2, 4, 10, 10)
        push = F.conv2d(x, layer.push.weight, padding=1)
        pulls = [p(x, layer.push.weight) for p in layer.pulls]
        stacked = torch.cat([push] + [push - q for q in pulls], 1)
        expected = layer.fuse(layer.attention(stacked))
        torch.testing.assert_close(layer(x), expected)
        assert layer(x).shape == (2, 8, 10, 10)
        assert layer.fuse.weight.shape == (8, 32, 1, 1)


class TestBadInput:
    @pytest.mark.parametrize(
        "kwargs,names",
        [
            (dict(pull_scale=0), "pull_scale"),
            (dict(pull_scale=-1.5), "pull_scale"),
            (dict(alpha=-0.1), "alpha"),
            (dict(learn_alpha="yes"), "learn_alpha"),
            (dict(attention="cbam"), "attention"),
            (dict(pull_mode="approx"), "pull_mode"),
            (dict(groups=3), "groups"),
            (dict(padding="full"), "padding"),
            (dict(padding=-1), "padding"),
            (dict(stride=0), "stride"),
            (dict(dilation=(1, 0)), "dilation"),
        ],
    )
    def test_constructor_errors_name_the_argument(self, kwargs, names):
        with pytest.raises(ValueError, match=names):
            PushPull2d(4, 8, 3, **kwargs)

    @pytest.mark.parametrize(
        "kwargs,message",
        [
            (dict(pull_scale=float("nan")), r"pull_scale \(h\) must be a number in \(0, 64\]"),
            (dict(pull_scale=float("inf")), r"pull_scale \(h\) must be a number in \(0, 64\]"),
            (dict(pull_scale=1e6), r"pull_scale \(h\) must be a number in \(0, 64\].*1000000"),
            (dict(pull_scale=(2.0, -1.0)), r"pull_scale .* got \(2.0, -1.0\)"),
            (dict(pull_scale=()), r"pull_scale .* non-empty sequence"),
            (dict(alpha=float("nan")), r"alpha must be a finite number >= 0, got nan"),
            (dict(alpha=float("inf")), r"alpha must be a finite number >= 0, got inf"),
            (dict(alpha=float("inf"), learn_alpha=True), r"alpha must be a finite number"),
            (dict(in_channels=0), r"in_channels must be an int >= 1, got 0"),
            (dict(out_channels=0), r"out_channels must be an int >= 1, got 0"),
            (dict(kernel_size=0), r"kernel_size must be an int >= 1 or a pair of them, got 0"),
            (dict(kernel_size=(3, 0)), r"kernel_size must be an int >= 1 .* got \(3, 0\)"),
        ],
    )
    def test_values_without_meaning_are_refused_before_any_work(self, kwargs, message):
        # a NaN or infinite h or alpha made NaN outputs or an enormous kernel; 0 channels or taps
        # a layer without weights
        arguments = dict(in_channels=4, out_channels=8, kernel_size=3) | kwargs
        with pytest.raises(ValueError, match=message):
            PushPull2d(**arguments)

    def test_wrong_input_channels(self):
        with pytest.raises(ValueError, match="in_channels=4"):
            PushPull2d(4, 8, 3)(torch.randn(1, 3, 8, 8))


class TestInterop:
    def test_factory_pads_same(self):
        layer = create_pushpull(3, 4, 5, stride=1, pull_mode="fast")
        assert layer(torch.randn(1, 3, 9, 9)).shape == (1, 4, 9, 9)
        assert create_pushpull(3, 4, 3, stride=2)(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)

    @pytest.mark.parametrize("mode", ["exact", "fast"])
    def test_torchscript_keeps_the_convs_layout(self, mode):
        layer = PushPull2d(8, 8, 3, padding=1, pull_mode=mode).train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in 2.14
            scripted = torch.jit.script(layer)
        x = torch.randn(2, 8, 8, 8)
        assert scripted(x).is_contiguous()
        torch.testing.assert_close(scripted(x), layer(x))

    @pytest.mark.parametrize("in_ch", [3, 8])
    def test_torchscript_exact(self, in_ch):
        layer = PushPull2d(in_ch, 4, 3, padding=1, learn_alpha=True).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in 2.14
            scripted = torch.jit.script(layer)
        x = torch.randn(2, in_ch, 8, 8)
        torch.testing.assert_close(scripted(x), layer(x))

    @pytest.mark.parametrize("mode", ["exact", "fast"])
    def test_torch_compile_and_fx(self, mode):
        layer = PushPull2d(3, 4, 3, padding=1, pull_mode=mode).eval()
        x = torch.randn(2, 3, 8, 8)
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), layer(x))
        traced = torch.fx.symbolic_trace(layer)
        torch.testing.assert_close(traced(x), layer(x))
        with pytest.raises(ValueError, match="in_channels"):
            traced(torch.randn(1, 5, 8, 8))

    def test_channels_last_and_autocast(self):
        layer = PushPull2d(8, 8, 3, padding=1).eval()
        x = torch.randn(2, 8, 12, 12)
        expected = layer(x)
        torch.testing.assert_close(
            layer(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-5
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)

    def test_onnx_export_matches(self):
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extras")
        layer = PushPull2d(3, 4, 3, padding=1, bias=True).eval()
        x = torch.randn(1, 3, 10, 10)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(layer, (x,), buffer, opset_version=17, dynamo=False)
        session = ort.InferenceSession(buffer.getvalue())
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(out), layer(x).detach(), atol=1e-5, rtol=1e-5)

    @pytest.mark.parametrize("forced", [None, "shared", "c_separable"])
    def test_a_trace_records_standard_ops_whatever_is_forced(self, forced):
        # The dispatcher's first check: a graph for another runtime (ONNX, TorchScript traces)
        # holds no custom op, even where a test or benchmark forces a C path; eagerly the forced
        # path runs (a 16->16 3x3 layer: the rule picks the shared form)
        layer = PushPull2d(16, 16, 3, padding=1).eval()
        x = torch.randn(1, 16, 10, 10)
        with force_path(forced), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings on Python values
            traced = torch.jit.trace(layer, x)
            eager = layer(x)
        kinds = {node.kind() for node in traced.inlined_graph.nodes()}
        assert not [k for k in kinds if k.startswith("timm_pushpull::")], kinds
        assert "aten::_convolution" in kinds
        torch.testing.assert_close(traced(x), eager, atol=1e-5, rtol=1e-5)


def _reference_pull(x, weight, bias, h, stride, padding, dilation, groups):
    """The paper's pull: a convolution with the resized kernel, resized in float64."""
    pull_size = [pull_kernel_size(k, h) for k in weight.shape[-2:]]
    kernel = -F.interpolate(weight.double(), size=pull_size, mode="bilinear", align_corners=True)
    pad = [dilation * (p // 2 - k // 2) + padding for p, k in zip(pull_size, weight.shape[-2:])]
    extra = [
        dilation * (p - k) + 2 * padding - b for p, k, b in zip(pull_size, weight.shape[-2:], pad)
    ]
    padded = F.pad(x.double(), (pad[1], extra[1], pad[0], extra[0]))
    neg_bias = None if bias is None else -bias.double()
    return F.conv2d(padded, kernel, neg_bias, stride, 0, dilation, groups)


EXACTNESS_CASES = [
    # in, out, kernel, stride, padding, dilation, groups, h, bias
    (16, 8, 3, 1, 1, 1, 1, 2.0, True),
    (16, 8, 3, 2, 1, 1, 1, 1.5, False),
    (8, 8, 5, 1, 2, 1, 2, 2.0, True),
    (6, 6, (3, 5), 2, 2, 1, 3, 2.0, True),
    (16, 4, 3, 1, 2, 2, 1, 3.0, False),
    (3, 8, 7, 2, 3, 1, 1, 2.0, True),  # a ResNet stem: 15x15 pull
    (12, 8, 4, 1, 1, 1, 1, 2.0, True),  # even kernel: asymmetric padding
    (8, 6, (2, 3), 2, 0, 1, 2, 2.5, False),  # non-square even/odd, non-integer h
    # few input channels: the C kernel's planar (channels-first) form
    (1, 6, 5, 1, 2, 1, 1, 2.0, True),  # LeNet-5's first layer
    (2, 4, (3, 4), 2, 1, 2, 1, 1.5, False),  # stride, dilation, even width
    (4, 5, 3, 3, 0, 1, 1, 3.0, True),  # stride 3: three phases per row
]


def _case_layer(case: tuple, dtype: torch.dtype, use_native: bool) -> PushPull2d:
    in_ch, out_ch, kernel, stride, padding, dilation, groups, h, bias = case
    layer = PushPull2d(
        in_ch, out_ch, kernel, stride, padding, dilation, groups, bias, pull_scale=h, dtype=dtype
    )
    return layer


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case", EXACTNESS_CASES)
def test_exact_pull_equals_the_reference(case, dtype, tolerance, use_native):
    in_ch, out_ch, kernel, stride, padding, dilation, groups, h, bias = case
    layer = _case_layer(case, dtype, use_native)
    pull = layer.pulls[0]
    x = torch.randn(2, in_ch, 19, 17, dtype=dtype)
    expected = _reference_pull(
        x, layer.push.weight, layer.push.bias, h, stride, padding, dilation, groups
    )
    # the C form for every geometry, if asked
    with native.native_kernels(use_native), force_path("c_separable" if use_native else None):
        for mode in ("train", "eval"):
            getattr(layer, mode)()
            with torch.no_grad():
                out = pull(x, layer.push.weight, layer.push.bias)
            error = (out.double() - expected).abs().max() / expected.abs().max()
            assert error < tolerance, (mode, error.item())


@pytest.mark.parametrize("one_pass", [True, False])
@pytest.mark.parametrize("case", [EXACTNESS_CASES[1], EXACTNESS_CASES[5], EXACTNESS_CASES[-2]])
def test_exact_pull_in_many_chunks_equals_the_reference(case, one_pass, monkeypatch):
    # chunks of a few output rows, and of a part of an image: every boundary between them; each
    # thread mixing its own rows with MKL's GEMM (one pass), or chunk by chunk with torch.mm
    from timm_pushpull.layers import exact_pull

    if not exact_pull.native_available(torch.device("cpu"), torch.float64):
        pytest.skip("no C compiler: the chunks are the C kernel's")
    # blocks of rows, and columns of one row (1000 bytes hold fewer maps than a row has pixels)
    monkeypatch.setattr(exact_pull, "FORWARD_CHUNK_BYTES_PER_THREAD", 1000)
    monkeypatch.setattr(exact_pull, "CHUNK_BYTES", 1000)
    if not one_pass:
        monkeypatch.setattr(exact_pull, "blas_gemm", lambda dtype: None)
    elif exact_pull.blas_gemm(torch.float64) is None:
        pytest.skip("PyTorch without MKL: no GEMM to call from the C kernel")
    in_ch, out_ch, kernel, stride, padding, dilation, groups, h, bias = case
    layer = _case_layer(case, torch.float64, use_native=True)
    x = torch.randn(3, in_ch, 19, 17, dtype=torch.float64)
    expected = _reference_pull(
        x, layer.push.weight, layer.push.bias, h, stride, padding, dilation, groups
    )
    with native.native_kernels(True), force_path("c_separable"), torch.no_grad():
        out = layer.pulls[0](x, layer.push.weight, layer.push.bias)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("case", EXACTNESS_CASES[::2])
def test_exact_pull_gradients_equal_the_reference(case, use_native):
    in_ch, out_ch, kernel, stride, padding, dilation, groups, h, bias = case
    layer = _case_layer(case, torch.float64, use_native)
    x = torch.randn(2, in_ch, 15, 13, dtype=torch.float64, requires_grad=True)
    params = [x, layer.push.weight] + ([layer.push.bias] if bias else [])
    weights = None
    grads = []
    for form in ("layer", "reference"):
        with native.native_kernels(use_native), force_path("c_separable" if use_native else None):
            if form == "layer":
                out = layer.pulls[0](x, layer.push.weight, layer.push.bias)
            else:
                out = _reference_pull(
                    x, layer.push.weight, layer.push.bias, h, stride, padding, dilation, groups
                )
            weights = torch.randn_like(out) if weights is None else weights
            grads.append(torch.autograd.grad((out * weights).sum(), params))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel_size, impl",
    [
        (1, 6, 5, "direct"),  # LeNet-5's first layer: separable measured 8x slower
        (3, 16, 3, "direct"),  # CIFAR ResNet stem: separable measured 2.6x slower
        (3, 64, 7, "separable"),  # ImageNet stem: separable measured 1.4x faster
        (64, 64, 3, "direct"),  # many input channels: grouped map building does not pay
    ],
)
def test_pytorch_form_follows_the_measured_rule(in_channels, out_channels, kernel_size, impl):
    layer = PushPull2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    assert (layer.pulls[0].mode, layer.pulls[0].impl) == ("exact", impl)


def test_mode_names_the_kernel_and_impl_how_it_is_computed():
    # the fast kernel is computed as a tent blur and a dilated conv: no value shared by the two
    fast = PushPull2d(64, 64, 3, padding=1, pull_mode="fast").pulls[0]
    assert (fast.mode, fast.impl, fast.preferred_paths) == ("fast", "dilated", ["fast"])
    assert "mode=fast, impl=dilated" in repr(fast)
    assert set(PULL_MODES).isdisjoint(PULL_IMPLS)


def test_float64_separable_pytorch_form_is_float64_exact():
    # the 3-channel 7x7 stem runs PyTorch's separable form without the C kernel; its interpolation
    # taps used to be made in float32 (6e-7 error); also after a float32 -> float64 round trip
    layer = PushPull2d(3, 64, 7, padding=3).double()
    assert layer.pulls[0].impl == "separable"
    layer = layer.float().double()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    expected = _reference_pull(x, layer.push.weight, None, 2.0, 1, 3, 1, 1)
    with native.native_kernels(False):
        out = layer.pulls[0](x, layer.push.weight)
    assert (out - expected).abs().max() < 1e-12 * expected.abs().max()


@pytest.mark.parametrize(
    "kernel,pull,out_ch,expected",
    [((3, 3), (7, 7), 64, True), ((7, 7), (15, 15), 64, True), ((3, 3), (7, 7), 16, False)]
    + [((5, 5), (7, 7), 64, False), ((3, 3), (3, 3), 256, False)],
)
def test_separable_form_where_the_measured_rule_says(kernel, pull, out_ch, expected):
    # BENCHMARKS.md, "pull alone": the C form wins for 64->64 3x3 -> 7x7, ties for 16->16 and
    # for 5x5 -> 7x7; with h = 1 the pull is the push kernel itself
    assert separable_pays(kernel, pull, out_ch) is expected


@pytest.mark.skipif(
    native.find_compiler() is None or not native.native_enabled(), reason="no C kernels"
)
class TestExactPullOp:
    """The C form of the exact pull as a torch.library custom op."""

    def _layer(self):
        # strided: the rule computes the pull apart, in the C separable form (stride 1 shares
        # the push's products)
        return PushPull2d(8, 64, 3, stride=2, padding=1, bias=True)

    def test_runs_the_c_kernel_not_a_large_convolution(self):
        layer, x = self._layer(), torch.randn(2, 8, 12, 12)
        with torch.profiler.profile() as prof:
            layer(x)
        names = {event.name for event in prof.events()}
        assert "timm_pushpull::exact_pull" in names
        assert sum(name == "aten::conv2d" for name in names) == 1  # the push conv only

    def test_opcheck(self):
        from timm_pushpull.layers.exact_pull import exact_pull

        x = torch.randn(2, 6, 9, 11, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
        torch.library.opcheck(
            exact_pull, (x, weight, bias, [7, 5], [2, 1], [3, 3, 2, 1], [1, 1], 2)
        )

    def test_compile_export_fx_and_vmap_see_one_op(self):
        layer, x = self._layer().eval(), torch.randn(2, 8, 10, 10)
        expected = layer(x)
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected)
        exported = torch.export.export(layer, (x,))
        targets = {node.target for node in exported.graph.nodes}
        assert torch.ops.timm_pushpull.exact_pull.default in targets
        torch.testing.assert_close(exported.module()(x), expected)
        traced = torch.fx.symbolic_trace(layer)
        torch.testing.assert_close(traced(x), expected)
        batched = torch.func.vmap(layer)(torch.stack([x, 2 * x]))
        torch.testing.assert_close(batched, torch.stack([expected, layer(2 * x)]))

    @pytest.mark.parametrize("in_ch", [3, 8])  # the planar and the channels-last map kernels
    def test_layer_gradients_through_the_op_equal_the_papers_formula(self, in_ch):
        # the layer rectifies the op's output in place (a view made inside a custom op would
        # refuse that under autograd); gradients against relu(x*k) - alpha relu(x*pull(k))
        layer = PushPull2d(in_ch, 64, 3, padding=1, learn_alpha=True, dtype=torch.float64)
        assert "c_separable" in layer.preferred_paths  # the pull's form apart
        x = torch.randn(2, in_ch, 9, 8, dtype=torch.float64, requires_grad=True)
        weight, alpha = layer.push.weight, layer.alpha
        with force_path("c_separable"):
            got = torch.autograd.grad(layer(x).sin().sum(), (x, weight, alpha))
        push = F.relu(F.conv2d(x, weight, padding=1))
        pull = F.relu(_reference_pull(x, weight, None, 2.0, 1, 1, 1, 1))
        expected = push - F.relu(alpha).view(1, -1, 1, 1) * pull
        want = torch.autograd.grad(expected.sin().sum(), (x, weight, alpha))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)

    def test_training_under_compile(self):
        layer, x = self._layer(), torch.randn(2, 8, 10, 10)
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        (grad,) = torch.autograd.grad(compiled(x).square().sum(), layer.push.weight)
        (expected,) = torch.autograd.grad(layer(x).square().sum(), layer.push.weight)
        torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3),  # C pull, apart
        dict(in_channels=16, out_channels=16, kernel_size=3, padding=1),  # shared form
        dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, pull_mode="fast"),
    ],
)
def test_inference_output_keeps_an_nchw_inputs_layout(kwargs):
    # a channels-last response turned the rest of an NCHW model channels-last, and every later
    # convolution then converted its weights on each call (8% of a resnet50_pp_b1 forward pass)
    layer = PushPull2d(**kwargs).eval()
    x = torch.randn(2, kwargs["in_channels"], 16, 16)
    with torch.no_grad():
        out = layer(x)
        assert out.is_contiguous() and not out.is_contiguous(memory_format=torch.channels_last)
        cl = layer(x.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, cl)
