"""The shared form of a stride-1 push-pull layer: push and exact pull from one matrix product."""

import itertools
import pickle
import threading

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import timm_pushpull  # noqa: F401  (registers the models)
from timm_pushpull import native
from timm_pushpull.layers import PushPull2d, exact_path, pull_kernel_size
from timm_pushpull.layers import push_and_pull as shared
from timm_pushpull.layers.exact_path import force_path, shared_taps_pay
from timm_pushpull.layers.exact_pull import blas_gemm

needs_kernel = pytest.mark.skipif(
    native.find_compiler() is None
    or not native.native_enabled()
    or blas_gemm(torch.float64) is None,
    reason="no C compiler or no MKL: the layer computes the branches apart",
)


def paper_layer(x, weight, bias, h, padding, alpha, rectify=True, attention=None):
    """relu(x * k + b) - alpha relu(x * k_pull - b), k_pull = -resize(k) (float64, by hand)."""
    sh, sw = weight.shape[-2:]
    ph, pw = pull_kernel_size(sh, h), pull_kernel_size(sw, h)
    pull_kernel = -F.interpolate(
        weight.double(), size=(ph, pw), mode="bilinear", align_corners=True
    )
    # the authors' pull padding p//2 - s//2 + padding; the extra pixel of an even push kernel
    # goes bottom/right
    top, left = ph // 2 - sh // 2 + padding, pw // 2 - sw // 2 + padding
    bottom, right = ph - sh + 2 * padding - top, pw - sw + 2 * padding - left
    bias = None if bias is None else bias.double()
    push = F.conv2d(x.double(), weight.double(), bias, 1, padding)
    pull = F.conv2d(
        F.pad(x.double(), (left, right, top, bottom)),
        pull_kernel,
        None if bias is None else -bias,
        1,
        0,
    )
    if rectify:
        push, pull = F.relu(push), F.relu(pull)
    if attention is not None:
        push = attention(push)
    return push - alpha.double() * pull


# in, out, kernel, padding, h, bias
CASES = [
    (16, 8, 3, 1, 2.0, True),  # a CIFAR ResNet block: 3x3 -> 7x7
    (3, 5, 5, 2, 2.0, False),  # 5x5 -> 11x11
    (6, 4, (3, 2), 1, 2.5, True),  # non-square, even width, non-integer h
    (12, 8, 4, 1, 2.0, True),  # even kernel: the pull's padding is asymmetric
    (5, 7, 3, 0, 1.5, False),  # no padding, 3x3 -> 5x5
    (8, 8, 3, 1, 3.0, True),  # 3x3 -> 9x9
    (8, 6, 1, 0, 2.0, True),  # 1x1 kernel: the pull is a 3x3 box of the push
    (8, 8, 3, 1, 1.0, False),  # h = 1: the pull kernel is the push kernel
    # 40 outputs: the sums four vectors at a time, then their remainders, each channel its bias
    (4, 40, 3, 1, 2.0, True),
]


def _layer(case, dtype, **kwargs) -> PushPull2d:
    in_ch, out_ch, kernel, padding, h, bias = case
    layer = PushPull2d(
        in_ch, out_ch, kernel, 1, padding, bias=bias, pull_scale=h, dtype=dtype, **kwargs
    )
    if bias:
        torch.nn.init.normal_(layer.push.bias)
    return layer


@needs_kernel
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case", CASES)
def test_layer_equals_the_papers_definition(case, dtype, tolerance):
    layer = _layer(case, dtype, learn_alpha="channel")
    x = torch.randn(2, case[0], 13, 11, dtype=dtype)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, case[4], case[3], layer.alpha)
    got = []
    with force_path("shared"):  # every geometry, whatever the speed rule says
        with torch.no_grad():  # the inference op: the inhibition inside the kernel
            for layout in (torch.contiguous_format, torch.channels_last):  # kept in the output
                got.append(layer.eval()(x.contiguous(memory_format=layout)))
                assert got[-1].is_contiguous(memory_format=layout)
        for layout in (torch.contiguous_format, torch.channels_last):
            got.append(layer.train()(x.contiguous(memory_format=layout)))  # both branches
            assert got[-1].is_contiguous(memory_format=layout)
    for out in got:
        error = (out.double() - expected).abs().max() / expected.abs().max()
        assert error < tolerance, error.item()


