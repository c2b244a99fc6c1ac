"""Corruptions: every setting runs; parameters and ops match independent references."""

import io
import math
import multiprocessing
import os

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.color
import torch
import torch.nn.functional as F
from PIL import Image

from timm_pushpull import native
from timm_pushpull.benchmarks.corruption_references import disk
from timm_pushpull.layers import blur_pool
from timm_pushpull.robustness.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PAD_MODES,
    SEVERITY_PARAMS,
    gaussian_blur2d,
    motion_blur2d,
    pad2d,
    plasma_fractal,
)
from timm_pushpull.robustness.corruptions import corrupt as corrupt_stored
from timm_pushpull.robustness.corruptions.noise import (
    _GUIDE_BUCKETS,
    _poisson_tables,
    _quantise_8bit,
    add_gaussian_noise,
    add_speckle_noise,
    poisson_8bit,
)
from timm_pushpull.robustness.corruptions.random import random_normal, random_uniform
from timm_pushpull.robustness.perturbations import SEQUENCE_PARAMS, perturbation_sequence


def corrupt(*args, **kwargs):
    """The corruption as computed: these tests check the float math against references; the
    default 8-bit / JPEG storage is tested in test_corruptions_reference.py."""
    return corrupt_stored(*args, output="float", **kwargs)


SHAPES = [(2, 3, 32, 32), (1, 1, 28, 28), (2, 3, 20, 27)]
RANDOM_CORRUPTIONS = [
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
    "snow", "frost", "fog", "elastic_transform", "spatter",
]  # fmt: skip


def smooth_images(shape, seed=0):
    """Images with structure at several scales (blurs and shuffles must change them)."""
    rng = np.random.default_rng(seed)
    images = rng.random(shape)
    images = 0.5 * images + 0.5 * ndi.gaussian_filter(images, (0, 0, 2, 2)) * 2 - 0.25
    return torch.from_numpy(np.clip(images, 0, 1)).float()


