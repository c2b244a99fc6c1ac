"""Building and loading the C kernels: cached, optional, and never in the way when they fail."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from timm_pushpull import native
from timm_pushpull.layers import blur_pool2d

requires_compiler = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler")


@requires_compiler
def test_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path))
    path = native._build("blur_pool")
    assert path.parent == tmp_path / "native" and path.name.startswith("blur_pool-")
    built = path.stat().st_mtime_ns
    assert native._build("blur_pool") == path and path.stat().st_mtime_ns == built
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_failed_build_warns_and_the_pytorch_path_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that exits 1
    monkeypatch.setattr(native, "_libraries", {})
    x = torch.randn(1, 2, 8, 8)
    with pytest.warns(RuntimeWarning, match="building the C kernel 'blur_pool' failed"):
        out = blur_pool2d(x, "rect", 2, 2, "zero")
    torch.testing.assert_close(out, torch.nn.functional.avg_pool2d(x, 2))
    assert not list((tmp_path / "native").iterdir())  # the failed build left nothing behind


def test_no_compiler_means_no_kernel_and_no_warning(tmp_path, monkeypatch, recwarn):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(native, "_libraries", {})
    assert native.find_compiler() is None and native.load("blur_pool") is None
    assert not recwarn.list


@pytest.mark.parametrize("value,enabled", [("0", False), ("off", False), ("1", True)])
def test_environment_switch(value, enabled):
    # native.py alone, loaded from its file: no timm or torch import is needed to read the switch
    probe = (
        f"import importlib.util; spec = importlib.util.spec_from_file_location('n', {native.__file__!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(m.native_enabled())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": "", native.ENV_SWITCH: value},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(enabled)


def test_context_manager_restores_the_setting():
    before = native.native_enabled()
    with native.native_kernels(not before):
        assert native.native_enabled() is (not before)
        assert native.load("blur_pool") is None or not before
    assert native.native_enabled() is before


@requires_compiler
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_kernels_share_torchs_openmp_runtime():
    # two OpenMP runtimes in one process would keep two thread pools spinning on the same cores
    assert native.load("blur_pool") is not None
    with open("/proc/self/maps") as maps:
        runtimes = {line.split()[-1] for line in maps if "libgomp" in line}
    if not runtimes:
        pytest.skip("this torch build does not use GNU OpenMP")
    assert len(runtimes) == 1, runtimes