@needs_kernel
def test_variants_that_need_both_branches():
    case = CASES[0]
    x = torch.randn(2, 16, 10, 9, dtype=torch.float64)
    for kwargs in ({"rectify": False}, {"attention": "se", "attention_reduction": 4}):
        layer = _layer(case, torch.float64, **kwargs).eval()
        with torch.no_grad(), force_path("shared"):
            out = layer(x)
        attention = layer.attention if "attention" in kwargs else None
        alpha = torch.tensor(1.0, dtype=torch.float64)
        expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, alpha,
                               rectify=kwargs.get("rectify", True), attention=attention)  # fmt: skip
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize("case", CASES[:4])
def test_gradients_equal_the_papers_formula(case):
    layer = _layer(case, torch.float64, learn_alpha="scalar")
    x = torch.randn(2, case[0], 9, 10, dtype=torch.float64, requires_grad=True)
    params = [x, layer.push.weight, layer.alpha] + ([layer.push.bias] if case[-1] else [])
    with force_path("shared"):
        got = torch.autograd.grad(layer(x).sin().sum(), params)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, case[4], case[3], layer.alpha)
    want = torch.autograd.grad(expected.sin().sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("gemm_pixels", [1, 70, 10_000])
@pytest.mark.parametrize("batch,threads", [(1, 2), (3, 2), (2, 1)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_every_ring_and_band_boundary(gemm_pixels, batch, threads, layout, monkeypatch):
    # one row per GEMM (the ring wraps every 7 rows), a few, or the whole image at once; one image
    # split into bands over two threads (each recomputing its first rows), or whole images
    monkeypatch.setattr(shared, "GEMM_PIXELS", gemm_pixels)
    layer = _layer(CASES[0], torch.float64).eval()
    x = torch.randn(batch, 16, 41, 23, dtype=torch.float64)  # large enough for two threads
    x = x.contiguous(memory_format=layout)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad(), force_path("shared"):
            out = layer(x)
    finally:
        torch.set_num_threads(previous)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, layer.alpha)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@needs_kernel
def test_the_layer_runs_no_convolution():
    layer, x = _layer(CASES[0], torch.float32), torch.randn(2, 16, 12, 12)
    layer.push.bias.requires_grad_(False)  # its gradient is a sum over the masked gradients
    for grad in (True, False):
        with torch.profiler.profile(record_shapes=True) as prof, torch.set_grad_enabled(grad), \
                force_path("shared"):  # fmt: skip
            out = layer(x)
            if grad:
                out.sum().backward()
        names = {event.name for event in prof.events()}
        assert "aten::conv2d" not in names and "timm_pushpull::exact_pull" not in names
        # in inference the kernel runs without the dispatcher (no op to record)
        assert ("timm_pushpull::push_pull_train" in names) is grad
        # in training too the kernel applies the ReLUs and the inhibition, and its backward
        # pass forms the branches' gradients: no pass of its own over the activations for either
        elementwise = {"aten::relu", "aten::relu_", "aten::clamp_min", "aten::clamp_min_",
                       "aten::addcmul", "aten::mul", "aten::threshold_backward", "aten::where"}  # fmt: skip
        passes = [event.name for event in prof.events()
                  if event.name in elementwise and list(out.shape) in event.input_shapes]  # fmt: skip
        assert not passes


@needs_kernel
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("alpha_shape,keep_pull", [((), False), ((), True), ((1, 4, 1, 1), True)])
def test_opcheck_the_training_ops(layout, alpha_shape, keep_pull):
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64).contiguous(memory_format=layout)
    weight = torch.randn(4, 6, 3, 2, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    alpha = torch.rand(alpha_shape, dtype=torch.float64)
    geometry = ([7, 5], [1, 0], [3, 3, 2, 1])
    for tensor in (x, weight, bias) + ((alpha,) if keep_pull else ()):
        tensor.requires_grad_(True)
    torch.library.opcheck(shared.push_pull_train, (x, weight, bias, alpha, *geometry, keep_pull))
    _, mask, pull = shared.push_pull_train(x, weight, bias, alpha, *geometry, keep_pull)
    assert mask.dtype == torch.uint8 and mask.is_contiguous(memory_format=torch.channels_last)
    assert pull.numel() == (mask.numel() if keep_pull else 0)
    grad = torch.randn(2, 4, 9, 10, dtype=torch.float64).contiguous(memory_format=layout)
    args = (grad, x.detach(), weight.detach(), alpha.detach(), mask, *geometry)
    torch.library.opcheck(shared.push_pull_train_backward, (*args, True, True))


@needs_kernel
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_training_ops_mask_and_pull_are_the_definitions(layout):
    # the kernel's mask: the ReLUs that pass a gradient, for the pre-activations of push_and_pull
    # (tested against the paper's formula above), by PyTorch's own threshold_backward
    x = torch.randn(3, 6, 9, 11, dtype=torch.float64).contiguous(memory_format=layout)
    weight, bias = torch.randn(5, 6, 3, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    alpha = torch.rand(5, dtype=torch.float64)
    geometry = ([7, 7], [1, 1], [3, 3, 3, 3])
    push, pull = shared.push_and_pull(x, weight, bias, *geometry)
    response, mask, kept = shared.push_pull_train(x, weight, bias, alpha, *geometry, True)
    ones = torch.ones_like(push)
    for bit, branch in ((1, push), (2, pull)):
        passes = torch.ops.aten.threshold_backward(ones, branch, 0) != 0
        assert torch.equal(mask & bit != 0, passes)
    torch.testing.assert_close(kept, pull, rtol=1e-12, atol=1e-12)
    expected = push.relu() - alpha.view(1, -1, 1, 1) * pull.relu()
    torch.testing.assert_close(response, expected, rtol=1e-12, atol=1e-12)
    assert response.is_contiguous(memory_format=layout)


@needs_kernel
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("alpha", [torch.tensor(0.7), torch.tensor([0.5, 1.0, 2.0, 0.0])])
def test_the_training_ops_gradients_at_zero_and_nan_pre_activations(layout, alpha):
    # the C backward forms the branches' gradients from the response's: as PyTorch's ReLU and
    # multiplication pass them (none where a pre-activation is <= 0, including -0.0; NaN passes),
    # the same with the C kernels off
    alpha = alpha.double()
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64).contiguous(memory_format=layout)
    weight = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    geometry = ([7, 7], [1, 1], [3, 3, 3, 3])
    push, pull = (torch.randn(2, 4, 9, 11, dtype=torch.float64) for _ in range(2))
    push[0, 1, 2, :4] = torch.tensor([0.0, -0.0, float("nan"), 1e-300])
    pull[1, 3, 4, :4] = torch.tensor([float("nan"), 0.0, -0.0, -1e-300])
    grad = torch.randn(2, 4, 9, 11, dtype=torch.float64).contiguous(memory_format=layout)
    # PyTorch's own gradients of the definition, relu(push) - alpha * relu(pull)
    leaves = [t.clone().requires_grad_(True) for t in (push, pull)]
    response = leaves[0].relu() - alpha.reshape(1, -1, 1, 1) * leaves[1].relu()
    grad_push, grad_pull = torch.autograd.grad(response, leaves, grad)
    expected = shared.push_and_pull_backward(grad_push, grad_pull, x, weight, *geometry, True, True)
    mask = shared.relu_mask(push, pull)
    ones = torch.ones_like(push)
    for bit, branch in ((1, push), (2, pull)):
        assert torch.equal(mask & bit != 0, torch.ops.aten.threshold_backward(ones, branch, 0) != 0)
    for enabled in (True, False):
        with native.native_kernels(enabled):
            got = shared.push_pull_train_backward(grad, x, weight, alpha, mask, *geometry,
                                                  True, True)  # fmt: skip
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("enabled", [True, False])
def test_an_alpha_of_the_wrong_size_is_refused(enabled):
    # the C kernel read alpha[c] for every output channel: 3 values for 4 channels read past them
    x, weight = torch.randn(1, 4, 6, 6), torch.randn(4, 4, 3, 3)
    geometry = ([7, 7], [1, 1], [3, 3, 3, 3])
    with native.native_kernels(enabled):
        with pytest.raises(ValueError, match=r"alpha must hold 1 or 4 \(out_channels\)"):
            shared.push_pull_train(x, weight, None, torch.ones(3), *geometry, False)
        with pytest.raises(ValueError, match=r"alpha must hold 1 or 4 \(out_channels\)"):
            shared.push_pull_response(x, weight, None, torch.ones(3), *geometry)


def test_a_learned_alpha_needs_the_pull_kept():
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    weight = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    geometry = ([7, 7], [1, 1], [3, 3, 3, 3])
    response = shared.push_pull_train(x, weight, None, alpha, *geometry, False)[0]
    with pytest.raises(RuntimeError, match="keep_pull=True"):
        response.sum().backward()


def test_inconsistent_padding_is_refused_with_a_clear_error():
    x, weight = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="pull padding"):
        shared.push_and_pull(x, weight, None, [7, 7], [1, 1], [3, 3, 3, 2])


@needs_kernel
def test_opcheck_both_ops():
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 6, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    geometry = ([7, 5], [1, 0], [3, 3, 2, 1])
    torch.library.opcheck(shared.push_and_pull, (x, weight, bias, *geometry))
    alpha = torch.rand(4, dtype=torch.float64)
    args = (x.detach(), weight.detach(), bias.detach(), alpha, *geometry)
    torch.library.opcheck(shared.push_pull_response, args)


@needs_kernel
def test_compile_and_export_see_the_ops():
    layer, x = _layer(CASES[0], torch.float32).eval(), torch.randn(2, 16, 10, 10)
    with torch.no_grad(), force_path("shared"):
        expected = layer(x)
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected)
    with force_path("shared"):  # parameters need gradients: the training op
        exported = torch.export.export(layer, (x,))
    targets = {node.target for node in exported.graph.nodes}
    assert torch.ops.timm_pushpull.push_pull_train.default in targets
    torch.testing.assert_close(exported.module()(x), expected)