def test_names_follow_the_official_files():
    assert len(CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4
    assert CORRUPTIONS[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert CORRUPTIONS[-3:] == ("elastic_transform", "pixelate", "jpeg_compression")
    assert set(SEVERITY_PARAMS) == set(ALL_CORRUPTIONS)
    for scales in SEVERITY_PARAMS.values():
        assert all(len(scales[scale]) == 5 for scale in ("cifar", "imagenet"))


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_setting_keeps_shape_dtype_and_range(name, scale):
    for shape in SHAPES:
        images = smooth_images(shape)
        for severity in range(1, 6):
            out = corrupt(images, name, severity, scale=scale, seed=severity)
            assert out.shape == images.shape and out.dtype == images.dtype
            assert torch.isfinite(out).all()
            assert 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_kept(dtype):
    images = smooth_images((2, 3, 16, 16)).to(dtype)
    for name in ("gaussian_noise", "defocus_blur", "jpeg_compression"):
        assert corrupt(images, name, 3).dtype == dtype


@pytest.mark.parametrize("name", RANDOM_CORRUPTIONS)
def test_same_seed_same_output_other_seed_other_output(name):
    images = smooth_images((3, 3, 32, 32))
    first = corrupt(images, name, 5, seed=7)
    assert torch.equal(first, corrupt(images, name, 5, seed=7))
    assert not torch.equal(first, corrupt(images, name, 5, seed=8))


MONOTONE = [
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur",
    "gaussian_blur", "zoom_blur", "contrast", "brightness", "pixelate", "jpeg_compression", "fog",
]  # fmt: skip


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", MONOTONE)
def test_distance_to_clean_grows_with_severity(name, scale):
    images = smooth_images((8, 3, 32, 32))
    distances = [
        (corrupt(images, name, severity, scale=scale) - images).abs().mean().item()
        for severity in range(1, 6)
    ]
    assert distances == sorted(distances), distances
    assert distances[0] > 0


def test_noise_statistics():
    grey = torch.full((4, 3, 64, 64), 0.5)
    std = SEVERITY_PARAMS["gaussian_noise"]["cifar"][2]
    assert (corrupt(grey, "gaussian_noise", 3) - grey).std().item() == pytest.approx(std, rel=0.05)

    photons = SEVERITY_PARAMS["shot_noise"]["cifar"][4]
    shot = corrupt(grey, "shot_noise", 5) - grey
    assert shot.mean().item() == pytest.approx(0, abs=0.003)
    assert shot.var().item() == pytest.approx(0.5 / photons, rel=0.05)  # Poisson: var = mean

    amount = SEVERITY_PARAMS["impulse_noise"]["cifar"][4]
    impulse = corrupt(grey, "impulse_noise", 5)
    changed = impulse != grey
    assert changed.float().mean().item() == pytest.approx(amount, rel=0.1)
    assert set(impulse[changed].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(
    "name,sweep,sequence_std",
    [
        ("gaussian_noise", add_gaussian_noise, SEQUENCE_PARAMS["cifar"].gaussian_std),
        ("speckle_noise", add_speckle_noise, SEQUENCE_PARAMS["cifar"].speckle_std),
    ],
)
def test_corruptions_sequences_and_sweeps_add_the_same_noise(name, sweep, sequence_std):
    # one noise implementation: with the same standard normal draws, a corruption, a -P frame and
    # a noise-sweep level of the same strength are the same images, bit for bit
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    seed = 4
    draws = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    std = SEVERITY_PARAMS[name]["cifar"][4]
    assert torch.equal(corrupt(images, name, 5, seed=seed), sweep(images, std**2, draws))
    frame = perturbation_sequence(images, name, seed=seed, num_frames=2)[:, 1]
    assert torch.equal(frame, sweep(images, sequence_std**2, draws))


def _poisson_chi2_pvalue(samples: np.ndarray, rate: float) -> float:
    """Chi-square goodness of fit of integer samples to Poisson(rate), bins of expected >= 20."""
    from scipy import stats

    support = np.arange(int(rate + 12 * math.sqrt(rate) + 20))
    expected = stats.poisson.pmf(support, rate) * len(samples)
    observed = np.bincount(samples, minlength=len(support))[: len(support)].astype(float)
    observed[-1] += len(samples) - observed.sum()  # draws beyond the table go to the last bin
    expected[-1] += len(samples) - expected.sum()
    obs, exp = [0.0], [0.0]  # bins grown left to right until each expects >= 20 draws
    for o, e in zip(observed, expected):
        if exp[-1] >= 20:
            obs.append(0.0)
            exp.append(0.0)
        obs[-1] += o
        exp[-1] += e
    if exp[-1] < 20 and len(exp) > 1:
        obs[-2:], exp[-2:] = [obs[-2] + obs[-1]], [exp[-2] + exp[-1]]
    return stats.chisquare(obs, exp).pvalue


def _draw_counts(levels: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    u_scaled = random_uniform(levels.shape, 0, _GUIDE_BUCKETS, torch.empty(0), generator)
    return (poisson_8bit(levels, u_scaled, photons) * photons).round().long()


@pytest.mark.parametrize("photons", [500, 50, 3])  # CIFAR severity 1 and 5, ImageNet severity 5
def test_table_inversion_poisson_sampler(photons):
    # Shot noise on decoded 8-bit images uses table inversion instead of torch.poisson: its draws
    # must fit the Poisson pmf, and the same test must reject a rate 2% off (it can fail).
    generator = torch.Generator().manual_seed(photons)
    for level in (0, 1, 100, 255):
        counts = _draw_counts(torch.full((120_000,), level, dtype=torch.uint8), photons, generator)
        samples, rate = counts.numpy(), photons * level / 255
        if level == 0:
            assert not samples.any()
            continue
        assert _poisson_chi2_pvalue(samples, rate) > 1e-4, level
        if rate > 1:
            assert _poisson_chi2_pvalue(samples, rate * 1.02) < 1e-6, level


@pytest.mark.parametrize("use_native", [True, False])
def test_largest_uniform_draw_takes_the_last_bucket(use_native):
    # uniform_(0, B) returns B itself for its largest raw draws (float32 rounding); u = 1 lies
    # above every CDF value below 1, so k is where the CDF table reaches 1.0
    photons = 50.0
    cdf = _poisson_tables(photons, torch.device("cpu"))[0]
    levels = torch.tensor([255, 100, 0], dtype=torch.uint8)
    expected = torch.tensor([int((cdf[level] >= 1.0).nonzero()[0]) for level in levels.tolist()])
    u_scaled = torch.full((3,), float(_GUIDE_BUCKETS))
    with native.native_kernels(use_native):
        counts = poisson_8bit(levels, u_scaled, photons) * photons
    torch.testing.assert_close(counts.round().long(), expected)
    assert expected[0] > photons  # the far tail of level 255's Poisson(50)


def test_shot_noise_takes_the_table_sampler_on_8bit_images():
    levels = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    images = (levels / 255).contiguous(memory_format=torch.channels_last)
    photons = SEVERITY_PARAMS["shot_noise"]["cifar"][0]
    generator = torch.Generator().manual_seed(3)
    expected = _draw_counts(levels.to(torch.uint8), photons, generator) / photons
    torch.testing.assert_close(corrupt(images, "shot_noise", 1, seed=3), expected.clamp(0, 1))


requires_compiler = pytest.mark.skipif(
    native.find_compiler() is None, reason="no C compiler for the corruption kernels"
)


def _with_and_without_kernels(images, name):
    """(C kernels, torch ops only) outputs of ``name`` at severities 1 and 5 of both scales."""
    assert native.load(name) is not None
    for severity in (1, 5):
        for scale in ("cifar", "imagenet"):
            in_c = corrupt(images, name, severity, scale=scale, seed=severity)
            with native.native_kernels(False):
                in_torch = corrupt(images, name, severity, scale=scale, seed=severity)
            yield in_c, in_torch


@requires_compiler
@pytest.mark.parametrize("shape", [(3, 3, 33, 31), (2, 1, 8, 8)])
@pytest.mark.parametrize("offset", [0.0, 0.004])  # on the 8-bit grid; 1 level off it
def test_shot_noise_c_kernel_equals_the_torch_ops(shape, offset):
    levels = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1))
    images = (levels / 255 + offset / 255).clamp(0, 1)
    for in_c, in_torch in _with_and_without_kernels(images, "shot_noise"):
        assert torch.equal(in_c, in_torch)


@requires_compiler
@pytest.mark.parametrize("shape", [(3, 3, 33, 31), (2, 3, 8, 8)])
def test_frost_c_kernel_matches_the_torch_ops(shape):
    images = smooth_images(shape)
    for in_c, in_torch in _with_and_without_kernels(images, "frost"):
        # the same crops; the two may round the last bit differently
        torch.testing.assert_close(in_c, in_torch, rtol=0, atol=3e-7)
        assert not torch.equal(in_c, images)


@pytest.mark.parametrize("use_native", [True, False])
def test_quantise_8bit(use_native):
    levels = torch.arange(256, dtype=torch.uint8)
    grid = levels / 255
    with native.native_kernels(use_native):
        assert torch.equal(_quantise_8bit(grid + 0.0009 / 255), levels)  # within the tolerance
        for off in (
            grid + 0.0011 / 255,  # just beyond it
            torch.tensor([0.5, float("nan")]),
            torch.tensor([2.0]),  # on the grid, but level 510
            torch.tensor([-1 / 255]),
        ):
            assert _quantise_8bit(off.float()) is None, off


def _noise_in_child(images, queue):
    queue.put(corrupt(images, "gaussian_noise", 3, seed=1).numpy())  # by value, not shared memory


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_large_noise_draws_are_chunked_and_fork_safe():
    # > 2^18 values: drawn in parallel chunks; the same in a forked child (a DataLoader worker
    # inherits the parent's thread pool without its threads) as in the parent
    images = torch.full((4, 3, 256, 256), 0.5)
    expected = corrupt(images, "gaussian_noise", 3, seed=1)
    std = SEVERITY_PARAMS["gaussian_noise"]["cifar"][2]
    assert (expected - images).std().item() == pytest.approx(std, rel=0.02)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_noise_in_child, args=(images, queue))
    child.start()
    out = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(out, expected.numpy())


@pytest.mark.parametrize("use_native", [True, False])
def test_large_draws_fit_their_distributions(use_native):
    # above RANDOM_CHUNK values: the chunked path (the C kernel, or torch generators on threads);
    # the same goodness-of-fit tests must reject a slightly wrong distribution (they can fail)
    from scipy import stats

    target = torch.empty(600_000)
    with native.native_kernels(use_native):
        normal = random_normal(target, torch.Generator().manual_seed(1)).double().numpy()
        uniform = random_uniform(target.shape, -2, 6, target, torch.Generator().manual_seed(2))
    assert stats.kstest(normal, "norm").pvalue > 1e-4
    assert stats.kstest(normal, "norm", args=(0.01, 1.0)).pvalue < 1e-4
    assert stats.kstest(normal * 1.02, "norm").pvalue < 1e-4
    # the tails: P(|z| > 3) = 0.0027, P(|z| > 4) = 6.3e-5 (Poisson counts, 5 sigma)
    for z in (3.0, 4.0):
        expected = 2 * stats.norm.sf(z) * len(normal)
        assert abs((np.abs(normal) > z).sum() - expected) < 5 * math.sqrt(expected), z
    u = uniform.double().numpy()
    assert -2 <= u.min() and u.max() < 6
    assert stats.kstest(u, "uniform", args=(-2, 8)).pvalue > 1e-4
    assert stats.kstest(u, "uniform", args=(-2, 8.05)).pvalue < 1e-4


def test_large_draws_do_not_depend_on_the_thread_count():
    target = torch.empty(700_000)
    threads = torch.get_num_threads()
    draws = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            draws.append(random_normal(target, torch.Generator().manual_seed(5)))
            draws.append(
                random_uniform(target.shape, 0, 1, target, torch.Generator().manual_seed(5))
            )
    finally:
        torch.set_num_threads(threads)
    for later in range(2, len(draws)):
        assert torch.equal(draws[later], draws[later % 2])
    assert not torch.equal(draws[0], random_normal(target, torch.Generator().manual_seed(6)))


def test_gaussian_blur_matches_scipy():
    images = smooth_images((2, 3, 20, 27))
    for scale in ("cifar", "imagenet"):
        for severity in (1, 5):
            sigma = SEVERITY_PARAMS["gaussian_blur"][scale][severity - 1]
            # skimage.filters.gaussian(multichannel=True) of the scripts = scipy, mode 'nearest'
            expected = ndi.gaussian_filter(images.numpy(), (0, 0, sigma, sigma), mode="nearest")
            out = corrupt(images, "gaussian_blur", severity, scale=scale)
            np.testing.assert_allclose(out.numpy(), expected.clip(0, 1), atol=1e-5)


# pad2d's modes as NumPy names them, and SciPy (scipy.ndimage, hence scikit-image)
NUMPY_PAD = {
    "reflect": "reflect",
    "symmetric": "symmetric",
    "replicate": "edge",
    "zero": "constant",
}
SCIPY_PAD = {
    "reflect": "mirror",
    "symmetric": "reflect",
    "replicate": "nearest",
    "zero": "constant",
}


@pytest.mark.parametrize("pad", [(1, 2, 0, 1), (6, 9, 4, 7)])  # within and beyond the 4 x 3 map
def test_pad_modes_are_numpys_and_mean_what_blur_pool_means(pad):
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(1, 2, 4, 3)
    top, bottom, left, right = pad
    for mode in PAD_MODES:
        expected = np.pad(
            x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), NUMPY_PAD[mode]
        )
        np.testing.assert_array_equal(pad2d(x, pad, mode).numpy(), expected, err_msg=mode)
    # the blur-pool's names are these, with torch's meaning (its "reflect" repeats no edge pixel)
    assert set(blur_pool.PAD_MODES) - set(PAD_MODES) == {"circular"}
    for mode in ("reflect", "replicate", "zero"):
        torch_mode = "constant" if mode == "zero" else mode
        assert torch.equal(pad2d(x, (1, 2, 0, 1), mode), F.pad(x, (0, 1, 1, 2), mode=torch_mode))
    with pytest.raises(ValueError, match="pad_mode 'reflect101'; expected one of: reflect, "):
        pad2d(x, pad, "reflect101")


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "replicate", "zero"])
def test_gaussian_blur_pads_like_scipys_other_names(mode):
    images = torch.rand(1, 2, 9, 7, generator=torch.Generator().manual_seed(0))
    expected = ndi.gaussian_filter(images.double().numpy(), (0, 0, 1.5, 1.5), mode=SCIPY_PAD[mode])
    out = gaussian_blur2d(images, 1.5, pad_mode=mode)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_contrast_by_hand():
    images = torch.tensor([[[[0.0, 1.0], [0.2, 0.6]]]])  # channel mean 0.45
    out = corrupt(images, "contrast", 2)  # CIFAR factor 0.5
    expected = torch.tensor([[[[0.225, 0.725], [0.325, 0.525]]]])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name,channel", [("brightness", 2), ("saturate", 1)])
