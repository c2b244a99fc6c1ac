"""scripts/ab_native.py: another checkout's kernels built by its own code, and calls routed to them."""

import shutil
from pathlib import Path

import pytest
import torch

from timm_pushpull import native
from timm_pushpull.benchmarks import against_build
from timm_pushpull.layers import PushPull2d
from timm_pushpull.layers.exact_path import force_path

ROOT = Path(__file__).resolve().parents[1]
NAME = "push_pull_taps"

needs_compiler = pytest.mark.skipif(
    native.find_compiler() is None or not native.native_enabled() or native.load(NAME) is None,
    reason="needs a C compiler and the C kernels on",
)


def _checkout(tmp_path: Path, old: str, new: str, source: str = "push_pull_taps.h") -> Path:
    """A copy of this checkout's package, with ``old`` replaced by ``new`` in ``csrc/<source>``."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "timm_pushpull", copy / "timm_pushpull",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    header = copy / "timm_pushpull" / "csrc" / source
    text = header.read_text()
    assert old in text
    header.write_text(text.replace(old, new, 1))
    return copy


@needs_compiler
def test_calls_run_the_other_build_inside_and_this_one_after(tmp_path, monkeypatch):
    # the other build leaves the pull out of the shared form's sums along the row; its generic
    # code alone builds in a fraction of the time of the clones
    checkout = _checkout(tmp_path, "ADD_PULL(s0, s1, s2, s3, e);", "")
    with monkeypatch.context() as patch:  # not for this process's own builds, made later
        patch.setenv(native.ENV_ARCH, "generic")
        other = against_build.build_other(str(checkout), NAME, str(tmp_path / "cache"))
    layer = PushPull2d(16, 16, 3, padding=1, dtype=torch.float64).eval()
    x = torch.randn(2, 16, 12, 12, dtype=torch.float64)  # the forms agree to rounding

    def call():
        with torch.no_grad(), force_path("shared"):
            return layer(x)

    with torch.no_grad(), force_path("direct"):
        expected = layer(x)
    this = native.load(NAME)
    torch.testing.assert_close(call(), expected)
    assert (against_build.with_library(NAME, other, call)() - expected).abs().max() > 1e-3
    assert native.load(NAME) is this
    torch.testing.assert_close(call(), expected)


@needs_compiler
def test_the_library_is_restored_when_the_call_raises(tmp_path):
    this = native.load(NAME)

    def fails():
        assert native.load(NAME) is not this
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        against_build.with_library(NAME, object(), fails)()
    assert native.load(NAME) is this


@needs_compiler
def test_another_signature_is_refused(tmp_path):
    checkout = _checkout(
        tmp_path,
        "int taps_vector_code(void)",
        "int taps_vector_code(int unused)",
        "push_pull_taps.c",
    )
    with pytest.raises(SystemExit, match="different signatures"):
        against_build.build_other(str(checkout), NAME, str(tmp_path / "cache"))


def test_a_folder_without_the_package_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no timm_pushpull package"):
        against_build.build_other(str(tmp_path), NAME, str(tmp_path / "cache"))


def test_groups_and_rounds_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        against_build.main([str(tmp_path), "--groups", "0"])
    assert "--groups and --rounds must be at least 1" in capsys.readouterr().err


def test_only_libraries_a_swap_reaches_are_offered(tmp_path, capsys):
    # the GEMM's address is kept from its first call: swapping its library would time one build twice
    with pytest.raises(SystemExit):
        against_build.main([str(tmp_path), "--library", "gemm"])
    assert "invalid choice: 'gemm'" in capsys.readouterr().err


def test_a_filter_that_keeps_no_case_is_refused_before_any_build(tmp_path, capsys):
    with pytest.raises(SystemExit):
        against_build.main([str(tmp_path), "--only", "resnet18"])
    assert "--only 'resnet18': no case has it in its name" in capsys.readouterr().err