@needs_kernel
def test_flop_counter_counts_the_gemm_and_the_smoothing():
    layer, x = _layer(CASES[0], torch.float32).eval(), torch.randn(1, 16, 5, 5)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), force_path("shared"):
        layer(x)
    # 16 inputs x 8 outputs x 9 taps per output pixel, plus the smoothing of 3x3 -> 7x7: the
    # interpolation rows [1, 2/3, 1/3], [1/3, 2/3, 1, 2/3, 1/3], [1/3, 2/3, 1] have 11 non-zero
    # taps per axis: 11 * 3 vertically (per column b) and 11 horizontally per output value
    per_output = 16 * 9 + 11 * 3 + 11
    assert counter.get_total_flops() == 2 * 8 * 25 * per_output


@pytest.mark.parametrize(
    "in_ch,out_ch,kernel,h,expected",
    [
        (16, 16, 3, 2.0, True),  # measured 2.3-3.7x a conv against 5.8-6.5x apart
        (64, 64, 3, 2.0, True),  # measured 1.5-1.7x against 2.8-3.1x
        # the CIFAR stem: shared 0.76x the branches apart's time in eval, 1.02-1.06x in training
        # alone, 0.95-0.99x in training inside resnet20_pp_b1 (run 16)
        (3, 16, 3, 2.0, True),
        (3, 16, 5, 2.0, False),  # shared 0.94x in eval, 1.18x in training (run 16)
        (2, 16, 3, 2.0, False),  # shared 0.89x in eval, 1.19x in training (run 16)
        (8, 64, 3, 2.0, True),  # shared 0.61x the C separable pull's time, 0.57x training (run 16)
        (1, 6, 5, 2.0, False),  # LeNet's first layer: 16x against 3.7x
    ],
)
def test_shared_form_where_the_measured_rule_says(in_ch, out_ch, kernel, h, expected):
    pull = (pull_kernel_size(kernel, h),) * 2
    assert shared_taps_pay(in_ch, out_ch, (kernel, kernel), pull) is expected
    layer = PushPull2d(in_ch, out_ch, kernel, padding=kernel // 2, pull_scale=h)
    assert (layer.preferred_paths[0] == "shared") is expected


def test_strided_dilated_grouped_and_multi_scale_layers_compute_the_branches_apart():
    for kwargs in ({"stride": 2}, {"dilation": 2}, {"groups": 2}, {"pull_scale": (1.5, 2.0)}):
        assert "shared" not in PushPull2d(16, 16, 3, padding=1, **kwargs).preferred_paths, kwargs
    assert PushPull2d(16, 16, 3, padding=1, pull_mode="fast").preferred_paths == ["fast"]


def test_resnet20_pp_b1_shares_taps_in_every_layer():
    model = timm.create_model("resnet20_pp_b1")
    layers = {
        n: m.preferred_paths[0] == "shared"
        for n, m in model.named_modules()
        if isinstance(m, PushPull2d)
    }
    assert "conv1" in layers and len(layers) == 7  # the 3-channel stem and six 16-channel layers
    assert all(layers.values())


@pytest.mark.parametrize("enabled", [True, False])
def test_op_gradients_with_and_without_the_c_kernel(enabled):
    case = CASES[3]  # even kernel, asymmetric pull padding, bias
    layer = _layer(case, torch.float64)
    x = torch.randn(2, 12, 8, 9, dtype=torch.float64, requires_grad=True)
    weight, bias = layer.push.weight, layer.push.bias
    geometry = [list(layer.pulls[0].pull_size), list(layer.padding), list(layer.pulls[0].sides)]
    with native.native_kernels(enabled):
        push, pull = shared.push_and_pull(x, weight, bias, *geometry)
        got = torch.autograd.grad((push.sin() + pull.cos()).sum(), (x, weight, bias))
    one = torch.tensor(1.0, dtype=torch.float64)
    push_ref = paper_layer(x, weight, bias, 2.0, 1, 0 * one, rectify=False)
    pull_ref = (paper_layer(x, weight, bias, 2.0, 1, one, rectify=False) - push_ref) / -1
    want = torch.autograd.grad((push_ref.sin() + pull_ref.cos()).sum(), (x, weight, bias))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("frozen", ["input", "weight"])
def test_gradients_when_only_one_side_needs_them(frozen):
    # the C backward skips one of its two GEMMs: a frozen layer, or an input without gradients
    layer = _layer(CASES[0], torch.float64)
    x = torch.randn(2, 16, 9, 8, dtype=torch.float64, requires_grad=frozen == "weight")
    layer.push.weight.requires_grad_(frozen == "input")
    wanted = x if frozen == "weight" else layer.push.weight
    (got,) = torch.autograd.grad(layer(x).sin().sum(), wanted)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, layer.alpha)
    (want,) = torch.autograd.grad(expected.sin().sum(), wanted)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_meta_tensors_take_the_branches_apart():
    # timm's default-config test runs models on the meta device, which autocast does not know
    layer = PushPull2d(16, 16, 3, padding=1, device="meta")
    assert layer.preferred_paths[0] == "shared"
    assert layer(torch.empty(2, 16, 8, 8, device="meta")).shape == (2, 16, 8, 8)


