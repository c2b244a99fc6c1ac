"""The exact push-pull layer at its edges (issue 25): non-finite inputs, compiled training, inference
mode, tiny and huge geometries, h < 1, bounded scratch memory and the output layout.

Every expectation comes from the paper's definition, written out here in float64:
``relu(x * k + b) - alpha * relu(x * (-resize(k)) - b)`` with PyTorch's convolution.
"""

import threading

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import timm_pushpull  # noqa: F401  (registers the models)
from timm_pushpull import native
from timm_pushpull.layers import PushPull2d, force_path, pull_kernel_size

needs_c = pytest.mark.skipif(
    native.find_compiler() is None or not native.native_enabled(), reason="no C kernels"
)


def definition(layer: PushPull2d, x: torch.Tensor) -> torch.Tensor:
    """The layer by its definition, in float64: the pull kernel is the push kernel resized
    (bilinear, align_corners=True) to floor(s*h) (+1 if even), negated, centred on the push's."""
    weight = layer.push.weight.double()
    bias = None if layer.push.bias is None else layer.push.bias.double()
    (sh, sw), h = weight.shape[-2:], layer.pull_scale
    ph, pw = pull_kernel_size(sh, h), pull_kernel_size(sw, h)
    pull_kernel = -F.interpolate(weight, size=(ph, pw), mode="bilinear", align_corners=True)
    (dh, dw), (pad_h, pad_w) = layer.dilation, layer.padding
    top, left = dh * (ph // 2 - sh // 2) + pad_h, dw * (pw // 2 - sw // 2) + pad_w
    bottom, right = dh * (ph - sh) + 2 * pad_h - top, dw * (pw - sw) + 2 * pad_w - left
    x = x.double()
    push = F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    pull = F.conv2d(
        F.pad(x, (left, right, top, bottom)), pull_kernel, None if bias is None else -bias,
        layer.stride, 0, layer.dilation, layer.groups,
    )  # fmt: skip
    return F.relu(push) - F.relu(layer.alpha.double()) * F.relu(pull)


def assert_same_non_finite(out: torch.Tensor, expected: torch.Tensor) -> None:
    for test in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(test(out), test(expected)), (test.__name__, test(out).sum().item(),
                                                         test(expected).sum().item())  # fmt: skip
    finite = torch.isfinite(expected)
    torch.testing.assert_close(out.double()[finite], expected[finite], rtol=1e-4, atol=1e-4)


# 8->8 3x3: the shared form (inference op, training op); 3->64 7x7 /2: the C separable pull
NON_FINITE_LAYERS = [dict(in_channels=8, out_channels=8, kernel_size=3, padding=1),
                     dict(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3)]  # fmt: skip


@pytest.mark.parametrize("kwargs", NON_FINITE_LAYERS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("mode", ["no_grad", "train"])
def test_non_finite_inputs_propagate_as_in_the_definition(kwargs, value, mode):
    # the fused inference kernel's ReLU turned NaN into 0; the factored sums turn an infinity into
    # NaN where the convolution gives an infinity
    layer = PushPull2d(**kwargs, bias=True)
    x = torch.randn(2, kwargs["in_channels"], 12, 12)
    x[0, 0, 5, 5] = value
    x[1, -1, 2, 9] = -value
    expected = definition(layer, x)
    assert not torch.isfinite(expected).all()
    if mode == "no_grad":
        with torch.no_grad():
            out = layer.eval()(x)
    else:
        out = layer.train()(x)
    assert_same_non_finite(out.detach(), expected)


@needs_c
@pytest.mark.parametrize("out_channels", [4, 16])  # channels in a remainder alone; blocks of 8
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_in_the_first_block_of_an_nchw_inference(out_channels, value):
    # the inference kernel writes an NCHW output 8 columns by 8 channels at a time and checks the
    # responses there: values that reach the first block of columns alone (column 1 of 16, a 7x7
    # pull) must still send the call to the definition
    layer = PushPull2d(4, out_channels, 3, padding=1, bias=True).eval()
    x = torch.randn(2, 4, 10, 16)
    x[0, 1, 4, 1] = value
    assert layer.path(x) == "shared"
    expected = definition(layer, x)
    assert not torch.isfinite(expected[..., 8:]).logical_not().any()
    with torch.no_grad():
        out = layer(x)
    assert_same_non_finite(out, expected)


@needs_c
def test_backward_ops_fake_strides_match_the_real_ones():
    # the weight gradient of the exact pull (one group) came back strided, its fake contiguous:
    # torch.compile's inductor asserts the fake's strides
    from timm_pushpull.layers.exact_pull import exact_pull_backward
    from timm_pushpull.layers.push_and_pull import push_and_pull_backward

    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    weight = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    grad = torch.randn(2, 4, 9, 11, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        args = (grad.contiguous(memory_format=layout), x.contiguous(memory_format=layout), weight)
        geometry = ([7, 7], [1, 1], [3, 3, 3, 3], [1, 1], 1)
        torch.library.opcheck(exact_pull_backward, (*args, *geometry, True, True))
        shared = ([7, 7], [1, 1], [3, 3, 3, 3])
        torch.library.opcheck(push_and_pull_backward, (args[0], *args, *shared, True, True))


def test_compiled_training_step_of_resnet50_pp_b1():
    # aot_eager_decomp_partition_crossref runs every custom op on fake and real tensors and
    # compares their metadata, strides included (inductor asserts them): a fast stand-in
    model = timm.create_model("resnet50_pp_b1")
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model, backend="aot_eager_decomp_partition_crossref")
    compiled(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x).square().mean().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-3, atol=1e-5, msg=name)


def _in_a_new_thread(fn):
    # the C kernels' scratch buffers are kept per thread: a new thread starts without any
    errors = []

    def run():
        try:
            fn()
        except Exception as error:  # noqa: BLE001  (handed to the test's thread)
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def test_gradients_after_an_inference_mode_pass():
    # a clean evaluation under inference_mode, then an input-gradient pass (an adversarial
    # attack): a scratch buffer first made under inference_mode is an inference tensor
    model = timm.create_model("resnet18_pp").eval()
    x = torch.randn(1, 3, 32, 32)

    def evaluate_then_attack():
        with torch.inference_mode():
            clean = model(x)
        adversarial = x.clone().requires_grad_(True)
        out = model(adversarial)
        (grad,) = torch.autograd.grad(out.sum(), adversarial)
        assert grad.abs().sum() > 0
        torch.testing.assert_close(out.detach(), clean)

    _in_a_new_thread(evaluate_then_attack)


@pytest.mark.parametrize("kwargs,size", [(dict(kernel_size=5), 4), (dict(kernel_size=3), 2),
                                         (dict(kernel_size=3, padding=1, dilation=3), 4)])  # fmt: skip
@pytest.mark.parametrize("grad", [False, True])
def test_an_output_smaller_than_one_pixel_raises_as_a_conv(kwargs, size, grad):
    x = torch.randn(1, 8, size, size)
    conv, layer = nn.Conv2d(8, 8, **kwargs), PushPull2d(8, 8, **kwargs)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        conv(x)
    with torch.set_grad_enabled(grad), pytest.raises(RuntimeError, match="Kernel size can't be"):
        layer.train(grad)(x)


def test_pull_kernels_over_64_taps_fall_back():
    layer = PushPull2d(8, 8, 22, padding=10, pull_scale=3, dtype=torch.float64)
    assert layer.pulls[0].pull_size == (67, 67)
    x = torch.randn(1, 8, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer.eval()(x), definition(layer, x))
    torch.testing.assert_close(layer.train()(x), definition(layer, x))


@pytest.mark.parametrize("h", [0.5, 0.3, 0.8])
@pytest.mark.parametrize("use_native", [True, False])
def test_pull_scales_below_one(h, use_native):
    # the pull kernel is smaller than the push kernel: its padding is negative (a crop)
    layer = PushPull2d(16, 8, (3, 5), padding=(0, 1), pull_scale=h, bias=True, dtype=torch.float64)
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64)
    with native.native_kernels(use_native):
        with torch.no_grad():
            torch.testing.assert_close(layer.eval()(x), definition(layer, x))
        torch.testing.assert_close(layer.train()(x), definition(layer, x))


