"""Speed of the layers: push-pull against ``nn.Conv2d`` and the authors' layer, the exact pull's
forms against each other, ResNet-50 with push-pull layers, and blur-pool against timm's and kornia's.

Sections ``layers``, ``pull``, ``resnet50`` and ``blurpool`` of ``timm-pushpull bench``.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Callable

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BlurPool2d as TimmBlurPool2d

from .. import native
from ..layers import BlurPool2d, PushPull2d, convert_to_pushpull
from ..layers import exact_pull as exact_pull_module
from ..layers import push_and_pull as push_and_pull_module
from ..layers.exact_path import (
    force_path,
    pull_preferred_paths,
    separable_pays,
    torch_separable_pays,
)
from ..layers.exact_pull import exact_pull, exact_pull_definition
from ..layers.pull import Pull, pull_kernel_size, pull_weight
from .timing import (
    bench_extra,
    eval_and_train_rows,
    eval_fn,
    interleaved_medians,
    load_average,
    markdown_table,
    median_range,
    train_fn,
)


class AuthorsPushPull(nn.Module):
    """The original layer as the paper describes it: the pull kernel resized on every forward pass."""

    def __init__(self, conv: nn.Conv2d, pull_size: int = 7) -> None:
        super().__init__()
        self.conv = conv
        self.pull_size = pull_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight
        pull = -F.interpolate(
            weight, size=(self.pull_size,) * 2, mode="bilinear", align_corners=True
        )
        padding = self.pull_size // 2 - weight.shape[-1] // 2 + self.conv.padding[0]
        push = F.relu(self.conv(x))
        return push - F.relu(F.conv2d(x, pull, None, self.conv.stride, padding))


def bench_layers(rounds: int = 15) -> str:
    """(a) PushPull2d vs nn.Conv2d, 64->64 3x3 on 8x64x56x56."""
    x = torch.randn(8, 64, 56, 56)
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    layers = {
        "nn.Conv2d": conv,
        "authors' layer (resize every call)": AuthorsPushPull(conv),
        "PushPull2d exact": PushPull2d(64, 64, 3, padding=1),
        "PushPull2d fast": PushPull2d(64, 64, 3, padding=1, pull_mode="fast"),
    }
    rows = eval_and_train_rows(layers, x, rounds, "nn.Conv2d")
    return markdown_table(
        "Push-pull layer vs conv (64->64 3x3, 8x64x56x56)", ["layer", "mode", "ms", "vs conv"], rows
    )


class _Forced(nn.Module):
    """Runs a module with every exact push-pull layer on ``path`` (``force_path``), with the C
    kernels off (``"c_off"``: the paths taken without a C compiler), or with the C kernels mixing
    by MKL's GEMM alone (``"blas_gemm"``: the code before ``csrc/gemm.c``)."""

    def __init__(self, module: nn.Module, path: str) -> None:
        super().__init__()
        self.module, self.path = module, path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.path == "c_off":
            with native.native_kernels(False):
                return self.module(x)
        if self.path == "blas_gemm":
            with exact_pull_module.own_gemm(False):
                return self.module(x)
        with force_path(self.path):
            return self.module(x)


# (name, input shape, PushPull2d arguments): the issue-14 configurations
PULL_LAYERS = (
    ("64->64 3x3, h=2", (8, 64, 56, 56), dict(kernel_size=3, padding=1)),
    ("64->64 3x3, h=1.5", (8, 64, 56, 56), dict(kernel_size=3, padding=1, pull_scale=1.5)),
    ("64->64 3x3, h=3", (8, 64, 56, 56), dict(kernel_size=3, padding=1, pull_scale=3.0)),
    ("16->16 3x3, h=2", (64, 16, 32, 32), dict(kernel_size=3, padding=1)),
    ("256->256 3x3, h=2", (8, 256, 14, 14), dict(kernel_size=3, padding=1)),
    ("3->64 7x7 /2 stem, h=2", (8, 3, 224, 224), dict(kernel_size=7, stride=2, padding=3)),
)


def bench_layer_runs(runs: int = 7, rounds: int = 21, quick: bool = False) -> str:
    """The exact 64->64 3x3 h=2 layer of issue 25's targets against ``nn.Conv2d`` on 8x64x56x56
    in ``runs`` separate groups of ``rounds`` interleaved rounds (eval and train), with the load
    average at each: the median and range of the ratio, as ``bench_pair_runs`` for the models."""
    name, shape, kwargs = PULL_LAYERS[0]
    x = torch.randn(2, *shape[1:]) if quick else torch.randn(shape)
    layers = {
        "conv": nn.Conv2d(64, 64, bias=False, **kwargs),
        "exact": PushPull2d(64, 64, **kwargs),
    }
    ratios: dict[str, list[float]] = {"eval": [], "train": []}
    rows = []
    for run in range(runs):
        load = load_average()
        row = [str(run + 1), f"{load:.2f}"]
        for mode, make in (("eval", eval_fn), ("train", train_fn)):
            times = interleaved_medians({n: make(m, x) for n, m in layers.items()}, rounds)
            ratios[mode].append(times["exact"] / times["conv"])
            row += [f"{times['conv'] * 1e3:.2f}", f"{ratios[mode][-1]:.2f}x"]
        rows.append(row)
    summary = ["median (range)", ""]
    for values in ratios.values():
        summary += ["", median_range(values)]
    return markdown_table(
        f"Exact {name} vs conv on {list(x.shape)}: {runs} runs of {rounds} interleaved rounds",
        [
            "run",
            "load",
            "eval conv ms",
            "eval exact vs conv",
            "train conv ms",
            "train exact vs conv",
        ],
        rows + [summary],
    )


