"""The models outside eager PyTorch: ONNX (both exporters of ``torch.onnx.export``, run in
onnxruntime), TorchScript (``torch.jit.script``), ``torch.export`` and ``torch.compile``, with and
without anti-aliasing (README, "Exporters and runtimes").

Issue 26: the dynamo exporter found no ONNX function for the layers' custom ops, onnxruntime
refused the TorchScript-based exporter's blur pool (a float64 Conv), a dynamic batch axis broke
that exporter on the push-pull ImageNet stem, and TorchScript could not compile the blur pool.
"""

import io
import warnings

import onnxruntime
import pytest
import timm
import torch
import torch.nn as nn
from timm.models import create_feature_extractor
from torch.export import Dim

import timm_pushpull  # noqa: F401  (registers the models)
from timm_pushpull import native
from timm_pushpull.layers import BlurPool2d, MaxBlurPool2d, PushPull2d, blur_pool_class

TOLERANCE = 1e-4  # onnxruntime and TorchScript against eager PyTorch (README)
# One model per family, at a small input, with the anti-aliasing each family's tests use.
FAMILIES = [
    ("lenet5_a_pp", "bin3", 28),
    ("resnet20_pp_b1", "bin3", 32),
    ("wrn16_4_pp_b1", "tri3", 32),
    ("densenet40_12_pp_b1", "rect2", 32),
    ("resnet18_pp_b1", "bin3", 64),
]
# Both exporters on the anti-aliased models (push-pull and blur-pool layers); the plain ones add no
# layer path to the dynamo exporter, whose export takes seconds, so only the other exports them.
ONNX_CASES = [
    pytest.param(name, aa, size, dynamo, id=f"{name}-{aa}-{'dynamo' if dynamo else 'torchscript'}")
    for name, aa, size in FAMILIES
    for dynamo in (True, False)
] + [
    pytest.param(name, None, size, False, id=f"{name}-plain-torchscript")
    for name, _, size in FAMILIES
]


def _model(name: str, size: int, **kwargs) -> tuple[nn.Module, int]:
    """An eval model and its input channels. Its batch norms hold statistics of real activations
    and non-zero scales: timm zero-initialises the last norm of each residual block, which would
    hide the blocks' push-pull layers from the outputs."""
    model = timm.create_model(name, **kwargs)
    channels = model.pretrained_cfg["input_size"][0]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
            norm.momentum = 1.0  # the next batch's statistics become the running ones
        model.train()(torch.randn(8, channels, size, size))  # the distribution the tests feed
    return model.eval(), channels


def _onnx_session(model: nn.Module, x: torch.Tensor, dynamo: bool) -> onnxruntime.InferenceSession:
    """``torch.onnx.export`` as the README shows it, with a dynamic batch axis, in onnxruntime."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation
        if dynamo:
            program = torch.onnx.export(
                model, (x,), dynamic_shapes=({0: Dim("batch")},), dynamo=True, verbose=False
            )
            model_bytes = program.model_proto.SerializeToString()
        else:
            buffer = io.BytesIO()
            torch.onnx.export(
                model, (x,), buffer, input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                dynamo=False,
            )  # fmt: skip
            model_bytes = buffer.getvalue()
    return onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _assert_onnx_matches(model: nn.Module, x: torch.Tensor, dynamo: bool) -> None:
    """Exported with a batch of 2, run with 3 and 1: every output within TOLERANCE."""
    session = _onnx_session(model, x[:2], dynamo)
    for batch in (3, 1):
        inputs = torch.randn(batch, *x.shape[1:])
        outputs = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
        with torch.no_grad():
            expected = model(inputs)
        expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
        assert len(outputs) == len(expected)
        for out, reference in zip(outputs, expected):
            # outputs large enough for the tolerance to mean something
            assert reference.abs().max() > 0.1
            torch.testing.assert_close(torch.from_numpy(out), reference, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name, aa, size, dynamo", ONNX_CASES)
def test_models_export_to_onnx(name, aa, size, dynamo):
    model, channels = _model(name, size, aa=aa)
    _assert_onnx_matches(model, torch.randn(3, channels, size, size), dynamo)


@pytest.mark.parametrize(
    "name, aa, size", [("resnet20_pp_b1", "bin3", 32), ("resnet18_pp_b1", "bin3", 64)]
)
def test_models_keep_the_custom_ops_under_torch_export_and_compile(name, aa, size):
    # ONNX export takes the standard-op forms; torch.export and torch.compile must not (the CIFAR
    # model has the shared-products op and the blur pool, the ImageNet one also the strided pull)
    model, channels = _model(name, size, aa=aa)
    x = torch.randn(3, channels, size, size)
    with native.native_kernels(True):
        exported = torch.export.export(model, (x[:2],), dynamic_shapes=({0: Dim("batch")},))
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        with torch.no_grad():
            expected, from_compiled = model(x), compiled(x)
    assert any(str(node.target).startswith("timm_pushpull.") for node in exported.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), expected, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(from_compiled, expected, atol=TOLERANCE, rtol=0)


class _Parallel(nn.Module):
    """Several layers on one input: one export checks them all."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            outputs.append(layer(x))
        return outputs


