"""Differential fuzz test: PushPull2d against the paper's formula, written out here in float64.

Strisciuglio, Lopez-Antequera, Petkov (2020): ``relu(x * k + b) - alpha * relu(x * k_pull - b)``
with ``k_pull = -resize(k)``, the push kernel resized bilinearly with ``align_corners=True`` to
``floor(s*h)`` taps (+1 when even; ``h = 1`` keeps ``s``), centred on the push kernel (an even
push kernel's extra pixel of padding goes bottom/right) and applied with the push's stride,
dilation and groups. Nothing of the project's code computes the expectation: the resize is the
interpolation matrix below, the convolutions PyTorch's, in float64.

Seeded random cases (``random.Random(case index)``) over every dimension of issue 25: kernels 1-7
(even, non-square), stride 1-3, padding (ints, pairs, 'same', 'valid'), dilation, groups, bias, h
in [0.5, 3], fixed and learned alpha, batch 1-9, inputs smaller than the kernel (an error, as
``nn.Conv2d``'s), NCHW, channels-last and strided inputs, train / eval / no_grad /
inference_mode / frozen parameters, 1 and 2 threads, every path of the dispatcher forced
(:func:`timm_pushpull.layers.force_path`) and the C kernels off; outputs and all gradients
(float64), NaN and infinities. Channels-last inputs are at least 2 pixels wide: PyTorch 2.14's CPU
convolution itself crashes (segmentation fault) on some one pixel wide, e.g. float32 [9, 6, 4, 1]
with bias, stride (3, 2), padding 3, dilation 2 (the reference and the push convolution alike).
``TIMM_PUSHPULL_FUZZ_CASES=5000`` runs more than the default 320.
A failing case prints its index and parameters: ``random.Random(index)`` draws it again.
"""

import math
import os
import random

import pytest
import torch
import torch.nn.functional as F

from timm_pushpull import native
from timm_pushpull.layers import PushPull2d, force_path
from timm_pushpull.layers.exact_path import available_paths

CASES = int(os.environ.get("TIMM_PUSHPULL_FUZZ_CASES", "320"))
BLOCK = 10  # cases per test item, so that pytest-xdist spreads them
MODES = ("train", "eval", "no_grad", "inference_mode", "frozen")


def pull_size(size: int, h: float) -> int:
    if h == 1:
        return size
    taps = max(1, math.floor(size * h))
    return taps + 1 if taps % 2 == 0 else taps


def interpolation(size: int, new_size: int) -> torch.Tensor:
    """``[size, new_size]``: column u holds the weights of the ``size`` taps in resized tap u
    (linear, align_corners=True: tap u sits at u * (size - 1) / (new_size - 1); a single resized
    tap at 0, as PyTorch's interpolate puts it)."""
    matrix = torch.zeros(size, new_size, dtype=torch.float64)
    for u in range(new_size):
        source = u * (size - 1) / (new_size - 1) if new_size > 1 else 0.0
        first = min(math.floor(source), size - 1)
        fraction = source - first
        matrix[first, u] += 1 - fraction
        if fraction > 0:
            matrix[first + 1, u] += fraction
    return matrix