def _allocations(fn) -> list[int]:
    with torch.profiler.profile(profile_memory=True) as prof:
        fn()
    return [event.cpu_memory_usage for event in prof.events() if event.cpu_memory_usage > 0]


@needs_c
@pytest.mark.parametrize("kwargs", [dict(kernel_size=7, padding=3),  # stride 1: shared form
                                    dict(kernel_size=7, stride=2, padding=3)])  # fmt: skip
def test_scratch_memory_is_bounded_and_not_kept(kwargs):
    # a wide image: the shared form's ring of products held 15 rows x 2048 columns x 49 taps x
    # 32 channels (192 MB) and kept it after the call
    from timm_pushpull.layers import exact_pull

    layer = PushPull2d(32, 32, **kwargs)
    x = torch.randn(1, 32, 8, 2048)
    output_bytes = layer.push(x).numel() * 4
    bound = 3 * output_bytes + 2 * (8 << 20)  # a few outputs, a bounded scratch per thread

    def call_then_count_kept():
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                largest = max(_allocations(lambda g=grad: layer.train(g)(x).sum().backward()
                                           if g else layer.eval()(x)))  # fmt: skip
            assert largest <= bound, (grad, largest, bound)
        kept = sum(b.numel() * b.element_size() for b in exact_pull._scratch.buffers.values())
        assert kept <= exact_pull.RETAINED_SCRATCH_BYTES

    _in_a_new_thread(call_then_count_kept)