def _pushpull_variants() -> _Parallel:
    """Every path of the layer: the shared-products op, the strided C pull (a 7x7 stem-like layer),
    an even kernel, fast pulls blurring input and output, multi-scale with SE, unrectified with
    SimAM and learned alpha, dilated groups."""
    layers = [
        PushPull2d(8, 8, 3, padding=1),
        PushPull2d(8, 16, 7, stride=2, padding=3),
        PushPull2d(8, 8, 4, padding=2, bias=True),
        PushPull2d(8, 16, 3, stride=2, padding=1, pull_mode="fast"),
        PushPull2d(8, 4, 3, padding=1, pull_mode="fast"),
        PushPull2d(8, 8, 3, padding=1, pull_scale=(1.5, 2, 3), attention="se", attention_reduction=2),
        PushPull2d(8, 8, 5, padding=2, attention="simam", rectify=False, learn_alpha="channel", bias=True),
        PushPull2d(8, 8, 3, padding=2, dilation=2, groups=2),
    ]  # fmt: skip
    return _Parallel(layers).eval()


def _blur_pool_variants() -> _Parallel:
    """Each filter type and pad mode, odd and even sizes (1 included), strides 1-3."""
    layers = [
        BlurPool2d(8, filter_type, size, stride, pad_mode)
        for filter_type, size, stride, pad_mode in [
            ("binomial", 1, 2, "reflect"), ("binomial", 3, 2, "reflect"), ("binomial", 4, 2, "reflect"),
            ("rect", 2, 2, "replicate"), ("tri", 5, 3, "replicate"), ("binomial", 7, 1, "zero"),
            ("rect", 4, 2, "zero"), ("tri", 3, 2, "circular"), ("binomial", 2, 3, "circular"),
        ]
    ]  # fmt: skip
    return _Parallel([*layers, MaxBlurPool2d(8, filter_size=5)]).eval()


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("variants", [_pushpull_variants, _blur_pool_variants])
def test_layer_variants_export_to_onnx(variants, dynamo):
    _assert_onnx_matches(variants(), torch.randn(3, 8, 12, 13), dynamo)


def _assert_scripted_matches(model: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in 2.14
        scripted = torch.jit.script(model)
    with torch.no_grad():
        expected, actual = model(x), scripted(x)
    if isinstance(expected, dict):  # an FX feature extractor
        expected, actual = list(expected.values()), list(actual.values())
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)
    return scripted


@pytest.mark.parametrize("antialiased", [False, True], ids=["plain", "aa"])
@pytest.mark.parametrize("name, aa, size", FAMILIES)
def test_models_compile_with_torchscript(name, aa, size, antialiased):
    model, channels = _model(name, size, aa=aa if antialiased else None)
    _assert_scripted_matches(model, torch.randn(2, channels, size, size))


def test_timm_resnet_with_our_aa_layer_compiles_with_torchscript():
    model, _ = _model("resnet18", 64, aa_layer=blur_pool_class("bin3"))
    x = torch.randn(2, 3, 64, 64)
    scripted = _assert_scripted_matches(model, x)
    buffer = io.BytesIO()  # what a user does next: save it and load it without Python code
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in 2.14
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=TOLERANCE, rtol=0)


def test_fx_traced_antialiased_model_compiles_with_torchscript():
    # timm's FX feature extraction keeps the blur pool a leaf function, which TorchScript compiles
    model, _ = _model("resnet20_pp", 32, aa="bin3")
    extractor = create_feature_extractor(model, return_nodes={"layer3": "layer3", "fc": "logits"})
    _assert_scripted_matches(extractor, torch.randn(2, 3, 32, 32))


def test_blur_pool_variants_compile_with_torchscript():
    _assert_scripted_matches(_blur_pool_variants(), torch.randn(2, 8, 12, 13))