def paper_layer(x, weight, bias, alpha, h, stride, padding, dilation, groups, rectify=True):
    """The paper's layer in float64; ``padding`` a pair of ints, ``alpha`` the rectified one."""
    x, weight = x.double(), weight.double()
    bias = None if bias is None else bias.double()
    (sh, sw), (dh, dw) = weight.shape[-2:], dilation
    ph, pw = pull_size(sh, h), pull_size(sw, h)
    resized = torch.einsum("au,ocab,bv->ocuv", interpolation(sh, ph), weight, interpolation(sw, pw))
    top, left = dh * (ph // 2 - sh // 2) + padding[0], dw * (pw // 2 - sw // 2) + padding[1]
    bottom, right = dh * (ph - sh) + 2 * padding[0] - top, dw * (pw - sw) + 2 * padding[1] - left
    push = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    pull = F.conv2d(F.pad(x, (left, right, top, bottom)), -resized,
                    None if bias is None else -bias, stride, 0, dilation, groups)  # fmt: skip
    if rectify:
        push, pull = F.relu(push), F.relu(pull)
    return push - alpha.double() * pull


def draw(index: int) -> dict:
    """One case: the layer's arguments and how it is called."""
    rng = random.Random(index)
    shared_geometry = rng.random() < 0.35  # stride 1, no dilation, one group: the shared form
    groups = 1 if shared_geometry else rng.choice([1, 1, 2, 3])
    kernel = (
        (rng.randint(1, 7), rng.randint(1, 7)) if rng.random() < 0.3 else (rng.randint(1, 7),) * 2
    )
    stride = (1, 1) if shared_geometry else (rng.randint(1, 3), rng.choice([1, 2, 3]))
    dilation = (1, 1) if shared_geometry else rng.choice([(1, 1), (1, 1), (2, 2), (1, 2)])
    padding_kind = rng.choice(["int", "int", "pair", "same", "valid"])
    if padding_kind == "same" and not (all(k % 2 for k in kernel) and stride == (1, 1)):
        padding_kind = "int"
    padding = {
        "int": rng.randint(0, 3),
        "pair": (rng.randint(0, 3), rng.randint(0, 3)),
        "same": "same",
        "valid": "valid",
    }[padding_kind]
    h = rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, round(rng.uniform(0.5, 3.0), 3)])
    learn_alpha = rng.choice([False, False, "channel", "scalar"])
    return dict(
        in_channels=groups * rng.randint(1, 4 if groups > 1 else 12),
        out_channels=groups * rng.randint(1, 4 if groups > 1 else 12),
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=rng.random() < 0.5,
        pull_scale=h,
        learn_alpha=learn_alpha,
        alpha=None if learn_alpha else rng.choice([1.0, 0.0, round(rng.uniform(0, 2), 3)]),
        rectify=rng.random() < 0.9,
        batch=rng.randint(1, 9),
        too_small=rng.random() < 0.04,
        layout=rng.choice(["nchw", "nchw", "channels_last", "strided"]),
        mode=rng.choice(MODES),
        threads=rng.choice([1, 2]),
        dtype=rng.choice([torch.float64, torch.float64, torch.float64, torch.float32]),
        non_finite=rng.random() < 0.08,
        path=rng.random(),  # which path, among those that can run
        seed=rng.randrange(1 << 30),
    )


def _padding_pair(case: dict) -> tuple[int, int]:
    padding, kernel, dilation = case["padding"], case["kernel_size"], case["dilation"]
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return (padding, padding) if isinstance(padding, int) else padding


def _input(case: dict, generator: torch.Generator) -> torch.Tensor:
    kernel, dilation, stride = case["kernel_size"], case["dilation"], case["stride"]
    padding = _padding_pair(case)
    extent = [d * (k - 1) + 1 - 2 * p for k, d, p in zip(kernel, dilation, padding)]
    if case["too_small"] and max(extent) > 1:
        size = [max(1, e - 1) for e in extent]  # the padded input one pixel short of the kernel
    else:
        # a few output pixels, fewer for large batches and channels (the reference is float64)
        budget, rng = (
            max(1, 6 - case["batch"] // 3 - case["in_channels"] // 6),
            random.Random(case["seed"]),
        )
        size = [max(1, e) + s * rng.randint(0, budget) for e, s in zip(extent, stride)]
    shape = (case["batch"], case["in_channels"], *size)
    if case["layout"] == "channels_last" and min(size) == 1:
        case = {**case, "layout": "nchw"}  # PyTorch's own convolution crashes on some of these
    if case["layout"] == "strided":  # every other column of a wider tensor
        wide = torch.randn(*shape[:-1], 2 * shape[-1], generator=generator, dtype=case["dtype"])
        x = wide[..., ::2]
    else:
        x = torch.randn(*shape, generator=generator, dtype=case["dtype"])
        if case["layout"] == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    if case["non_finite"]:
        for value in (float("nan"), float("inf"), -float("inf")):
            x[tuple(int(torch.randint(n, (1,), generator=generator)) for n in x.shape)] = value
    return x


def _layer(case: dict, generator: torch.Generator) -> PushPull2d:
    names = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
             "groups", "bias", "pull_scale", "learn_alpha", "alpha", "rectify")  # fmt: skip
    layer = PushPull2d(**{n: case[n] for n in names}, dtype=case["dtype"])
    with torch.no_grad():
        for tensor in (layer.push.weight, layer.push.bias):
            if tensor is not None:
                tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=case["dtype"]))
        if case["learn_alpha"]:  # negative entries too: alpha enters as relu(alpha)
            layer.alpha.copy_(torch.randn(layer.alpha.shape, generator=generator) + 0.5)
    return layer


def _path(case: dict, layer: PushPull2d, x: torch.Tensor) -> str | None:
    """None (the rules), ``"c_off"`` (no C kernels) or a path the layer can take for ``x``; the
    shared form, which only some geometries can take, more often."""
    available = available_paths(layer, x)
    choices = [None, "c_off", *available] + ["shared"] * 2 * ("shared" in available)
    return choices[int(case["path"] * len(choices))]


