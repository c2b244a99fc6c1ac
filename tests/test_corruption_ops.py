"""The corruptions' C kernels as torch.library ops: schema, fake and autograd registration
(opcheck), one node each in torch.export / torch.compile graphs, and their values against
independent references (the published xoshiro256** algorithm, crops cut by hand)."""

import collections
import shutil

import pytest
import torch
import torch.nn as nn

from timm_pushpull import native
from timm_pushpull.robustness.corruptions.noise import (
    _GUIDE_BUCKETS,
    gaussian_noise,
    poisson_8bit,
    quantise_8bit,
)
from timm_pushpull.robustness.corruptions.params import GRID_TOLERANCE
from timm_pushpull.robustness.corruptions.random import random_fill
from timm_pushpull.robustness.corruptions.weather import frost_blend

requires_compiler = pytest.mark.skipif(
    native.find_compiler() is None, reason="no C compiler for the corruption kernels"
)
# the C kernels where a compiler is found, and the torch ops that stand in without one
KERNELS = [pytest.param(True, marks=requires_compiler, id="c"), pytest.param(False, id="torch")]
LUMA = (0.299, 0.587, 0.114)
MASK64 = (1 << 64) - 1


@pytest.fixture(params=KERNELS)
def use_native(request):
    with native.native_kernels(request.param):
        if request.param:
            assert all(native.load(name) for name in ("random", "shot_noise", "frost"))
        yield request.param