# every path a layer can take, each with the geometry it runs on
LAYOUT_LAYERS = [
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=1),  # shared
    dict(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3),  # C separable
    dict(in_channels=16, out_channels=4, kernel_size=3, stride=2, padding=1),  # direct
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, pull_mode="fast"),
]


@pytest.mark.parametrize("kwargs", LAYOUT_LAYERS)
@pytest.mark.parametrize("mode", ["eval", "train", "frozen"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_output_layout_is_the_convs_in_every_mode(kwargs, mode, layout):
    # with gradients on and every parameter frozen, and in training, an NCHW input came back
    # channels-last: under DDP the next conv's gradients then mismatch their buckets' strides
    layer = PushPull2d(**kwargs).train(mode == "train")
    layer.requires_grad_(mode != "frozen")
    conv = nn.Conv2d(**{k: v for k, v in kwargs.items() if k != "pull_mode"})
    x = torch.randn(2, kwargs["in_channels"], 16, 16).contiguous(memory_format=layout)
    with torch.set_grad_enabled(mode != "eval"):
        out = layer(x)
    assert out.stride() == conv(x).stride()
    assert out.is_contiguous(memory_format=layout)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kwargs", LAYOUT_LAYERS[:3])
def test_on_the_gpu_the_layer_equals_the_definition(kwargs):
    # float64 on the device (the direct form, cuDNN), then a bfloat16 autocast channels-last
    # training step whose output and gradients are finite and close to float32's
    layer = PushPull2d(**kwargs, bias=True, learn_alpha=True, dtype=torch.float64).cuda()
    x = torch.randn(2, kwargs["in_channels"], 16, 16, dtype=torch.float64)
    for mode in ("eval", "train"):
        out = layer.train(mode == "train")(x.cuda())
        torch.testing.assert_close(out.cpu(), definition(layer.cpu(), x), rtol=1e-10, atol=1e-10)
        layer.cuda()
    layer = layer.float().to(memory_format=torch.channels_last)
    x = x.float().cuda().contiguous(memory_format=torch.channels_last)
    reference = layer(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = layer(x)
    out.float().square().mean().backward()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.1)


def test_inputs_one_pixel_wide_stay_in_their_layout():
    # the fast layer computes channels-last, and PyTorch 2.14's CPU convolution crashed
    # (segmentation fault) on this channels-last input one pixel wide, where nn.Conv2d on the
    # NCHW input does not
    kwargs = dict(kernel_size=2, stride=(3, 2), padding=3, dilation=2, groups=2, bias=True)
    x = torch.randn(9, 6, 4, 1)
    expected = nn.Conv2d(6, 4, **kwargs)(x).shape
    assert PushPull2d(6, 4, **kwargs, pull_mode="fast")(x).shape == expected


@needs_c
@pytest.mark.parametrize(
    "kwargs,path",
    [
        (dict(stride=2), "c_separable"),  # the exact_pull op
        (dict(), "shared"),  # push_pull_train
        (dict(learn_alpha="channel", bias=True), "shared"),  # its bias and alpha gradients
        (dict(rectify=False), "shared"),  # push_and_pull
    ],
)
def test_double_backward_through_every_c_op(kwargs, path):
    # a gradient penalty (create_graph=True) raised "no autograd formula" for the C backward ops:
    # PyTorch's numerical check of the gradient's own gradient
    torch.manual_seed(0)
    layer = PushPull2d(3, 2, 3, padding=1, **kwargs).double().train()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    params = tuple(p for p in layer.parameters() if p.requires_grad)
    with force_path(path):
        assert layer.path(x) == path
        assert torch.autograd.gradgradcheck(lambda x, *_: layer(x), (x, *params), atol=1e-5)


@pytest.mark.parametrize("pad_mode", ["zero", "reflect"])
def test_cpu_layers_under_another_default_device_compute_on_the_cpu(pad_mode):
    # torch.set_default_device moves every allocation made without a device; the C kernels'
    # buffers and tables must stay on the CPU with their inputs (a meta or CUDA pointer handed to
    # C code crashes the process)
    from timm_pushpull.layers import BlurPool2d
    from timm_pushpull.layers import blur_pool as blur_pool_module
    from timm_pushpull.layers import exact_pull as exact_pull_module
    from timm_pushpull.layers import push_and_pull as shared_module

    torch.manual_seed(0)
    layers = {
        "shared": PushPull2d(16, 16, 3, padding=1),
        "strided": PushPull2d(3, 24, 7, stride=2, padding=3),
        "blur": BlurPool2d(16, "binomial", 3, 2, pad_mode=pad_mode),
    }
    inputs = {"shared": torch.randn(2, 16, 9, 10), "strided": torch.randn(2, 3, 21, 19)}
    inputs["blur"] = torch.randn(2, 16, 11, 12)

    def outputs():
        got = {}
        for name, layer in layers.items():
            x = inputs[name].clone().requires_grad_(True)
            with torch.no_grad():  # first: inference calls reach the C kernels without an op
                inference = layer.eval()(x)
            out = layer.train()(x)
            (grad,) = torch.autograd.grad(out.square().sum(), x)
            got[name] = (inference, out.detach(), grad)
        return got

    # the buffers and tables are made on first use and kept: first use under the other device
    exact_pull_module._scratch.__dict__.clear()
    for cached in (blur_pool_module.blur_matrix, blur_pool_module._source_index,
                   blur_pool_module._taps_tensor, shared_module._kernel_call):  # fmt: skip
        cached.cache_clear()
    torch.set_default_device("meta")
    try:
        got = outputs()
    finally:
        torch.set_default_device(None)
    expected = outputs()
    for name, tensors in got.items():
        for value, want in zip(tensors, expected[name]):
            assert value.device.type == "cpu", name
            torch.testing.assert_close(value, want, msg=name)


@pytest.mark.parametrize("path", [None, "shared", "c_separable", "direct"])
@pytest.mark.parametrize(
    "bias",
    [
        torch.zeros(8, dtype=torch.float64),  # another dtype: the C kernel would read it as float
        torch.zeros(3),  # fewer values than output channels: read past its end
        torch.zeros(8, 1),
    ],
    ids=["float64", "three", "two-dimensional"],
)
@pytest.mark.parametrize("training", [False, True])
def test_a_bias_nn_conv2d_refuses_is_refused_on_every_path(path, bias, training):
    conv = nn.Conv2d(16, 8, 3, padding=1)
    conv.bias = nn.Parameter(bias)
    x = torch.randn(1, 16, 6, 6)
    with pytest.raises(RuntimeError, match="bias"):
        conv(x)
    layer = PushPull2d(16, 8, 3, padding=1, bias=True)
    layer.push.bias = nn.Parameter(bias.clone())
    layer.train(training)
    with force_path(path), torch.set_grad_enabled(training):
        with pytest.raises(RuntimeError, match="bias"):
            layer(x)


@pytest.mark.parametrize("training", [False, True])
def test_an_alpha_replaced_by_one_of_the_wrong_size_is_refused(training):
    # inference calls hand the C kernel the layer's alpha as it is: a replacement with 3 values
    # for 8 output channels would be read past its end
    layer = PushPull2d(16, 8, 3, padding=1, learn_alpha="channel").train(training)
    layer.alpha = nn.Parameter(torch.ones(1, 3, 1, 1))
    with (
        torch.set_grad_enabled(training),
        pytest.raises(ValueError, match="alpha must hold 1 or 8"),
    ):
        layer(torch.randn(1, 16, 6, 6))


@pytest.mark.parametrize("shape", [(8, 12, 3, 3), (8, 16, 5, 5), (8, 16, 3)])
@pytest.mark.parametrize("path", [None, "shared"])
@pytest.mark.parametrize("training", [False, True])
def test_a_push_kernel_replaced_by_one_that_does_not_fit_is_refused(shape, path, training):
    # a weight with other input channels, another size than the pull was built for, or not 4-D:
    # the C kernels would read and write past their tensors; an error, as nn.Conv2d gives one
    layer = PushPull2d(16, 8, 3, padding=1).train(training)
    layer.push.weight = nn.Parameter(torch.randn(shape))
    forced = path if len(shape) == 4 and shape[1] == 16 else None  # "shared" cannot run otherwise
    with force_path(forced), torch.set_grad_enabled(training):
        with pytest.raises((RuntimeError, ValueError), match="channels|padding|stride"):
            layer(torch.randn(1, 16, 6, 6))