# (what, m, n, k, op(B) transposed, B's leading dimension): the products the C kernels make, in
# the BLAS's column-major terms (m: the vector dimension)
KERNEL_PRODUCTS = (
    ("64->64 3x3 shared, NCHW input, 9 rows of 56", 576, 504, 64, True, 3136),
    ("16->16 3x3 shared, NCHW input, 16 rows of 32", 144, 512, 16, True, 1024),
    ("256->256 3x3 shared, NCHW input, 14 rows of 14", 2304, 196, 256, True, 196),
    ("3->64 7x7 /2 stem mixing, NCHW output, 15 rows of 112", 1680, 64, 147, True, 64),
    ("64->64 pull mixing, channels-last output", 64, 1680, 576, False, 576),
    # a converted ResNet-50's layer 4 (MKL's: tall and deep)
    ("512->512 3x3 shared, channels-last input, 7 rows of 7", 4608, 49, 512, False, 512),
    ("512->512 3x3 /2 pull mixing, channels-last output", 512, 56, 4608, False, 4608),
)


def _gemm_runner(
    address: int, dtype: torch.dtype, m: int, n: int, k: int, transposed: bool, ldb: int
) -> Callable[[], None]:
    """A call of the Fortran-style GEMM at ``address`` on random operands of that shape."""
    scalar = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}[dtype]
    a, c = torch.randn(k, m, dtype=dtype), torch.empty(n, m, dtype=dtype)
    b = torch.randn(k if transposed else n, ldb, dtype=dtype)
    sizes = [ctypes.c_int(v) for v in (m, n, k, m, ldb, m)]  # m, n, k, lda, ldb, ldc
    one, zero = scalar(1), scalar(0)
    gemm = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)(address)

    def run() -> None:  # holds the operands: the call reads them by address
        gemm(b"N", b"T" if transposed else b"N", *map(ctypes.byref, sizes[:3]),
             ctypes.byref(one), a.data_ptr(), ctypes.byref(sizes[3]), b.data_ptr(),
             ctypes.byref(sizes[4]), ctypes.byref(zero), c.data_ptr(), ctypes.byref(sizes[5]))  # fmt: skip

    return run