def _run(case: dict) -> None:
    generator = torch.Generator().manual_seed(case["seed"])
    layer = _layer(case, generator)
    x = _input(case, generator)
    mode = case["mode"]
    layer.train(mode == "train")
    layer.requires_grad_(mode != "frozen")
    grads_wanted = mode in ("train", "eval", "frozen") and case["dtype"] == torch.float64
    grads_wanted = grads_wanted and not case["non_finite"]
    x.requires_grad_(mode in ("train", "eval", "frozen"))
    alpha = F.relu(layer.alpha)
    args = (case["pull_scale"], case["stride"], _padding_pair(case), case["dilation"])
    reference_args = (layer.push.weight, layer.push.bias, alpha, *args, case["groups"])
    try:
        expected = paper_layer(x, *reference_args, case["rectify"])
    except RuntimeError:  # the input is smaller than the kernel: nn.Conv2d's error
        expected = None
    path = _path(case, layer, x)
    previous = torch.get_num_threads()
    torch.set_num_threads(case["threads"])
    try:
        with (
            native.native_kernels(path != "c_off"),
            force_path(None if path == "c_off" else path),
            torch.inference_mode(mode == "inference_mode"),
            torch.set_grad_enabled(mode not in ("no_grad", "inference_mode")),
        ):
            if expected is None:
                with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
                    layer(x)
                return
            out = layer(x)
            if grads_wanted:
                weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
                params = [x] + [p for p in layer.parameters() if p.requires_grad]
                got = torch.autograd.grad((out * weights).sum(), params)
    finally:
        torch.set_num_threads(previous)
    context = f"path {path}, {case}"
    assert out.shape == expected.shape, f"shape {list(out.shape)}: {context}"
    assert out.dtype == case["dtype"], context
    with torch.no_grad():  # nn.Conv2d's layout
        conv = F.conv2d(x, layer.push.weight, None, layer.stride, layer.padding, layer.dilation,
                        layer.groups)  # fmt: skip
    for layout in (torch.contiguous_format, torch.channels_last):
        is_conv_like = conv.is_contiguous(memory_format=layout)
        assert out.is_contiguous(memory_format=layout) == is_conv_like, f"{layout}: {context}"
    got_out, want_out = out.detach().double(), expected.detach()
    for test in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(test(got_out), test(want_out)), f"{test.__name__}: {context}"
    finite = torch.isfinite(want_out)
    scale = max(1.0, want_out[finite].abs().max().item()) if finite.any() else 1.0
    tolerance = 1e-10 if case["dtype"] == torch.float64 else 2e-5
    error = (got_out - want_out)[finite].abs().max().item() / scale if finite.any() else 0.0
    assert error < tolerance, f"output error {error:.2e}: {context}"
    if grads_wanted:
        want = torch.autograd.grad((expected * weights).sum(), params)
        for index, (g, w) in enumerate(zip(got, want)):
            error = (g - w).abs().max().item() / max(1.0, w.abs().max().item())
            assert error < 1e-9, f"gradient {index} error {error:.2e}: {context}"


@pytest.mark.parametrize("first", range(0, CASES, BLOCK))
def test_layer_equals_the_papers_formula(first):
    for index in range(first, min(first + BLOCK, CASES)):
        case = draw(index)
        try:
            _run(case)
        except AssertionError as error:
            raise AssertionError(f"case {index}: {error}") from None


def test_the_cases_cover_every_dimension():
    # the draw, not the layer: every value the issue lists comes up in the default run
    cases = [draw(i) for i in range(CASES)]
    seen = {name: {repr(c[name]) for c in cases} for name in cases[0]}
    assert {"'same'", "'valid'"} <= seen["padding"]
    assert {repr(m) for m in MODES} <= seen["mode"] and {"1", "2"} <= seen["threads"]
    assert {"'nchw'", "'channels_last'", "'strided'"} <= seen["layout"]
    assert {"False", "'channel'", "'scalar'"} <= seen["learn_alpha"]
    assert {str(b) for b in range(1, 10)} <= seen["batch"]
    assert any(c["kernel_size"][0] != c["kernel_size"][1] for c in cases)
    assert {k for c in cases for k in c["kernel_size"]} == set(range(1, 8))
    assert {s for c in cases for s in c["stride"]} == {1, 2, 3} and "3" in seen["groups"]
    assert min(c["pull_scale"] for c in cases) == 0.5 and max(c["pull_scale"] for c in cases) == 3.0
    assert sum(c["too_small"] for c in cases) >= 5 and sum(c["non_finite"] for c in cases) >= 10
    paths = []
    for case in cases:
        generator = torch.Generator().manual_seed(case["seed"])
        layer = _layer(case, generator)
        paths.append(_path(case, layer, _input(case, generator)))
    expected = {None, "c_off", "shared", "c_separable", "torch_separable", "direct"}
    if native.find_compiler() is None or not native.native_enabled():
        expected -= {"shared", "c_separable"}
    assert {p: paths.count(p) >= 30 for p in expected} == dict.fromkeys(expected, True), paths