def test_hsv_corruptions_match_skimage(name, channel):
    rgb = smooth_images((2, 3, 12, 12)).double()
    rgb[0, :, :3, :3] = 0.3  # grey pixels (skimage gives them hue 0)
    rgb[0, :, 5, 5] = 0.0  # black
    for scale in ("cifar", "imagenet"):
        for severity in range(1, 6):
            c = SEVERITY_PARAMS[name][scale][severity - 1]
            hsv = skimage.color.rgb2hsv(rgb.permute(0, 2, 3, 1).numpy())
            if name == "brightness":
                hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
            else:
                hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
            expected = np.clip(skimage.color.hsv2rgb(hsv), 0, 1).transpose(0, 3, 1, 2)
            out = corrupt(rgb.float(), name, severity, scale=scale)
            np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_grey_images_brightness_adds_and_saturate_is_identity():
    grey = smooth_images((2, 1, 16, 16))
    delta = SEVERITY_PARAMS["brightness"]["cifar"][4]
    torch.testing.assert_close(corrupt(grey, "brightness", 5), (grey + delta).clamp(0, 1))
    assert torch.equal(corrupt(grey, "saturate", 5), grey)


def test_pixelate_matches_pillow_box_resize():
    """Non-square images, 8-bit like the scripts' PIL images: the same bytes as Pillow."""
    images = (smooth_images((2, 3, 30, 37)) * 255).round().to(torch.uint8)
    height, width = images.shape[-2:]
    for scale in ("cifar", "imagenet"):
        for severity in (1, 3, 5):
            factor = SEVERITY_PARAMS["pixelate"][scale][severity - 1]
            small = (int(width * factor), int(height * factor))
            expected = [
                np.asarray(
                    Image.fromarray(image.transpose(1, 2, 0))
                    .resize(small, Image.BOX)
                    .resize((width, height), Image.BOX)
                ).transpose(2, 0, 1)
                for image in images.numpy()
            ]
            out = corrupt(images.float() / 255, "pixelate", severity, scale=scale)
            np.testing.assert_array_equal((out * 255).round().to(torch.uint8).numpy(), expected)