@needs_kernel
@pytest.mark.parametrize("budget", [None, 100_000])  # 100 kB: tiles of columns, both passes
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_tiles_of_columns_and_both_layouts_in_training(budget, threads, layout, monkeypatch):
    # a wide image: the forward ring in 16-column tiles that recompute their neighbours' columns,
    # the backward in tiles of input columns; NCHW gradients read through rings of transposed rows
    if budget is not None:
        monkeypatch.setattr(shared, "SCRATCH_BYTES_PER_THREAD", budget)
    layer = _layer(CASES[0], torch.float64, learn_alpha="channel")
    x = torch.randn(2, 16, 9, 201, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_(True)
    plan = shared.plan(x.shape, layer.push.weight.shape, [7, 7], [1, 1], [3, 3, 3, 3], 8)
    assert plan.fits and (plan.tile_cols < 201) == (budget is not None)
    params = [x, layer.push.weight, layer.push.bias, layer.alpha]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with force_path("shared"):
            out = layer(x)
            got = torch.autograd.grad(out.sin().sum(), params)
            with torch.no_grad():
                inference = layer.eval()(x)
    finally:
        torch.set_num_threads(previous)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, layer.alpha)
    want = torch.autograd.grad(expected.sin().sum(), params)
    assert out.is_contiguous(memory_format=layout) and inference.is_contiguous(memory_format=layout)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inference, expected, rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize(
    "weight_layout",
    [
        lambda w: w.contiguous(memory_format=torch.channels_last),  # model.to(channels_last)
        lambda w: w.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0),  # every stride reversed
        lambda w: torch.cat([w, w], dim=1)[:, ::2],  # a view with a gap between input channels
    ],
)
def test_the_kernel_reads_the_push_weights_at_their_strides(weight_layout):
    # the C kernel orders the GEMM's weights itself, from the push kernel's strides
    case = CASES[2]  # non-square kernel, even width, a bias
    layer = _layer(case, torch.float64, learn_alpha="channel")
    layer.push.weight = torch.nn.Parameter(weight_layout(layer.push.weight.detach()))
    x = torch.randn(2, case[0], 9, 8, dtype=torch.float64)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, case[4], case[3], layer.alpha)
    with force_path("shared"):
        with torch.no_grad():
            inference = layer.eval()(x)
        training = layer.train()(x)
    torch.testing.assert_close(inference, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(training, expected, rtol=1e-12, atol=1e-12)


def _lane_layers() -> list[PushPull2d]:
    return [
        PushPull2d(16, 16, 3, padding=1),  # the rules share it
        PushPull2d(3, 5, 5, padding=2),  # the rules keep the branches apart
        PushPull2d(16, 16, 3, padding=1, pull_scale=0.5),  # a pull smaller than the push
        PushPull2d(16, 16, 3, stride=2, padding=1),  # a geometry the shared ops do not compute
        PushPull2d(16, 16, 3, padding=1, pull_mode="fast"),
    ]


def _lane_inputs(channels: int) -> list[torch.Tensor]:
    x = torch.randn(2, channels, 9, 10)
    return [
        x,
        x.double(),
        x.half(),
        x.bfloat16(),
        x.contiguous(memory_format=torch.channels_last),
        x[:0],  # no images
        x[..., :2, :2],  # smaller than the push kernel with its padding on some layers
        torch.nn.Parameter(x),  # a Tensor subclass
    ]


@pytest.mark.parametrize("forced", [None, "shared", "c_separable", "direct"])
@pytest.mark.parametrize("kernels", [True, False])
def test_the_inference_lane_takes_the_shared_path_exactly_where_the_rules_do(forced, kernels):
    # eager_shared answers what layer_path would, from fewer checks: a True where layer_path says
    # otherwise would run the C kernel where it cannot or should not; a False where it says shared,
    # the slow way
    for layer, dtype in itertools.product(_lane_layers(), (torch.float32, torch.float64)):
        layer = layer.to(dtype)
        for x in _lane_inputs(layer.in_channels):
            for autocast in (False, True):
                with (
                    native.native_kernels(kernels),
                    force_path(forced),
                    torch.autocast("cpu", enabled=autocast),
                ):
                    try:
                        expected = exact_path.layer_path(layer, x) == "shared"
                    except RuntimeError:  # a forced path that cannot run here
                        expected = False
                    # a subclass (FakeTensor, a parameter) takes the full way: the kernel reads
                    # plain tensors' memory
                    expected = expected and type(x) is torch.Tensor
                    got = exact_path.eager_shared(layer, x, layer.push.weight)
                assert got is expected, (layer, x.dtype, x.shape, forced, kernels, autocast)


@needs_kernel
def test_inference_calls_through_the_lane_equal_the_definition():
    # eval and no_grad or inference_mode: the lane; a vmapped call and a call under a dispatch
    # mode (the FLOP counter) leave it and still give the definition's response
    layer = _layer(CASES[0], torch.float64).eval()
    assert layer.preferred_paths[0] == "shared"
    x = torch.randn(3, 16, 8, 9, dtype=torch.float64)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, layer.alpha)
    with torch.no_grad():
        plain = layer(x)
        with FlopCounterMode(display=False) as counter:
            counted = layer(x)
        mapped = torch.func.vmap(layer)(x.unsqueeze(1)).squeeze(1)
    with torch.inference_mode():
        inference = layer(x)
    assert counter.get_total_flops() > 0
    for out in (plain, counted, mapped, inference):
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_a_layer_pickled_before_its_kernel_geometry_existed_loads_and_computes():
    layer = PushPull2d(16, 8, 3, padding=1).eval()
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        expected = layer(x)
    del layer.__dict__["kernel_geometry"]  # as pickled by an earlier version
    restored = pickle.loads(pickle.dumps(layer))
    assert restored.kernel_geometry == ([7, 7], [1, 1], [3, 3, 3, 3])
    with torch.no_grad():
        torch.testing.assert_close(restored(x), expected)


