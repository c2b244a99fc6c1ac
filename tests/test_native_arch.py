"""The C kernels' vector code by level (``$TIMM_PUSHPULL_NATIVE_ARCH``): each level this CPU can
run gives the paper's layer, and where no vector clone serves the CPU the exact layer leaves the
own GEMM and the shared form, whose generic code took 38x a conv (BENCHMARKS.md, run 15)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from timm_pushpull import native

requires_x86_gcc = pytest.mark.skipif(
    native.find_compiler() is None or platform.machine() not in ("x86_64", "AMD64"),
    reason="the vector clones are built by gcc for x86-64",
)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            line = next(line for line in info if line.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


# Each layer in float32 (eval, and a training step's gradients) against the float64 definition
# (the direct form: the push conv and the conv with the resized kernel); prints which GEMM the
# kernels mix with, the paths taken (a stride-1 3x3 and 5x5, and a 7x7 /2 stem with the separable
# maps) and the largest errors relative to the outputs' scale.
_PROBE = """
import json, torch
from timm_pushpull.layers import PushPull2d, exact_path
from timm_pushpull.layers.exact_pull import blas_gemm, kernel_gemm
torch.manual_seed(0)
cases = [((16, 24, 3), dict(padding=1), (2, 16, 19, 21)),
         ((24, 16, 5), dict(padding=2, pull_scale=1.5), (2, 24, 17, 13)),
         ((3, 24, 7), dict(stride=2, padding=3), (2, 3, 41, 37))]
result = {"own_gemm": kernel_gemm(torch.float32) != blas_gemm(torch.float32), "paths": [],
          "errors": []}
for (cin, cout, k), kwargs, shape in cases:
    layer = PushPull2d(cin, cout, k, bias=True, **kwargs)
    with torch.no_grad():
        layer.push.bias.normal_()
    reference = PushPull2d(cin, cout, k, bias=True, **kwargs).double()
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(shape)
    result["paths"].append(layer.path(x))
    with exact_path.force_path("direct"):
        x64 = x.double().requires_grad_()
        expected = reference(x64)
        expected.square().sum().backward()
    x32 = x.clone().requires_grad_()
    got = layer(x32)
    got.square().sum().backward()
    pairs = [(got, expected), (x32.grad, x64.grad), (layer.push.weight.grad, reference.push.weight.grad)]
    layer.eval()
    with torch.no_grad():
        pairs.append((layer(x), expected))
    result["errors"].append(max(float((a.double() - b).abs().max() / b.abs().max()) for a, b in pairs))
print(json.dumps(result))
"""


def _probe(arch: str, cache) -> dict:
    env = {**os.environ, native.ENV_ARCH: arch, native.ENV_CACHE: str(cache)}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@requires_x86_gcc
def test_generic_code_leaves_the_own_gemm_and_the_shared_form(tmp_path):
    # the code a CPU without AVX2 and FMA runs: its own GEMM and shared sums spill their vector
    # tiles (38x a conv), so MKL's GEMM mixes and the stride-1 layers take their pull apart
    result = _probe("generic", tmp_path)
    assert not result["own_gemm"]
    assert result["paths"] == ["c_separable", "direct", "c_separable"]
    assert max(result["errors"]) < 1e-4
    library = next((tmp_path / "native").glob("push_pull_taps-*.so")).read_bytes()
    assert b"arch_x86_64_v3" not in library


@requires_x86_gcc
@pytest.mark.parametrize("level", native.ARCH_LEVELS)
def test_each_vector_level_computes_the_definition(level, tmp_path):
    flags = _cpu_flags()
    needed = {"x86-64-v3": {"avx2", "fma"}, "x86-64-v4": {"avx512f", "avx512vl", "avx512bw"}}
    if not needed[level] <= flags:
        pytest.skip(f"this CPU cannot run {level} code")
    result = _probe(level, tmp_path)
    assert result["own_gemm"] and result["paths"] == ["shared", "shared", "c_separable"]
    assert max(result["errors"]) < 1e-4
    library = next((tmp_path / "native").glob("push_pull_taps-*.so")).read_bytes()
    other = {"x86-64-v3": b"arch_x86_64_v4", "x86-64-v4": b"arch_x86_64_v3"}[level]
    assert f"arch_{level.replace('-', '_')}".encode() in library and other not in library


@pytest.mark.parametrize("value", ["x86-64-v2", "avx2", "native", "v3"])
def test_an_unknown_level_is_refused_by_name(value, monkeypatch):
    monkeypatch.setenv(native.ENV_ARCH, value)
    with pytest.raises(ValueError, match="TIMM_PUSHPULL_NATIVE_ARCH must be auto, generic or one"):
        native.arch_flags()


def test_levels_are_read_case_blind_and_each_has_its_own_flags(monkeypatch):
    flags = {}
    for value in ("auto", "AUTO", "", "generic", " x86-64-v3 "):
        monkeypatch.setenv(native.ENV_ARCH, value)
        flags[value] = native.arch_flags()
    monkeypatch.delenv(native.ENV_ARCH)
    assert flags["auto"] == flags["AUTO"] == flags[""] == native.arch_flags() == ()
    assert len({flags["auto"], flags["generic"], flags[" x86-64-v3 "]}) == 3