def test_jpeg_matches_pillow():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    for scale, severity in (("cifar", 1), ("cifar", 5), ("imagenet", 5)):
        quality = SEVERITY_PARAMS["jpeg_compression"][scale][severity - 1]
        expected = []
        for image in pixels:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
            expected.append(np.asarray(Image.open(buffer)))
        out = corrupt(images, "jpeg_compression", severity, scale=scale)
        got = (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(got, np.stack(expected))


def test_defocus_matches_opencv_filter2d():
    images = smooth_images((2, 3, 30, 37))
    for scale in ("cifar", "imagenet"):
        for severity in (1, 4, 5):
            kernel = disk(*SEVERITY_PARAMS["defocus_blur"][scale][severity - 1])
            expected = [
                [cv2.filter2D(plane, -1, kernel) for plane in image] for image in images.numpy()
            ]
            out = corrupt(images, "defocus_blur", severity, scale=scale)
            np.testing.assert_allclose(out.numpy(), np.clip(expected, 0, 1), atol=1e-5)


def reference_clipped_zoom(image, factor):
    """The scripts' clipped_zoom (HWC) with scipy.ndimage.zoom, per axis for non-square images."""
    height, width = image.shape[:2]
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    zoomed = ndi.zoom(image[top : top + crop_h, left : left + crop_w], (factor, factor, 1), order=1)
    trim_h, trim_w = (zoomed.shape[0] - height) // 2, (zoomed.shape[1] - width) // 2
    return zoomed[trim_h : trim_h + height, trim_w : trim_w + width]


def test_zoom_blur_matches_scipy_zoom():
    images = smooth_images((2, 3, 30, 37))
    for scale in ("cifar", "imagenet"):
        severity = 5
        factors = np.arange(*SEVERITY_PARAMS["zoom_blur"][scale][severity - 1])
        expected = []
        for image in images.numpy().transpose(0, 2, 3, 1):
            total = image + sum(reference_clipped_zoom(image, f) for f in factors)
            expected.append((total / (len(factors) + 1)).transpose(2, 0, 1))
        out = corrupt(images, "zoom_blur", severity, scale=scale)
        np.testing.assert_allclose(out.numpy(), np.clip(expected, 0, 1), atol=1e-5)


def test_motion_blur_taps_follow_the_angle():
    images = smooth_images((1, 3, 16, 16)).double().float()
    radius, sigma = 3, 1.5
    taps = np.exp(-(np.arange(7) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    src = images.numpy()
    cols, rows = np.arange(16), np.arange(16)
    # angle 0: towards +x, angle 90: towards +y (image rows), edge pixels repeated
    along_x = sum(t * src[..., np.minimum(cols + i, 15)] for i, t in enumerate(taps))
    along_y = sum(t * src[..., np.minimum(rows + i, 15), :] for i, t in enumerate(taps))
    for angle, expected in ((0.0, along_x), (90.0, along_y)):
        out = motion_blur2d(images, radius, sigma, torch.tensor([angle]))
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    # per-image angles in one call (blurred in chunks of similar angles) equal separate calls
    batch = smooth_images((70, 1, 10, 12))
    angles = torch.rand(70, generator=torch.Generator().manual_seed(0)) * 360 - 180
    together = motion_blur2d(batch, radius, sigma, angles)
    for image, angle, out in zip(batch, angles, together, strict=True):
        alone = motion_blur2d(image[None], radius, sigma, angle.view(1))
        torch.testing.assert_close(out[None], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", ["cifar", "imagenet"])
def test_glass_blur_equals_the_sequential_pixel_loop(scale):
    # White-box: replays the generator draws of the implementation (per iteration one
    # randint((2d)^2, (B, R)) coding (dy, dx)) through the scripts' sequential loop.
    images = smooth_images((2, 3, 13, 16))
    batch, _, height, width = images.shape
    for severity in (2, 5):
        sigma, delta, iterations = SEVERITY_PARAMS["glass_blur"][scale][severity - 1]
        rows, cols = range(height - delta, delta, -1), range(width - delta, delta, -1)
        generator = torch.Generator().manual_seed(11)
        side = 2 * delta
        shape = (batch, len(rows) * len(cols))
        codes = [torch.randint(side**2, shape, generator=generator) for _ in range(iterations)]
        draws = [torch.stack([code // side, code % side]) - delta for code in codes]
        expected = []
        for b, image in enumerate(images.numpy()):
            x = ndi.gaussian_filter(image, (0, sigma, sigma), mode="nearest")
            x = (np.floor(x * 255) / 255).transpose(1, 2, 0).copy()
            for shifts in draws:
                for k, (h, w) in enumerate((h, w) for h in rows for w in cols):
                    dy, dx = int(shifts[0, b, k]), int(shifts[1, b, k])
                    x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]  # views: a copy
            expected.append(
                ndi.gaussian_filter(x.transpose(2, 0, 1), (0, sigma, sigma), mode="nearest")
            )
        out = corrupt(images, "glass_blur", severity, scale=scale, seed=11)
        np.testing.assert_allclose(out.numpy(), np.clip(expected, 0, 1), atol=1e-5)


def test_plasma_fractal_is_normalised_and_seeded():
    maps = plasma_fractal(3, 32, 3.0, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert maps.shape == (3, 32, 32)
    assert maps.amin((1, 2)).tolist() == [0, 0, 0] and maps.amax((1, 2)).tolist() == [1, 1, 1]
    again = plasma_fractal(3, 32, 3.0, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(maps, again)
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(1, 30, 3.0, torch.Generator(), torch.device("cpu"))


def test_frost_blends_image_and_texture():
    images = torch.zeros(4, 3, 32, 32)
    image_weight, frost_weight, _ = SEVERITY_PARAMS["frost"]["cifar"][4]
    out = corrupt(images, "frost", 5)
    assert 0 < out.max() <= frost_weight + 1e-6  # black images show only the texture
    white = corrupt(torch.ones(4, 3, 32, 32), "frost", 5)
    assert white.min() >= image_weight - 1e-6


def test_spatter_water_and_mud_change_the_image():
    images = smooth_images((4, 3, 32, 32))
    water = corrupt(images, "spatter", 1)  # c[5] == 0: water drops are added (brighter)
    assert (water >= images - 1e-6).all() and (water > images + 0.01).any()
    mud = corrupt(images, "spatter", 5)  # mud replaces pixels with brown
    brown = torch.tensor([63, 42, 20]).view(1, 3, 1) / 255
    changed = (mud - images).abs().amax(1) > 1e-6
    assert changed.any()
    assert ((mud.permute(0, 2, 3, 1)[changed] - brown.view(1, 3)).abs() < 0.3).all()


def test_bad_input_is_refused_with_the_allowed_values():
    images = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown corruption 'fogg'.*gaussian_noise.*saturate"):
        corrupt(images, "fogg", 1)
    for severity in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match="severity"):
            corrupt(images, "fog", severity)
    with pytest.raises(ValueError, match="scale.*cifar, imagenet"):
        corrupt(images, "fog", 1, scale="tiny")
    with pytest.raises(ValueError, match="floating-point.*uint8"):
        corrupt((images * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\].*max 255"):
        corrupt(images * 0 + 255, "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(images - 0.5, "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(torch.full((1, 3, 8, 8), float("nan")), "fog", 1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        corrupt(images[0], "fog", 1)
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        corrupt(torch.rand(1, 2, 8, 8), "fog", 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        corrupt(images.numpy(), "fog", 1)


def test_empty_batch():
    assert corrupt(torch.rand(0, 3, 8, 8), "snow", 3).shape == (0, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_runs_on_the_gpu(name):
    images = smooth_images((4, 3, 32, 32))
    out = corrupt(images.cuda(), name, 3)
    assert out.is_cuda and out.shape == images.shape
    if name not in RANDOM_CORRUPTIONS:
        torch.testing.assert_close(out.cpu(), corrupt(images, name, 3), atol=1e-4, rtol=0)


_UNDER_ANOTHER_DEFAULT_DEVICE = """
import torch
from timm_pushpull.robustness.corruptions import ALL_CORRUPTIONS, corrupt
x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
torch.set_default_device("meta")  # first, so that every cached table is made under it
try:
    moved = {name: corrupt(x, name, 3, seed=1) for name in ALL_CORRUPTIONS}
finally:
    torch.set_default_device(None)
for name in ALL_CORRUPTIONS:
    assert moved[name].device.type == "cpu", name
    assert torch.equal(moved[name], corrupt(x, name, 3, seed=1)), name
print("same")
"""


def test_cpu_images_are_corrupted_on_the_cpu_whatever_the_default_device():
    # torch.set_default_device("cuda") for the model must not send a CPU batch's tables and
    # buffers elsewhere: seven corruptions failed, and C kernels would be handed other pointers;
    # a fresh process, so that no table was cached before
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _UNDER_ANOTHER_DEFAULT_DEVICE], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]
