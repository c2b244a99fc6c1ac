"""The kernels' own GEMM (``csrc/gemm.c``) against float64 products by PyTorch, the BLAS's meaning
of every argument included, and the layer with it against the layer with MKL's."""

import ctypes

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from timm_pushpull import native
from timm_pushpull.layers import PushPull2d
from timm_pushpull.layers.exact_pull import blas_gemm, kernel_gemm, own_gemm

pytestmark = pytest.mark.skipif(
    native.find_compiler() is None or blas_gemm(torch.float64) is None,
    reason="needs a C compiler and PyTorch's MKL (the fallback)",
)

_GEMM = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)
_SCALARS = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}


def gemm(dtype, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """One call of the kernels' GEMM, by the address the kernels get."""
    scalar, whole = _SCALARS[dtype], ctypes.c_int
    _GEMM(kernel_gemm(dtype))(
        transa, transb, ctypes.byref(whole(m)), ctypes.byref(whole(n)), ctypes.byref(whole(k)),
        ctypes.byref(scalar(alpha)), a.data_ptr(), ctypes.byref(whole(lda)), b.data_ptr(),
        ctypes.byref(whole(ldb)), ctypes.byref(scalar(beta)), c.data_ptr(),
        ctypes.byref(whole(ldc)),
    )  # fmt: skip


def column_major(values: torch.Tensor, leading: int) -> torch.Tensor:
    """``values [rows, cols]`` stored column-major with leading dimension ``leading`` (the rows
    beyond ``rows`` hold values the GEMM must not read into its result)."""
    rows, cols = values.shape
    storage = torch.full((cols, leading), 1e30, dtype=values.dtype)
    storage[:, :rows] = values.T
    return storage


def read(storage: torch.Tensor, rows: int) -> torch.Tensor:
    return storage[:, :rows].T


def assert_product(result, alpha, a, b, beta, c) -> None:
    """``result`` is ``alpha a b + beta c`` in float64, within the rounding of a sum of k products
    in ``result``'s precision (beta 0: ``c`` is not read, NaN there must not show)."""
    k = a.shape[1]
    expected = alpha * (a.double() @ b.double()) + (beta * c.double() if beta else 0)
    scale = abs(alpha) * (a.double().abs() @ b.double().abs()) + abs(beta) * c.double().abs()
    tolerance = (1e-6 if result.dtype == torch.float32 else 1e-15) * (k + 2)
    error = (result.double() - expected).abs()
    assert (error <= tolerance * scale + 1e-30).all(), error.max()


@settings(max_examples=120, deadline=None)
@given(
    dtype=st.sampled_from([torch.float32, torch.float64]),
    m=st.integers(1, 70),
    n=st.integers(1, 11),
    k=st.integers(0, 300),
    transb=st.sampled_from([b"N", b"T"]),
    accumulate=st.booleans(),
    spare=st.integers(0, 3),
    columns_apart=st.sampled_from(["near", "a page", "2 KiB"]),
    seed=st.integers(0, 2**16),
)
def test_own_gemm_equals_the_float64_product(
    dtype, m, n, k, transb, accumulate, spare, columns_apart, seed
):
    """C = A op(B) (+ C) for every remainder of its tiles, depths across its 128-column passes,
    leading dimensions longer than the matrices, and A's columns a page or exactly 2 KiB apart
    (copied together first)."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, dtype=dtype, generator=generator)
    op_b = torch.randn(k, n, dtype=dtype, generator=generator)
    c = torch.randn(m, n, dtype=dtype, generator=generator)
    lda = {"near": m + spare, "a page": 5000 // a.element_size() + spare}.get(
        columns_apart, 2048 // a.element_size()
    )
    b_stored = column_major(
        op_b.T if transb == b"T" else op_b, (n if transb == b"T" else k) + spare
    )
    c_stored = column_major(c if accumulate else torch.full_like(c, float("nan")), m + spare)
    a_stored = column_major(a, lda)
    gemm(dtype, b"N", transb, m, n, k, 1.0, a_stored, lda, b_stored, b_stored.shape[1],
         1.0 if accumulate else 0.0, c_stored, c_stored.shape[1])  # fmt: skip
    assert_product(read(c_stored, m), 1.0, a, op_b, 1.0 if accumulate else 0.0, c)
    assert (c_stored[:, m:] == 1e30).all()  # nothing written beyond C's rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "transa, transb, alpha, beta, m, k",
    [
        (b"T", b"N", 1.0, 0.0, 37, 21),
        (b"N", b"N", 2.0, 0.0, 37, 21),
        (b"N", b"T", 1.0, 0.5, 37, 21),
        (b"T", b"T", -1.0, 1.0, 37, 21),
        (b"N", b"N", 1.0, 1.0, 520, 1300),  # tall and deep: over 2 MiB of A
    ],
)
def test_calls_it_does_not_cover_keep_the_blas_meaning(dtype, transa, transb, alpha, beta, m, k):
    """A transposed A, alpha other than 1, beta other than 0 and 1, or a tall and deep product go
    to MKL: same meaning."""
    generator = torch.Generator().manual_seed(0)
    n = 9
    op_a = torch.randn(m, k, dtype=dtype, generator=generator)
    op_b = torch.randn(k, n, dtype=dtype, generator=generator)
    c = torch.randn(m, n, dtype=dtype, generator=generator)
    a_stored = column_major(op_a.T if transa == b"T" else op_a, k if transa == b"T" else m)
    b_stored = column_major(op_b.T if transb == b"T" else op_b, n if transb == b"T" else k)
    c_stored = column_major(c, m)
    gemm(dtype, transa, transb, m, n, k, alpha, a_stored, a_stored.shape[1], b_stored,
         b_stored.shape[1], beta, c_stored, m)  # fmt: skip
    assert_product(read(c_stored, m), alpha, op_a, op_b, beta, c)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (dict(in_channels=16, out_channels=24, kernel_size=3, padding=1), (3, 16, 11, 13)),
        (dict(in_channels=3, out_channels=16, kernel_size=7, stride=2, padding=3), (2, 3, 40, 36)),
        (dict(in_channels=8, out_channels=8, kernel_size=5, padding=2), (2, 8, 9, 9)),
    ],
    ids=["shared", "stem", "5x5"],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_layer_gives_the_same_with_its_own_gemm_and_mkls(layer, shape, channels_last):
    """Forward and every gradient, float64, eval and training: the GEMM changes no result."""
    assert kernel_gemm(torch.float64) != blas_gemm(torch.float64)
    torch.manual_seed(0)
    module = PushPull2d(**layer).double()
    x = torch.randn(shape, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    results = []
    for own in (True, False):
        with own_gemm(own):
            with torch.no_grad():
                evaluated = module.eval()(x)
            inputs = x.clone().requires_grad_()
            trained = module.train()(inputs)
            grads = torch.autograd.grad(trained.square().sum(), [inputs, *module.parameters()])
        results.append([evaluated, trained.detach(), *grads])
    for own, blas in zip(*results):
        torch.testing.assert_close(own, blas, rtol=1e-10, atol=1e-10)