@needs_kernel
def test_the_lane_asks_again_when_what_its_answer_depends_on_changes(monkeypatch):
    layer = PushPull2d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 9, 10)

    def shared_here(x):
        return exact_path.eager_shared(layer, x, layer.push.weight)

    assert shared_here(x)
    with native.native_kernels(False):
        assert not shared_here(x)
    assert shared_here(x)
    assert not shared_here(x[:0])  # no images
    assert shared_here(x)
    monkeypatch.setattr(shared, "SCRATCH_BYTES_PER_THREAD", 64)  # no plan fits
    assert not shared_here(x)
    monkeypatch.undo()
    assert shared_here(x)
    layer.double()
    assert not shared_here(x)  # float32 input, float64 kernel
    assert shared_here(x.double())
    layer.push.weight = torch.nn.Parameter(torch.randn(16, 16, 3, 65, dtype=torch.float64))
    assert not shared_here(x.double())  # a kernel wider than the C kernels take


@needs_kernel
def test_two_threads_calling_one_layer_with_different_shapes_get_their_own_answers():
    # the lane keeps one answer per layer and the kernel calls' arguments per shape: threads that
    # alternate shapes on one layer must never run a call with another shape's arguments
    layer = _layer(CASES[0], torch.float64).eval()
    inputs = [torch.randn(2, 16, 7 + i, 9 + 2 * i, dtype=torch.float64) for i in range(4)]
    expected = [
        paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, layer.alpha) for x in inputs
    ]
    errors: list[str] = []

    def run(order: list[int]) -> None:
        with torch.no_grad():
            for _ in range(25):
                for i in order:
                    out = layer(inputs[i])
                    if out.shape != expected[i].shape or not torch.allclose(out, expected[i]):
                        errors.append(f"input {i}")

    threads = [
        threading.Thread(target=run, args=(order,)) for order in ([0, 1, 2, 3], [3, 2, 1, 0])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:5]


