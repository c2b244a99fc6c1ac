"""Perturbation sequences: frame counts, frames against direct constructions, noise draws."""

import cv2
import numpy as np
import pytest
import torch

from timm_pushpull.robustness.corruptions import corrupt
from timm_pushpull.robustness.perturbations import (
    DEFAULT_NUM_FRAMES,
    NOISE_PERTURBATIONS,
    PERTURBATIONS,
    perturbation_sequence,
    tilt_homography,
)


def images_like(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(shape[0], shape[1], 8, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=shape[2:], mode="bilinear")
    return (0.7 * smooth + 0.3 * torch.rand(shape, generator=generator)).clamp(0, 1)


def test_names_and_default_frame_counts():
    assert len(PERTURBATIONS) == 14
    assert set(NOISE_PERTURBATIONS) == {"gaussian_noise", "shot_noise", "speckle_noise"}
    assert DEFAULT_NUM_FRAMES["translate"] == 16 and DEFAULT_NUM_FRAMES["motion_blur"] == 21
    assert DEFAULT_NUM_FRAMES["rotate"] == 31 and DEFAULT_NUM_FRAMES["gaussian_noise"] == 31


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_shapes_range_and_determinism(name):
    for shape in [(2, 3, 32, 32), (1, 1, 28, 28), (2, 3, 20, 27)]:
        images = images_like(shape)
        frames = perturbation_sequence(images, name, seed=3)
        assert frames.shape == (shape[0], DEFAULT_NUM_FRAMES[name], *shape[1:])
        assert frames.dtype == images.dtype and 0 <= frames.min() and frames.max() <= 1
        assert torch.equal(frames, perturbation_sequence(images, name, seed=3))
        moves = (frames[:, 1:] - frames[:, :-1]).abs().amax((2, 3, 4)) > 0
        # snow: 4-degree steps of the streak angle can round to the same integer taps
        assert moves.any() if name == "snow" else moves.all()
    assert perturbation_sequence(images, name, num_frames=5).shape[1] == 5


def test_translate_frames_are_zero_filled_shifts():
    images = images_like((2, 3, 32, 32))
    frames = perturbation_sequence(images, "translate")
    for index, shift in enumerate(range(-7, 9)):
        expected = torch.roll(images, shift, dims=-1)
        if shift > 0:
            expected[..., :shift] = 0
        elif shift < 0:
            expected[..., shift:] = 0
        assert torch.equal(frames[:, index], expected), shift


def test_translate_scales_with_the_image():
    images = images_like((1, 1, 64, 64))
    frames = perturbation_sequence(images, "translate")
    assert torch.equal(frames[:, 0, ..., : 64 - 14], images[..., 14:])  # -7 px at 32 -> -14 px
    assert torch.equal(frames[:, -1, ..., 16:], images[..., : 64 - 16])  # +8 px -> +16 px


@pytest.mark.parametrize("name", NOISE_PERTURBATIONS)
def test_noise_frames_are_independent_draws_on_the_clean_image(name):
    images = torch.full((2, 3, 32, 32), 0.5)
    frames = perturbation_sequence(images, name)
    assert torch.equal(frames[:, 0], images)  # flip rates are measured against frame 0
    residuals = (frames[:, 1:] - images.unsqueeze(1)).flatten(2)  # [B, 30, N]
    assert (residuals.std(-1) > 0).all()
    correlation = torch.corrcoef(residuals[0])
    off_diagonal = correlation[~torch.eye(len(correlation), dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.15  # 3072 values per frame: |r| ~ 0.02 if independent


def test_gaussian_noise_strength_is_cifar_p():
    images = torch.full((4, 3, 32, 32), 0.5)
    frames = perturbation_sequence(images, "gaussian_noise")
    assert (frames[:, 1:] - 0.5).std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("name", ["rotate", "scale", "shear", "brightness"])
def test_middle_frame_of_symmetric_sweeps_is_the_clean_image(name):
    images = images_like((2, 3, 32, 32))
    frames = perturbation_sequence(images, name)
    torch.testing.assert_close(frames[:, 15], images, atol=1e-5, rtol=0)


def test_tilt_frames_match_opencv_warp_perspective():
    images = images_like((2, 3, 20, 27))
    frames = perturbation_sequence(images, "tilt", num_frames=5)
    for index, degrees in enumerate(np.linspace(-11.25, 11.25, 5)):
        matrix = tilt_homography(20, 27, degrees)
        expected = [
            cv2.warpPerspective(image.transpose(1, 2, 0), matrix, (27, 20)).transpose(2, 0, 1)
            for image in images.numpy()
        ]
        np.testing.assert_allclose(frames[:, index].numpy(), np.stack(expected), atol=1e-4)


def test_blur_sequences_grow_monotonically():
    images = images_like((2, 3, 32, 32))
    for name in ("gaussian_blur", "zoom_blur"):
        frames = perturbation_sequence(images, name)
        distances = (frames - images.unsqueeze(1)).abs().mean((0, 2, 3, 4)).tolist()
        assert distances == sorted(distances), name
    zoom = perturbation_sequence(images, "zoom_blur")
    assert torch.equal(zoom[:, 0], images)


def test_brightness_frames_equal_the_corruption_op():
    images = images_like((2, 3, 32, 32))
    frames = perturbation_sequence(images, "brightness")
    # frame 25 adds (25 - 15) * 1.5 / 100 = 0.15 to the HSV value: CIFAR-10-C brightness severity 3
    torch.testing.assert_close(
        frames[:, 25], corrupt(images, "brightness", 3, output="float"), atol=1e-5, rtol=0
    )


def test_bad_input_is_refused():
    images = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown perturbation 'jitter'.*gaussian_noise.*shear"):
        perturbation_sequence(images, "jitter")
    for num_frames in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="num_frames"):
            perturbation_sequence(images, "rotate", num_frames=num_frames)
    with pytest.raises(ValueError, match="floating-point"):
        perturbation_sequence((images * 255).to(torch.uint8), "rotate")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        perturbation_sequence(images + 1, "rotate")


def test_evaluate_generates_imagenet_p_sequences_at_the_model_size():
    from timm_pushpull.robustness.evaluate import evaluate_model

    class Mean(torch.nn.Module):
        def forward(self, x):
            assert x.shape[-2:] == (64, 64)
            return torch.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], 1)

    images = torch.rand(2, 3, 64, 64)
    results = evaluate_model(Mean(), images, torch.tensor([0, 1]), suites=["p"],
                             perturbations=["translate"], scale="imagenet", progress=False,
                             mean=[0.0] * 3, std=[1.0] * 3)  # fmt: skip
    assert results["perturbations"]["translate"]["n_frames"] == 41  # ImageNet-P's translate


_SEQUENCES_UNDER_ANOTHER_DEFAULT_DEVICE = """
import torch
from timm_pushpull.robustness.perturbations import PERTURBATIONS, perturbation_sequence
x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
torch.set_default_device("meta")  # first, so that every cached table is made under it
try:
    moved = {name: perturbation_sequence(x, name, seed=1, num_frames=3) for name in PERTURBATIONS}
finally:
    torch.set_default_device(None)
for name in PERTURBATIONS:
    assert moved[name].device.type == "cpu", name
    assert torch.equal(moved[name], perturbation_sequence(x, name, seed=1, num_frames=3)), name
print("same")
"""


def test_cpu_sequences_are_made_on_the_cpu_whatever_the_default_device():
    # torch.set_default_device("cuda") for the model must not send a CPU batch's tables elsewhere:
    # four perturbations failed; a fresh process, so that no table was cached before
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _SEQUENCES_UNDER_ANOTHER_DEFAULT_DEVICE],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]