def bench_gemm(rounds: int = 15, runs: int = 3, quick: bool = False) -> str:
    """The C kernels' own GEMM (``csrc/gemm.c``) against MKL's, side by side: the kernels'
    products alone on one thread (float32), each exact layer of ``PULL_LAYERS`` with either
    against ``nn.Conv2d`` in one interleaved group (eval and train), then each
    ``<baseline>_pp_b1`` with either against its baseline, ``runs`` groups of ``rounds``
    rounds."""
    own, mkl = (
        exact_pull_module.kernel_gemm(torch.float32),
        exact_pull_module.blas_gemm(torch.float32),
    )
    if mkl is None:
        return (
            "PyTorch without MKL: the C kernels mix with torch.mm, there is no GEMM to compare.\n"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        product_rows = []
        for what, m, n, k, transposed, ldb in KERNEL_PRODUCTS[:1] if quick else KERNEL_PRODUCTS:
            calls = {name: _gemm_runner(address, torch.float32, m, n, k, transposed, ldb)
                     for name, address in (("own", own), ("mkl", mkl))}  # fmt: skip
            times = interleaved_medians(calls, 3 if quick else 31)
            rate = {name: m * n * k / t / 1e9 for name, t in times.items()}
            product_rows.append([
                what, f"{m} x {n} x {k}", f"{times['mkl'] * 1e3:.3f}", f"{rate['mkl']:.1f}",
                f"{rate['own']:.1f}", f"{times['own'] / times['mkl']:.3f}",
            ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = markdown_table(
        "The kernels' products alone, one thread: own GEMM vs MKL's (float32, same run)",
        ["product", "m x n x k", "MKL ms", "MKL GMAC/s", "own GMAC/s", "own / MKL time"],
        product_rows,
    )
    rows = []
    for name, shape, kwargs in PULL_LAYERS[:1] if quick else PULL_LAYERS:
        x = torch.randn(*(2, *shape[1:]) if quick else shape)
        in_ch, out_ch = shape[1], 64 if shape[1] == 3 else shape[1]
        conv_args = {k: v for k, v in kwargs.items() if k != "pull_scale"}
        exact = PushPull2d(in_ch, out_ch, **kwargs)
        layers = {
            "conv": nn.Conv2d(in_ch, out_ch, bias=False, **conv_args),
            "own": exact,
            "mkl": _Forced(exact, "blas_gemm"),
        }
        for mode, make in (("eval", eval_fn), ("train", train_fn)):
            times = interleaved_medians({n: make(m, x) for n, m in layers.items()}, rounds)
            rows.append([
                name, str(list(x.shape)), mode, f"{times['conv'] * 1e3:.2f}",
                f"{times['own'] / times['conv']:.2f}x", f"{times['mkl'] / times['conv']:.2f}x",
                f"{times['own'] / times['mkl']:.3f}",
            ])  # fmt: skip
    out += "\n" + markdown_table(
        "Exact layer vs conv with the kernels' own GEMM and with MKL's (same run)",
        [
            "layer",
            "input",
            "mode",
            "conv ms",
            "own GEMM vs conv",
            "MKL's GEMM vs conv",
            "own / MKL",
        ],
        rows,
    )
    model_rows = []
    for run in range(1 if quick else runs):
        load = load_average()
        for baseline in ("resnet20", "resnet50"):
            size = timm.get_pretrained_cfg(baseline + "_pp_b1").to_dict()["input_size"]
            x = torch.randn(2 if quick or size[-1] >= 224 else 8, *size)
            variant = timm.create_model(baseline + "_pp_b1")
            models = {
                "base": timm.create_model(baseline),
                "own": variant,
                "mkl": _Forced(variant, "blas_gemm"),
            }
            for mode, make in (("eval", eval_fn), ("train", train_fn)):
                times = interleaved_medians(
                    {n: make(m, x) for n, m in models.items()}, 2 if quick else rounds, warmup=1
                )
                model_rows.append([
                    str(run + 1), f"{load:.2f}", f"{baseline}_pp_b1", mode,
                    f"{times['base'] * 1e3:.1f}", f"{times['own'] / times['base']:.3f}x",
                    f"{times['mkl'] / times['base']:.3f}x", f"{times['own'] / times['mkl']:.3f}",
                ])  # fmt: skip
    out += "\n" + markdown_table(
        "`_pp_b1` vs baseline with the kernels' own GEMM and with MKL's (interleaved in each run)",
        ["run", "load", "model", "mode", "baseline ms", "own GEMM", "MKL's GEMM", "own / MKL"],
        model_rows,
    )
    return out


def bench_pull(rounds: int = 9, quick: bool = False) -> str:
    """(d) The exact pull: PushPull2d (C separable form, PyTorch form, fast) vs nn.Conv2d.

    Each configuration is one interleaved group, eval and train. ``exact, PyTorch path`` is the
    layer with the C kernels off (no C compiler): the direct convolution with the resized kernel
    (PyTorch's separable form for <= 4 input channels). A second table times the pull alone,
    direct convolution against the C separable form, the measurement behind
    ``pull.separable_pays``.
    """
    kernel = "C kernel" if native.load("pull_maps") is not None else "no C compiler found"
    rows = []
    for name, shape, kwargs in PULL_LAYERS[:1] if quick else PULL_LAYERS:
        x = torch.randn(*(2, *shape[1:]) if quick else shape)
        in_ch, out_ch = shape[1], 64 if shape[1] == 3 else shape[1]
        args = dict(kwargs)
        conv_args = {k: v for k, v in args.items() if k != "pull_scale"}
        exact = PushPull2d(in_ch, out_ch, **args)
        layers = {
            "nn.Conv2d": nn.Conv2d(in_ch, out_ch, bias=False, **conv_args),
            f"exact ({kernel})": exact,
            "exact, PyTorch path": _Forced(exact, "c_off"),
            "fast": PushPull2d(in_ch, out_ch, pull_mode="fast", **args),
        }
        for mode, make in (("eval", eval_fn), ("train", train_fn)):
            times = interleaved_medians({n: make(m, x) for n, m in layers.items()}, rounds)
            base = times["nn.Conv2d"]
            ratios = [f"{times[n] / base:.2f}x" for n in layers if n != "nn.Conv2d"]
            fast_gap = times[f"exact ({kernel})"] / times["fast"]
            rows.append(
                [name, str(list(x.shape)), mode, f"{base * 1e3:.1f}", *ratios, f"{fast_gap:.2f}"]
            )
    header = ["layer", "input", "mode", "conv ms", *list(layers)[1:], "exact / fast"]
    header[4:7] = [f"{h} vs conv" for h in header[4:7]]
    out = markdown_table(
        "Exact push-pull layer vs conv (ratios to nn.Conv2d, same run)", header, rows
    )

    # direct vs separable, the pull alone, eval: the rule in pull.separable_pays
    # (in, out, kernel, h, stride, input): square layers, then the image-facing ones (planar maps)
    rule_rows = []
    cases = (
        (64, 64, 3, 2.0, 1, (8, 28)),
        (64, 64, 3, 1.5, 1, (8, 28)),
        (64, 64, 5, 1.5, 1, (8, 28)),
        (64, 64, 2, 1.5, 1, (8, 28)),
        (64, 64, 1, 2.0, 1, (8, 28)),
        (16, 16, 3, 2.0, 1, (8, 28)),
        (1, 6, 5, 2.0, 1, (256, 28)),
        (1, 20, 5, 2.0, 1, (128, 28)),
        (3, 16, 3, 2.0, 1, (64, 32)),
        (3, 64, 7, 2.0, 2, (4, 224)),
    )
    for in_ch, out_ch, size, h, stride, (batch, side) in cases[:1] if quick else cases:
        x = torch.randn(2, in_ch, 14, 14) if quick else torch.randn(batch, in_ch, side, side)
        pull = pull_kernel_size(size, h)
        weight = torch.randn(out_ch, in_ch, size, size)
        pad = (pull - 1) // 2
        args = ([pull, pull], [stride] * 2, [pad] * 4, [1, 1], 1)
        with torch.no_grad():
            times = interleaved_medians(
                {
                    "direct": lambda w=weight, a=args, x=x: exact_pull_definition(x, w, None, *a),
                    "separable": lambda w=weight, a=args, x=x: exact_pull(x, w, None, *a),
                },
                rounds,
            )
        picks = separable_pays((size, size), (pull, pull), out_ch)
        rule_rows.append(
            [
                f"{in_ch}->{out_ch} {size}x{size}{f' /{stride}' if stride > 1 else ''} -> {pull}x{pull}",
                str(list(x.shape)),
                f"{pull * pull / (size * size):.2f}",
                f"{times['separable'] / times['direct']:.2f}",
                "separable" if picks else "direct",
            ]
        )
    out += "\n" + markdown_table(
        "Pull alone, C separable form vs direct conv (eval)",
        ["pull", "input", "pull/push area", "separable / direct time", "rule picks"],
        rule_rows,
    )

    out += "\n" + _bench_torch_separable(rounds, quick, torch.device("cpu"))
    tables = (_bench_shared, _bench_training_op, _bench_shared_chunks, _bench_chunks,
              _bench_epilogue, _bench_memory)  # fmt: skip
    return "\n".join([out, *(table(rounds, quick) for table in tables)])


def _synchronized(fn, device: torch.device, amp: bool = False):
    """``fn`` under bfloat16 autocast if ``amp``, waiting for the device to finish (CUDA)."""

    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result

    return run


def _bench_torch_separable(rounds: int, quick: bool, device: torch.device) -> str:
    """PyTorch's separable pull vs direct for few input channels (no C kernel), the rule in
    ``exact_path.torch_separable_pays``: LeNet-5's, the CIFAR and the ImageNet stems."""
    rows = []
    cases = ((1, 6, 5, 500, 28), (1, 20, 5, 128, 28), (3, 16, 3, 64, 32), (3, 64, 7, 2, 112))
    for in_ch, out_ch, size, batch, side in cases[:1] if quick else cases:
        x = torch.randn(2 if quick else batch, in_ch, side, side, device=device)
        pull = Pull(in_ch, out_ch, (size, size), 2.0, (1, 1), (size // 2,) * 2, (1, 1), 1)
        pull.to(device)
        weight = torch.randn(out_ch, in_ch, size, size, requires_grad=True, device=device)
        pad = pull.pull_size[0] // 2

        def direct(w: torch.Tensor, x: torch.Tensor = x, pull: Pull = pull, pad: int = pad):
            return F.conv2d(x, pull_weight(w, pull.pull_size), None, 1, pad)

        def separable(w: torch.Tensor, x: torch.Tensor = x, pull: Pull = pull):
            return pull._separable(x, -w.reshape(w.shape[0], -1, 1, 1), None)

        row = [f"{in_ch}->{out_ch} {size}x{size} -> {pull.pull_size[0]}x{pull.pull_size[1]}",
               str(list(x.shape))]  # fmt: skip
        forms = {"direct": direct, "separable": separable}
        for mode in ("eval", "train"):
            if mode == "eval":
                fns = {n: lambda f=f, w=weight: f(w.detach()) for n, f in forms.items()}
            else:
                fns = {n: lambda f=f, w=weight: f(w).sum().backward() for n, f in forms.items()}
            fns = {n: _synchronized(f, device) for n, f in fns.items()}
            times = interleaved_medians(fns, rounds)
            row.append(f"{times['separable'] / times['direct']:.2f}")
        picks = torch_separable_pays(in_ch, (size, size), pull.pull_size, out_ch)
        rows.append([*row, "separable" if picks and device.type == "cpu" else "direct"])
    return markdown_table(
        f"Pull alone, PyTorch separable form vs direct conv ({device.type}, no C kernel)",
        ["pull", "input", "separable / direct (eval)", "(train)", "layer runs"],
        rows,
    )


def cuda_device(device: torch.device | None) -> torch.device:
    if device is None and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: the GPU benchmark has nothing to measure")
    return device or torch.device("cuda")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def bench_gpu(quick: bool = False, device: torch.device | None = None) -> str:
    """The layers on a CUDA device (``device``: another one, for a smoke run): nn.Conv2d (cuDNN)
    against the exact layer (on a GPU: the direct form, cuDNN) and the fast one, float32 and
    bfloat16 autocast channels-last, eval and train; and PyTorch's separable pull against the
    direct one there."""
    device = cuda_device(device)
    rounds = 3 if quick else 20
    rows = []
    for name, shape, kwargs in PULL_LAYERS[:1] if quick else PULL_LAYERS:
        in_ch, out_ch = shape[1], 64 if shape[1] == 3 else shape[1]
        conv_args = {k: v for k, v in kwargs.items() if k != "pull_scale"}
        layers = {
            "conv": nn.Conv2d(in_ch, out_ch, bias=False, **conv_args),
            "exact": PushPull2d(in_ch, out_ch, **kwargs),
            "fast": PushPull2d(in_ch, out_ch, pull_mode="fast", **kwargs),
        }
        for precision in ("fp32", "bf16 autocast, channels-last"):
            amp = precision != "fp32"
            layout = torch.channels_last if amp else torch.contiguous_format
            x = torch.randn(*(2, *shape[1:]) if quick else shape, device=device)
            x = x.contiguous(memory_format=layout)
            models = {n: m.to(device, memory_format=layout) for n, m in layers.items()}
            for mode, make in (("eval", eval_fn), ("train", train_fn)):
                fns = {n: _synchronized(make(m, x), device, amp) for n, m in models.items()}
                times = interleaved_medians(fns, rounds, warmup=3)
                base = times["conv"]
                rows.append([name, str(list(shape)), precision, mode, f"{base * 1e3:.2f}",
                             f"{times['exact'] / base:.2f}x", f"{times['fast'] / base:.2f}x"])  # fmt: skip
    out = markdown_table(
        f"Push-pull layer vs conv on {device_name(device)}",
        ["layer", "input", "precision", "mode", "conv ms", "exact vs conv", "fast vs conv"],
        rows,
    )
    return out + "\n" + _bench_torch_separable(rounds, quick, device)


# (in, out, kernel, h, input): the stride-1 layers of the model zoo and the configurations
_SHARED_CASES = (
    (16, 16, 3, 2.0, (8, 16, 32, 32)),  # CIFAR ResNet stage 1, the benchmark's batch
    (16, 16, 3, 2.0, (64, 16, 32, 32)),
    (32, 32, 3, 2.0, (8, 32, 16, 16)),
    (64, 64, 3, 2.0, (8, 64, 56, 56)),
    (64, 64, 3, 1.5, (8, 64, 56, 56)),
    (64, 64, 3, 3.0, (8, 64, 56, 56)),
    (256, 256, 3, 2.0, (8, 256, 14, 14)),
    (64, 256, 1, 2.0, (8, 64, 56, 56)),  # a bottleneck's 1x1: the pull is a 3x3 box of the push
    (64, 16, 3, 2.0, (8, 64, 32, 32)),
    (16, 16, 5, 2.0, (8, 16, 32, 32)),  # 5x5 -> 11x11
    (20, 50, 5, 2.0, (64, 20, 12, 12)),
    # near the rule's boundary: few input channels, many products per input value
    (6, 16, 5, 2.0, (64, 6, 14, 14)),
    (4, 16, 3, 2.0, (8, 4, 32, 32)),
    (3, 16, 3, 2.0, (8, 3, 32, 32)),  # the CIFAR stem
    (1, 6, 5, 2.0, (64, 1, 28, 28)),  # LeNet-5's first layer
)


def _bench_shared(rounds: int, quick: bool) -> str:
    """The exact layer's two stride-1 forms against a conv, eval and train: push and pull from
    one GEMM (``layers/push_and_pull.py``) or apart (push conv + the pull's best C form), the
    measurement behind ``push_and_pull.shared_taps_pay``."""
    rows = []
    for in_ch, out_ch, size, h, shape in _SHARED_CASES[:1] if quick else _SHARED_CASES:
        x = torch.randn(2, *shape[1:]) if quick else torch.randn(shape)
        layer = PushPull2d(in_ch, out_ch, size, padding=size // 2, pull_scale=h)
        picks = layer.preferred_paths[0] == "shared"
        apart = pull_preferred_paths(layer.pulls[0])[0]  # the pull's best form on its own
        layers = {"conv": nn.Conv2d(in_ch, out_ch, size, padding=size // 2, bias=False),
                  "shared": _Forced(layer, "shared"), "apart": _Forced(layer, apart)}  # fmt: skip
        name = f"{in_ch}->{out_ch} {size}x{size}, h={h:g}"
        for mode, make in (("eval", eval_fn), ("train", train_fn)):
            times = interleaved_medians({n: make(m, x) for n, m in layers.items()}, rounds)
            rows.append([name, str(list(x.shape)), mode, f"{times['conv'] * 1e3:.2f}",
                         f"{times['shared'] / times['conv']:.2f}x",
                         f"{times['apart'] / times['conv']:.2f}x",
                         "shared" if picks else "apart"])  # fmt: skip
    return markdown_table(
        "Exact layer, stride 1: push and pull from one GEMM (shared) or apart, vs conv",
        ["layer", "input", "mode", "conv ms", "shared", "apart", "rule picks"],
        rows,
    )


def _bench_shared_chunks(rounds: int, quick: bool) -> str:
    """The shared form's input pixels per GEMM call (eval, all threads), the measurement behind
    ``push_and_pull.GEMM_PIXELS``."""
    default = push_and_pull_module.GEMM_PIXELS
    sizes = sorted({32, 128, 256, 512, default, 2048, 8192})
    rows = []
    for in_ch, out_ch, size, h, shape in _SHARED_CASES[:1] if quick else _SHARED_CASES[::3]:
        x = torch.randn(2, *shape[1:]) if quick else torch.randn(shape)
        layer = _Forced(PushPull2d(in_ch, out_ch, size, padding=size // 2, pull_scale=h), "shared")
        conv = nn.Conv2d(in_ch, out_ch, size, padding=size // 2, bias=False).eval()

        def with_pixels(pixels: int, layer: nn.Module = layer, x: torch.Tensor = x):
            def run():
                push_and_pull_module.GEMM_PIXELS = pixels
                try:
                    return layer(x)
                finally:
                    push_and_pull_module.GEMM_PIXELS = default

            return run

        fns = {"conv": eval_fn(conv, x)}
        layer.eval()
        fns.update({str(p): with_pixels(p) for p in sizes})
        with torch.no_grad():
            times = interleaved_medians(fns, rounds)
        rows.append([f"{in_ch}->{out_ch} {size}x{size}, h={h:g}", str(list(x.shape))]
                    + [f"{times[str(p)] / times['conv']:.2f}x" for p in sizes])  # fmt: skip
    return markdown_table(
        f"Shared form (eval) vs conv, by input pixels per GEMM call (default {default})",
        ["layer", "input", *map(str, sizes)],
        rows,
    )


# (name, input shape, kernel size, stride), 64 output channels, h = 2: the chunk and epilogue tables
_C_FORM_CASES = (
    ("64->64 3x3, h=2", (8, 64, 56, 56), 3, 1),
    ("3->64 7x7 /2, h=2", (8, 3, 224, 224), 7, 2),
)


class _OutOfPlaceEpilogue(nn.Module):
    """The exact layer, branches apart, with new tensors for its ReLUs and the inhibition (before
    issue 14's run 8)."""

    def __init__(self, layer: PushPull2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        push = F.relu(layer.push(x))
        pull = F.relu(layer.pulls[0](x, layer.push.weight, layer.push.bias))
        return torch.addcmul(push, F.relu(layer.alpha), pull, value=-1.0)


def _bench_epilogue(rounds: int, quick: bool) -> str:
    """The layer's ReLUs and inhibition in place (the default) or into new tensors, eval, with the
    branches computed apart."""
    rows = []
    for name, shape, size, stride in _C_FORM_CASES[:1] if quick else _C_FORM_CASES:
        x = torch.randn(2, *shape[1:]) if quick else torch.randn(shape)
        layer = PushPull2d(shape[1], 64, size, stride, size // 2).eval()
        apart = pull_preferred_paths(layer.pulls[0])[0]  # the shared form has its own epilogue
        conv = nn.Conv2d(shape[1], 64, size, stride, size // 2, bias=False).eval()
        fns = {
            "conv": eval_fn(conv, x),
            "in place": eval_fn(_Forced(layer, apart), x),
            "new tensors": eval_fn(_OutOfPlaceEpilogue(layer), x),
        }
        times = interleaved_medians(fns, rounds)
        rows.append([name, str(list(x.shape)), f"{times['conv'] * 1e3:.1f}"]
                    + [f"{times[n] / times['conv']:.2f}x" for n in ("in place", "new tensors")])  # fmt: skip
    return markdown_table(
        "Exact layer, branches apart (eval) vs conv: ReLUs and inhibition in place or into new tensors",
        ["layer", "input", "conv ms", "in place (default)", "new tensors"],
        rows,
    )


class _TwoPreActivations(nn.Module):
    """The exact layer in the shared form as it trained before the training op: both
    pre-activations from ``push_and_pull``, then PyTorch's ReLUs and inhibition (and their own
    backward passes)."""

    def __init__(self, layer: PushPull2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer, pull = self.layer, self.layer.pulls[0]
        geometry = ([*pull.pull_size], [*layer.padding], [*pull.sides])
        push, pull = torch.ops.timm_pushpull.push_and_pull(
            x, layer.push.weight, layer.push.bias, *geometry
        )
        return torch.addcmul(F.relu_(push), F.relu(layer.alpha), F.relu_(pull), value=-1.0)


def _bench_training_op(rounds: int, quick: bool) -> str:
    """A training step (forward and backward) of the exact layer in the shared form: one op for
    the response, whose kernel applies the ReLUs and the inhibition and whose backward pass forms
    the branches' gradients as it reads them (the default), against the two pre-activations and
    PyTorch's ReLUs and inhibition; both against a conv."""
    rows = []
    cases = [_SHARED_CASES[i] for i in (0, 1, 3, 6, 7)]  # 16, 64 and 256 channels, a 1x1
    for in_ch, out_ch, size, h, shape in cases[:1] if quick else cases:
        x = torch.randn(2, *shape[1:]) if quick else torch.randn(shape)
        layer = PushPull2d(in_ch, out_ch, size, padding=size // 2, pull_scale=h)
        conv = nn.Conv2d(in_ch, out_ch, size, padding=size // 2, bias=False)
        fns = {
            "conv": train_fn(conv, x),
            "one op": train_fn(_Forced(layer, "shared"), x),
            "two": train_fn(_TwoPreActivations(layer), x),
        }
        times = interleaved_medians(fns, rounds)
        rows.append([f"{in_ch}->{out_ch} {size}x{size}, h={h:g}", str(list(x.shape)),
                     f"{times['conv'] * 1e3:.2f}", f"{times['one op'] / times['conv']:.2f}x",
                     f"{times['two'] / times['conv']:.2f}x",
                     f"{times['one op'] / times['two']:.2f}"])  # fmt: skip
    return markdown_table(
        "Exact layer in training: the response from one op, or two pre-activations and PyTorch's "
        "ReLUs and inhibition (shared form, vs conv)",
        ["layer", "input", "conv ms", "one op (default)", "two pre-activations", "one / two"],
        rows,
    )


def _size(num_bytes: int) -> str:
    return f"{num_bytes >> 20} MiB" if num_bytes >= 1 << 20 else f"{num_bytes >> 10} KiB"


def _bench_chunks(rounds: int, quick: bool) -> str:
    """The C form's forward chunk size: the pull alone (eval) against the push conv, with one
    thread and with all, the measurement behind ``exact_pull.FORWARD_CHUNK_BYTES_PER_THREAD``."""
    default = exact_pull_module.FORWARD_CHUNK_BYTES_PER_THREAD
    sizes = sorted(
        {64 << 20, 4 << 20, default, 1 << 20, 512 << 10, 256 << 10, 128 << 10}, reverse=True
    )
    threads = torch.get_num_threads()
    rows = []
    for name, shape, size, stride in _C_FORM_CASES[:1] if quick else _C_FORM_CASES:
        x = torch.randn(2, *shape[1:]) if quick else torch.randn(shape)
        conv = nn.Conv2d(shape[1], 64, size, stride, size // 2, bias=False).eval()
        pull = pull_kernel_size(size, 2.0)
        args = ([pull, pull], [stride] * 2, [pull // 2] * 4, [1, 1], 1)
        weight = conv.weight.detach()
        conv_input = x

        def pull_with(chunk: int, x: torch.Tensor = x, w: torch.Tensor = weight, a=args):
            def run():
                exact_pull_module.FORWARD_CHUNK_BYTES_PER_THREAD = chunk
                try:
                    return exact_pull(x, w, None, *a)
                finally:
                    exact_pull_module.FORWARD_CHUNK_BYTES_PER_THREAD = default

            return run

        for used in sorted({1, threads}):
            torch.set_num_threads(used)
            try:
                fns = {"conv": lambda c=conv, x=conv_input: c(x)}
                fns.update({_size(b): pull_with(b) for b in sizes})
                with torch.no_grad():
                    times = interleaved_medians(fns, rounds)
            finally:
                torch.set_num_threads(threads)
            rows.append([name, str(list(x.shape)), str(used)]
                        + [f"{times[_size(b)] / times['conv']:.2f}x" for b in sizes])  # fmt: skip
    return markdown_table(
        f"Pull alone (C form, eval) vs the push conv, by forward chunk size per thread "
        f"(default {_size(default)})",
        ["pull", "input", "threads", *[_size(b) for b in sizes]],
        rows,
    )


def bench_resnet50(rounds: int = 7) -> str:
    """(b) timm resnet50 vs push-pull in the stem and every first-stage bottleneck 3x3."""
    x = torch.randn(4, 3, 224, 224)
    models = {"resnet50": timm.create_model("resnet50")}
    for mode in ("exact", "fast"):
        models[f"resnet50 + push-pull stem & stage 1 ({mode})"] = convert_to_pushpull(
            timm.create_model("resnet50"), "stage1", pull_mode=mode
        )
    rows = eval_and_train_rows(models, x, rounds, "resnet50", ms_format=".0f", ratio_format=".3f")
    return markdown_table(
        "ResNet-50, batch 4 at 224x224", ["model", "mode", "ms", "vs resnet50"], rows
    )


def bench_blurpool(rounds: int = 30) -> str:
    """(c) our blur-pool vs timm's and kornia's on the same tensor (filter 3, stride 2).

    Each implementation runs eagerly and under ``torch.compile`` (compile time not counted); ours
    also eagerly without its C kernel. The speed-up is against the fastest timm/kornia row of the
    same input, eager or compiled.
    """
    with bench_extra("blur-pool"):
        import kornia

    rows = []
    for shape in ((8, 64, 56, 56), (4, 64, 112, 112), (8, 256, 28, 28), (32, 64, 32, 32)):
        x = torch.randn(*shape)
        eager = {
            "timm BlurPool2d": TimmBlurPool2d(shape[1], 3, 2),
            "kornia BlurPool2D": kornia.filters.BlurPool2D(3, 2),
            "timm_pushpull BlurPool2d": BlurPool2d(shape[1], "binomial", 3, 2),
        }
        layers = dict(eager)
        layers.update({f"{n}, compiled": torch.compile(m, dynamic=False) for n, m in eager.items()})
        kernel = "C kernel" if native.load("blur_pool") is not None else "no C compiler found"
        layers[f"timm_pushpull BlurPool2d ({kernel})"] = layers.pop("timm_pushpull BlurPool2d")
        layers["timm_pushpull BlurPool2d, PyTorch path"] = _Forced(
            eager["timm_pushpull BlurPool2d"], "c_off"
        )
        times = interleaved_medians({n: eval_fn(m, x) for n, m in layers.items()}, rounds)
        best_other = min(t for n, t in times.items() if not n.startswith("timm_pushpull"))
        for name, t in times.items():
            rows.append([str(list(shape)), name, f"{t * 1e3:.2f}", f"{best_other / t:.2f}x"])
    return markdown_table(
        "Blur-pool, binomial 3, stride 2, reflect padding (kornia pads with zeros)",
        ["input", "implementation", "ms", "speed-up vs fastest timm/kornia row"],
        rows,
    )


# (name, input shape, PushPull2d arguments): the memory table, the layers of issue 25
_MEMORY_CASES = (
    ("64->64 3x3, h=2", (8, 64, 56, 56), dict(kernel_size=3, padding=1)),
    ("3->64 7x7 /2 stem, h=2", (8, 3, 224, 224), dict(kernel_size=7, stride=2, padding=3)),
    ("128->128 7x7, h=2", (1, 128, 32, 1024), dict(kernel_size=7, padding=3)),
    ("256->256 7x7, h=2", (1, 256, 112, 112), dict(kernel_size=7, padding=3)),
)

# A fresh process measures one call: its resident memory before, its peak during the call (the
# kernel's high-water mark, reset first), what it keeps resident after the call has returned (the
# allocator's and oneDNN's caches included) and the scratch the C forms hold for the next call.
_MEMORY_PROBE = """
import gc, json, sys, torch, torch.nn as nn
from timm_pushpull.layers import PushPull2d
shape, kwargs, kind, mode = json.loads(sys.argv[1])
def rss(field):
    status = open("/proc/self/status").read()
    return int(status.split(field + ":")[1].split()[0]) * 1024
in_ch = shape[1]
out_ch = 64 if in_ch == 3 else in_ch
layer = (PushPull2d(in_ch, out_ch, **kwargs) if kind == "PushPull2d exact"
         else nn.Conv2d(in_ch, out_ch, bias=False, **kwargs)).train(mode == "train")
x = torch.randn(shape)
gc.collect()
before = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
with torch.set_grad_enabled(mode == "train"):
    out = layer(x)
    if mode == "train":
        out.sum().backward()
output = out.numel() * out.element_size()
del out
layer.zero_grad(set_to_none=True)
gc.collect()
from timm_pushpull.layers import exact_pull
held = sum(b.numel() * b.element_size() for b in vars(exact_pull._scratch).get("buffers", {}).values())
print(json.dumps([rss("VmHWM") - before, rss("VmRSS") - before, held, output]))
"""


def _bench_memory(rounds: int, quick: bool) -> str:
    """Peak and kept resident memory of one exact layer call next to a conv's, each in a fresh
    process (Linux: /proc/self/status), the measurement behind the scratch budgets
    (``push_and_pull.SCRATCH_BYTES_PER_THREAD``, ``exact_pull.CHUNK_BYTES``)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return "### Memory of one exact layer call\n\nNot measured: needs Linux's /proc.\n"
    rows = []
    for name, shape, kwargs in _MEMORY_CASES[:1] if quick else _MEMORY_CASES:
        shape = (1, *shape[1:3], min(shape[3], 64)) if quick else shape
        for mode in ("eval", "train"):
            row = [name, str(list(shape)), mode]
            for kind in ("nn.Conv2d", "PushPull2d exact"):
                argument = json.dumps([shape, kwargs, kind, mode])
                result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, argument],
                                        capture_output=True, text=True, check=True)  # fmt: skip
                peak, kept, held, output = json.loads(result.stdout.strip().splitlines()[-1])
                row += [f"{peak / 2**20:.0f}", f"{kept / 2**20:.0f}"]
            rows.append(row + [f"{held / 2**20:.1f}", f"{output / 2**20:.0f}"])
    return markdown_table(
        "Memory of one exact layer call (MiB above the process before the call)",
        ["layer", "input", "mode", "conv peak", "conv kept", "exact peak", "exact kept",
         "exact scratch held", "output"],
        rows,
    )  # fmt: skip