@needs_kernel
@pytest.mark.parametrize("learn_alpha", [False, "channel"])
def test_the_kernel_rectifies_alpha_in_inference_as_the_layer_does(learn_alpha):
    # inference calls hand the C kernel the layer's alpha as it is: relu(alpha) is the kernel's,
    # NaN kept as torch.relu keeps it
    layer = _layer(CASES[0], torch.float64, learn_alpha=learn_alpha).eval()
    values = [-0.5, 0.0, 0.7, 2.0, float("nan"), -3.0, 1.0, -0.0]
    x = torch.randn(2, 16, 8, 9, dtype=torch.float64)
    for value in values if not learn_alpha else [None]:
        with torch.no_grad():
            if learn_alpha:
                layer.alpha.copy_(torch.tensor(values).view(1, -1, 1, 1))
            else:
                layer.alpha.fill_(value)
            got = layer(x)
        rectified = F.relu(layer.alpha.detach())
        expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, rectified)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


@needs_kernel
def test_the_lane_switched_off_sends_calls_the_full_way_with_the_same_results():
    layer = _layer(CASES[0], torch.float64, learn_alpha="channel").eval()
    x = torch.randn(2, 16, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        through_lane = layer(x)
        with exact_path.eager_lane(False):
            assert not exact_path.eager_shared(layer, x, layer.push.weight)
            full_way = layer(x)
        assert exact_path.eager_shared(layer, x, layer.push.weight)
    torch.testing.assert_close(through_lane, full_way, rtol=1e-13, atol=1e-13)
    # in training the lane only skips the path's choice: the same op, outputs and gradients
    params = [layer.push.weight, layer.push.bias, layer.alpha]
    got = []
    for lane in (True, False):
        with exact_path.eager_lane(lane):
            out = layer.train()(x)
        got.append((out, *torch.autograd.grad(out.sin().sum(), params)))
    for lane_value, full_value in zip(*got):
        torch.testing.assert_close(lane_value, full_value, rtol=1e-13, atol=1e-13)


@needs_kernel
def test_the_lane_allocates_on_the_cpu_whatever_the_default_device():
    # torch.set_default_device moves every allocation without a device: the lane's output must
    # stay with its CPU input, where the kernel writes it
    layer = _layer(CASES[0], torch.float64).eval()
    x = torch.randn(2, 16, 6, 7, dtype=torch.float64)
    expected = paper_layer(x, layer.push.weight, layer.push.bias, 2.0, 1, layer.alpha)
    torch.set_default_device("meta")
    try:
        with torch.no_grad():
            got = layer(x)
    finally:
        torch.set_default_device(None)
    assert got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