def xoshiro256ss(seed: int):
    """Blackman & Vigna's xoshiro256** seeded through splitmix64 (their reference code), in
    Python integers."""

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    state = []
    for _ in range(4):
        seed = (seed + 0x9E3779B97F4A7C15) & MASK64
        z = ((seed ^ (seed >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        state.append(z ^ (z >> 31))
    while True:
        s0, s1, s2, s3 = state
        yield (rotl(s1 * 5 & MASK64, 7) * 9) & MASK64
        s2 ^= s0
        s3 ^= s1
        state = [s0 ^ s3, s1 ^ s2, s2 ^ ((s1 << 17) & MASK64), rotl(s3, 45)]


def _seeds(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(2**62, (count,), generator=torch.Generator().manual_seed(seed))


def _crop_origin(corners, textures: torch.Tensor) -> torch.Tensor:
    """Crop corners ``(texture, row, col)`` as rows of the ``[N * H_max * W_max, 3]`` table."""
    _, height, width, _ = textures.shape
    return torch.tensor([(n * height + i) * width + j for n, i, j in corners])


def _frost_reference(x, textures, corners, ratio, weight):
    """The blend in float64 with the crops cut by slicing."""
    _, _, height, width = x.shape
    crops = torch.stack(
        [textures[n, i : i + height, j : j + width].permute(2, 0, 1) for n, i, j in corners]
    ).double()
    if x.shape[1] == 1:
        crops = sum(w * crops[:, c : c + 1] for c, w in enumerate(LUMA))
    return (x.double() + ratio * crops) * weight


def _frost_inputs(channels: int, dtype=torch.float32, requires_grad=False):
    generator = torch.Generator().manual_seed(channels)
    x = torch.rand(3, channels, 4, 5, generator=generator, dtype=dtype)
    textures = torch.rand(2, 6, 7, 3, generator=generator, dtype=dtype)
    corners = [(1, 2, 0), (0, 0, 2), (1, 1, 1)]  # crops of texture 1 overlap
    origin = _crop_origin(corners, textures)
    return x.requires_grad_(requires_grad), textures.requires_grad_(requires_grad), origin, corners


# ---- opcheck: schema, fake implementation, autograd registration, AOT dispatch ----


@pytest.mark.parametrize("normal", [True, False])
def test_random_fill_opcheck(use_native, normal):
    torch.library.opcheck(random_fill, (_seeds(3), [2, 5], 4, normal, -1.0, 3.0, torch.float32))


def test_quantise_8bit_opcheck(use_native):
    on_grid = torch.randint(0, 256, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0)) / 255
    for x in (on_grid, on_grid + 0.3 / 255):
        torch.library.opcheck(quantise_8bit, (x, GRID_TOLERANCE))


def test_poisson_8bit_opcheck(use_native):
    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8, generator=generator)
    u_scaled = torch.rand(levels.shape, generator=generator) * _GUIDE_BUCKETS
    torch.library.opcheck(poisson_8bit, (levels, u_scaled, 60.0))


@pytest.mark.parametrize("channels", [3, 1])
def test_frost_blend_opcheck(use_native, channels):
    x, textures, origin, _ = _frost_inputs(channels, requires_grad=True)
    torch.library.opcheck(frost_blend, (x, textures, origin, 0.7, 0.8))


# ---- values ----


@requires_compiler
def test_random_fill_c_kernel_is_xoshiro256ss_per_chunk():
    # uniforms: the top 24 bits of each draw, times (high - low) plus low in double, as float32
    seeds, low, high = _seeds(3, 1), -2.0, 5.0
    out = random_fill(seeds, [7], 3, False, low, high, torch.float32)
    assert native.load("random") is not None
    expected = []
    for seed in seeds.tolist():
        draws = xoshiro256ss(seed)
        expected += [(next(draws) >> 40) * 2.0**-24 * (high - low) + low for _ in range(3)]
    assert torch.equal(out, torch.tensor(expected[:7], dtype=torch.float32))


def test_random_fill_without_kernels_is_one_torch_generator_per_chunk():
    seeds = _seeds(3, 2)
    with native.native_kernels(False):
        uniform = random_fill(seeds, [2, 4], 3, False, 0.5, 2.0, torch.float32)
        normal = random_fill(seeds, [8], 3, True, 0.0, 1.0, torch.float64)
    for c, seed in enumerate(seeds.tolist()):
        size = min(3, 8 - 3 * c)
        expected = torch.empty(size).uniform_(
            0.5, 2.0, generator=torch.Generator().manual_seed(seed)
        )
        assert torch.equal(uniform.view(-1)[3 * c : 3 * c + size], expected)
        generator = torch.Generator().manual_seed(seed)
        expected = torch.empty(size, dtype=torch.float64).normal_(generator=generator)
        assert torch.equal(normal[3 * c : 3 * c + size], expected)


def test_random_fill_refuses_a_wrong_number_of_seeds():
    for seeds, chunk in ((_seeds(2), 4), (_seeds(3).int(), 4), (_seeds(3), 0)):
        with pytest.raises(ValueError, match=r"seeds must be int64 \[.*chunk"):
            random_fill(seeds, [2, 5], chunk, True, 0.0, 1.0, torch.float32)


def test_poisson_8bit_refuses_uniforms_of_another_shape():
    levels = torch.zeros(2, 5, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"u_scaled must have the levels' shape \[2, 5\]"):
        poisson_8bit(levels, torch.zeros(8), 60.0)


def test_quantise_8bit_op_returns_levels_and_whether_on_the_grid(use_native):
    levels = torch.arange(256, dtype=torch.uint8).view(16, 16)
    got, on_grid = quantise_8bit(levels / 255 + 0.0009 / 255, GRID_TOLERANCE)
    assert on_grid.dtype == torch.bool and on_grid.shape == () and bool(on_grid)
    assert torch.equal(got, levels)
    assert not bool(quantise_8bit(levels / 255 + 0.0011 / 255, GRID_TOLERANCE)[1])
    assert not bool(quantise_8bit(torch.tensor([0.5, float("nan")]), GRID_TOLERANCE)[1])
    empty_levels, empty_on_grid = quantise_8bit(torch.empty(0, 3), GRID_TOLERANCE)
    assert empty_levels.shape == (0, 3) and bool(empty_on_grid)


@pytest.mark.parametrize("channels", [3, 1])
def test_frost_blend_equals_the_crops_cut_by_hand(use_native, channels):
    x, textures, origin, corners = _frost_inputs(channels)
    for weight in (1.0, 0.6):
        expected = _frost_reference(x, textures, corners, 0.7, weight)
        torch.testing.assert_close(
            frost_blend(x, textures, origin, 0.7, weight).double(), expected, rtol=0, atol=1e-6
        )


def test_frost_blend_refuses_crops_outside_the_textures():
    x, textures, origin, _ = _frost_inputs(3)
    image = x[:1]  # 4x5
    last_fit = _crop_origin([(1, 2, 2)], textures)  # rows 2-5 of 6, columns 2-6 of 7
    frost_blend(image, textures, last_fit, 0.5, 1.0)
    for bad in (last_fit + 7, torch.tensor([-1]), origin):  # a row further, negative, 3 corners
        with pytest.raises(ValueError, match="origin must hold 1 crop corners"):
            frost_blend(image, textures, bad, 0.5, 1.0)


# ---- gradients ----


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_frost_blend_gradient_equals_the_hand_computed_one(use_native, channels, dtype):
    # out = (x + r * crop(textures)) * w: d/dx = w; d/dtextures adds r * w * grad into each crop
    # window (times the luma weights for grey images), overlapping windows summing
    x, textures, origin, corners = _frost_inputs(channels, dtype, requires_grad=True)
    ratio, weight = 0.7, 0.6
    grad = torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(5))
    grad_x, grad_textures = torch.autograd.grad(
        frost_blend(x, textures, origin, ratio, weight), (x, textures), grad
    )
    expected = torch.zeros_like(textures)
    _, _, height, width = x.shape
    for b, (n, i, j) in enumerate(corners):
        spread = ratio * weight * grad[b].permute(1, 2, 0)  # [H, W, C]
        if channels == 1:
            spread = spread * torch.tensor(LUMA, dtype=dtype)
        expected[n, i : i + height, j : j + width] += spread
    torch.testing.assert_close(grad_x, weight * grad)
    torch.testing.assert_close(grad_textures, expected)


def test_the_random_and_quantising_ops_have_no_gradient():
    levels = torch.randint(0, 256, (6,), dtype=torch.uint8)
    u_scaled = torch.full((6,), 100.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="poisson_8bit.*no autograd formula"):
        poisson_8bit(levels, u_scaled, 50.0).sum().backward()
    got, on_grid = quantise_8bit((levels / 255).requires_grad_(), GRID_TOLERANCE)
    assert not got.requires_grad and not on_grid.requires_grad  # integer outputs


def test_vmap_runs_each_op_per_element(use_native):
    # quantise: one on_grid per vmapped image
    levels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    images = torch.stack([levels / 255, levels / 255 + 0.3 / 255])
    got, on_grid = torch.vmap(quantise_8bit, in_dims=(0, None))(images, GRID_TOLERANCE)
    assert on_grid.tolist() == [True, False] and torch.equal(got[0], levels)
    # frost: the same crops blended into each vmapped batch of images
    x, textures, origin, corners = _frost_inputs(3)
    xs = torch.stack([x, 1 - x])
    blended = torch.vmap(frost_blend, in_dims=(0, None, None, None, None))(
        xs, textures, origin, 0.7, 0.6
    )
    for got, images in zip(blended, xs, strict=True):
        expected = _frost_reference(images, textures, corners, 0.7, 0.6)
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)
    # random_fill and poisson_8bit: a row of seeds / uniforms per element
    seeds = torch.stack([_seeds(3, 1), _seeds(3, 2)])
    draws = torch.vmap(random_fill, in_dims=(0, None, None, None, None, None, None))(
        seeds, [2, 5], 4, False, 0.0, float(_GUIDE_BUCKETS), torch.float32
    )
    pixels = levels.view(-1)[:10].view(2, 5)
    counts = torch.vmap(poisson_8bit, in_dims=(None, 0, None))(pixels, draws, 60.0)
    for row in range(2):
        single = random_fill(
            seeds[row], [2, 5], 4, False, 0.0, float(_GUIDE_BUCKETS), torch.float32
        )
        assert torch.equal(draws[row], single)
        assert torch.equal(counts[row], poisson_8bit(pixels, single, 60.0))


# ---- graphs ----


class Corruptions(nn.Module):
    """Gaussian noise, shot noise and frost of images on the 8-bit grid, from seeds and crops."""

    def forward(self, x, seeds, textures, origin):
        shape = list(x.shape)
        noise = random_fill(seeds, shape, 128, True, 0.0, 1.0, torch.float32)
        levels, on_grid = quantise_8bit(x, GRID_TOLERANCE)
        u_scaled = random_fill(seeds, shape, 128, False, 0.0, float(_GUIDE_BUCKETS), torch.float32)
        shot = poisson_8bit(levels, u_scaled, 60.0)
        frost = frost_blend(x, textures, origin, 0.4, 1.0)
        return gaussian_noise(x, 0.08, noise).clamp(0, 1), shot, on_grid, frost.clamp(0, 1)


def _corruption_inputs():
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=generator) / 255  # 384 values: 3 chunks
    textures = torch.rand(2, 12, 10, 3, generator=generator)
    return x, _seeds(3), textures, _crop_origin([(0, 1, 2), (1, 4, 0)], textures)


def test_torch_export_records_each_op_as_one_node(use_native):
    inputs = _corruption_inputs()
    exported = torch.export.export(Corruptions(), inputs)
    targets = collections.Counter(node.target for node in exported.graph.nodes)
    ops = torch.ops.timm_pushpull
    assert targets[ops.random_fill.default] == 2
    for op in (ops.quantise_8bit, ops.poisson_8bit, ops.frost_blend):
        assert targets[op.default] == 1, op
    for got, expected in zip(exported.module()(*inputs), Corruptions()(*inputs), strict=True):
        assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "backend",
    [
        "aot_eager",
        pytest.param(
            "inductor",
            marks=pytest.mark.skipif(
                not (shutil.which("g++") or shutil.which("clang++")),
                reason="inductor builds C++ on the CPU",
            ),
        ),
    ],
)
def test_torch_compile_fullgraph_equals_eager(backend):
    # aot_eager: dynamo and AOT autograd over the fake implementations; inductor also compiles
    # the code around the ops, and may turn x + std * noise into a fused multiply-add: 1 ulp from
    # eager there, while the ops' outputs stay exact
    inputs = _corruption_inputs()
    compiled = torch.compile(Corruptions(), backend=backend, fullgraph=True)
    (noisy, *exact), (expected_noisy, *expected_exact) = compiled(*inputs), Corruptions()(*inputs)
    torch.testing.assert_close(noisy, expected_noisy, rtol=0, atol=1.2e-7)
    if backend == "aot_eager":
        assert torch.equal(noisy, expected_noisy)
    for got, expected in zip(exact, expected_exact, strict=True):
        assert torch.equal(got, expected)
