"""The evaluation runner: suites end to end on tiny data, resume, bad input, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_robustness_data import make_cifar_c, make_cifar_p, make_imagenet_c, make_imagenet_p
from timm.data import resolve_data_config

from timm_pushpull.robustness import metrics
from timm_pushpull.robustness.baselines import ALEXNET_CIFAR10_C
from timm_pushpull.robustness.corruptions import corrupt
from timm_pushpull.robustness.datasets import (
    CifarCFolder,
    CifarPFolder,
    ImageNetPFolder,
    open_datasets,
)
from timm_pushpull.robustness.evaluate import (
    add_gaussian_noise,
    add_speckle_noise,
    contrast_poisson_noise,
    evaluate_model,
    noise_seed,
    shift_images,
)
from timm_pushpull.robustness.results import PER_IMAGE_FILE, load_per_image

IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


class MeanIntensityClassifier(nn.Module):
    """Class k for a mean intensity in [k / 10, (k + 1) / 10): predictions that follow the content."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.fail_after = None

    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("interrupted")
        centers = (torch.arange(10, device=x.device) + 0.5) / 10
        return -((x.mean(dim=(1, 2, 3))[:, None] - centers) ** 2)


def clean_set(count=12, size=32):
    """Image i: intensity (i % 10 + 0.5) / 10 with a small texture, label i % 10: clean error 0."""
    generator = torch.Generator().manual_seed(1)
    levels = (torch.arange(count) % 10 + 0.5) / 10
    texture = (torch.rand(count, 3, size, size, generator=generator) - 0.5) * 0.06
    return (levels[:, None, None, None] + texture).clamp(0, 1), torch.arange(count) % 10


def test_generated_corruptions_match_direct_evaluation():
    model = MeanIntensityClassifier()
    images, labels = clean_set()
    names = ["brightness", "contrast", "gaussian_noise"]
    results = evaluate_model(model, images, labels, corruptions=names, batch_size=64, progress=False,
                             baseline="alexnet-cifar10c", **IDENTITY)  # fmt: skip
    assert results["clean_error"] == 0.0
    for name in names:
        # one block of draws holds all 12 images: its seed is that of the block at image 0
        expected = [
            float(
                (
                    model(corrupt(images, name, s, scale="cifar", seed=noise_seed(0, 0))).argmax(1)
                    != labels
                )
                .float()
                .mean()
            )
            for s in range(1, 6)
        ]
        assert results["corruptions"][name]["errors"] == pytest.approx(expected)
        assert results["corruptions"][name]["source"] == "generated"
    assert max(results["corruptions"]["brightness"]["errors"]) > 0  # the model really is affected
    summary = results["summary"]
    mean = np.mean(results["corruptions"]["contrast"]["errors"])
    assert summary["ce"]["contrast"] == pytest.approx(
        mean / ALEXNET_CIFAR10_C.corruption_errors["contrast"]
    )
    assert summary["rce"]["contrast"] == pytest.approx(mean / (0.4677 - 0.1387))
    assert summary["mce_corruptions"] == ["gaussian_noise", "brightness", "contrast"]
    assert not summary["mce_complete"]


def _official_folder(tmp_path):
    """4 images per severity of intensity (i + 0.5) / 10 (predicted class i); at severity s the
    first s - 1 labels are wrong, so the errors are 0, 1/4, 2/4, 3/4, 4/4."""
    root = make_cifar_c(tmp_path / "CIFAR-10-C", corruptions=("fog",))
    levels = np.round(255 * (np.arange(4) + 0.5) / 10).astype(np.uint8)
    np.save(
        root / "fog.npy",
        np.broadcast_to(np.tile(levels, 5)[:, None, None, None], (20, 32, 32, 3)).copy(),
    )
    labels = [[(i + 1) % 10 if i < s - 1 else i for i in range(4)] for s in range(1, 6)]
    np.save(root / "labels.npy", np.array(labels).reshape(-1))
    return root


def test_official_cifar_c_folder_and_baseline(tmp_path):
    images, labels = clean_set(count=10)
    results = evaluate_model(MeanIntensityClassifier(), images, labels,
                             corrupted=CifarCFolder(_official_folder(tmp_path)),
                             baseline="alexnet-cifar10c", progress=False, **IDENTITY)  # fmt: skip
    fog = results["corruptions"]["fog"]
    assert fog["errors"] == [0.0, 0.25, 0.5, 0.75, 1.0] and fog["source"] == "official"
    assert results["summary"]["ce"] == {"fog": pytest.approx(0.5 / 0.3031)}
    assert results["summary"]["rce"] == {"fog": pytest.approx((0.5 - 0.0) / (0.3031 - 0.1387))}
    assert results["baseline"]["name"] == "alexnet-cifar10c"


def test_per_image_outcomes_reproduce_every_number_of_results_json(tmp_path):
    images, labels = clean_set(count=40)
    model = MeanIntensityClassifier()
    results = evaluate_model(model, images, labels, suites=["c", "p", "shift", "noise"],
                             corruptions=["brightness", "gaussian_noise"], severities=[2, 5],
                             perturbations=["translate", "gaussian_noise"], num_frames=3,
                             shift_mode="crop", max_shift=8, shift_trials=2, max_images=37,
                             noise_levels={"gaussian": [0.0, 0.03]}, out_dir=tmp_path,
                             batch_size=16, progress=False, **IDENTITY)  # fmt: skip
    outcomes = load_per_image(tmp_path)
    subset = outcomes["clean_error"].indices
    assert len(subset) == 37 and len(set(subset.tolist()) - set(range(40))) == 0
    assert all((unit.indices == subset).all() for unit in outcomes.values())  # all generated
    assert outcomes["clean_error"].values.mean() == results["clean_error"]
    for name, entry in results["corruptions"].items():
        assert outcomes[f"corruptions/{name}"].values.shape == (2, 37)
        assert outcomes[f"corruptions/{name}"].values.mean(axis=1).tolist() == entry["errors"]
    assert 0 < results["corruptions"]["brightness"]["errors"][1] < 1  # the outcomes vary
    for name, entry in results["noise_sweeps"].items():
        assert outcomes[f"noise_sweeps/{name}"].values.shape == (len(entry["levels"]), 37)
        assert outcomes[f"noise_sweeps/{name}"].values.mean(axis=1).tolist() == entry["errors"]
    agree = outcomes["shift"].values
    assert agree.shape == (2, 37) and agree.mean() == results["shift"]["consistency"] < 1
    # -P: the class of every frame; translate compares consecutive frames, noise the first
    frames = outcomes["perturbations/translate"].values
    assert frames.shape == (3, 37)
    flips = [frames[t] != frames[t - 1] for t in (1, 2)]
    assert np.mean(flips) == results["perturbations"]["translate"]["flip_probability"]
    frames = outcomes["perturbations/gaussian_noise"].values
    flips = [frames[t] != frames[0] for t in (1, 2)]
    assert np.mean(flips) == results["perturbations"]["gaussian_noise"]["flip_probability"]


def test_per_image_outcomes_of_an_official_folder(tmp_path):
    images, labels = clean_set(count=10)
    evaluate_model(MeanIntensityClassifier(), images, labels, out_dir=tmp_path / "out",
                   corrupted=CifarCFolder(_official_folder(tmp_path)), progress=False,
                   **IDENTITY)  # fmt: skip
    fog = load_per_image(tmp_path / "out")["corruptions/fog"]
    # at severity s the first s - 1 of the 4 images are wrong
    assert fog.values.astype(int).tolist() == [[int(i < s - 1) for i in range(4)]
                                               for s in range(1, 6)]  # fmt: skip
    assert fog.indices.tolist() == [0, 1, 2, 3]


def test_official_cifar_p_flip_probabilities(tmp_path, official_dir):
    root = make_cifar_p(tmp_path, names=("translate", "gaussian_noise"), count=2, frames=5)
    classes = np.array([[0, 0, 1, 1, 2], [3, 3, 3, 3, 3]])  # predicted class per frame
    levels = np.round(255 * (classes + 0.5) / 10).astype(np.uint8)
    sequences = np.broadcast_to(levels[:, :, None, None, None], (2, 5, 32, 32, 3)).copy()
    for name in ("translate", "gaussian_noise"):
        np.save(root / f"{name}.npy", sequences)
    authors = official_dir / "results" / "resnet" / "resnet-20"  # their ResNet-20 as the baseline
    results = evaluate_model(MeanIntensityClassifier(), suites=["p"], sequences=CifarPFolder(root),
                             baseline=authors, progress=False, **IDENTITY)  # fmt: skip
    # consecutive frames: 2 flips of 4 in the first sequence, none in the second
    assert results["perturbations"]["translate"]["flip_probability"] == pytest.approx(2 / 8)
    # noise: frames against the first: 3 of 4 differ in the first sequence
    assert results["perturbations"]["gaussian_noise"]["flip_probability"] == pytest.approx(3 / 8)
    assert results["summary"]["mean_flip_probability"] == pytest.approx(5 / 16)
    rates = {"translate": (2 / 8) / 0.04556, "gaussian_noise": (3 / 8) / 0.08229}
    assert results["summary"]["flip_rates"] == pytest.approx(rates)
    assert results["summary"]["mfr"] == pytest.approx(sum(rates.values()) / 2)
    assert results["clean_error"] is None and results["settings"]["input_size"] == [3, 32, 32]


def test_official_imagenet_p_flip_probabilities(tmp_path):
    import cv2

    # grey frames at class centres (k + 0.5) / 10 of the mean-intensity classifier, so the
    # encoder's loss of a few levels changes no prediction
    def grey(*classes):
        return [(round(255 * (k + 0.5) / 10),) * 3 for k in classes]

    videos = {
        (name, wnid, f"v{number}"): grey(*classes)
        for name in ("translate", "gaussian_noise")
        for number, (wnid, classes) in enumerate([
            ("n02", (1, 1, 2, 2, 1)), ("n01", (3, 3, 3, 3, 3)), ("n01", (5, 6, 5, 7, 7)),
            ("n03", (0, 0, 0, 9, 9)), ("n02", (4, 4, 4, 4, 8)),
        ])
    }  # fmt: skip
    root = make_imagenet_p(tmp_path / "ImageNet-P", videos)
    model = MeanIntensityClassifier()
    results = evaluate_model(model, suites=["p"], sequences=ImageNetPFolder(root), batch_size=8,
                             progress=False, **IDENTITY)  # fmt: skip
    for name, noise in (("translate", False), ("gaussian_noise", True)):
        by_hand = []  # decoded here, in DatasetFolder's order: sorted wnids, then sorted names
        for path in sorted((root / name).glob("*/*.mp4")):
            capture, frames = cv2.VideoCapture(str(path)), []
            while (frame := capture.read())[0]:
                frames.append(torch.from_numpy(frame[1]).permute(2, 0, 1).float() / 255)
            by_hand.append(model(torch.stack(frames)).argmax(1))
        expected = metrics.flip_probability(torch.stack(by_hand), noise=noise)
        result = results["perturbations"][name]
        assert result["flip_probability"] == pytest.approx(expected)
        assert (result["n_sequences"], result["n_frames"]) == (5, 5)
    # the frames hold the drawn classes: 7 flips of 20 consecutive pairs, 8 of 20 against frame 1
    assert results["perturbations"]["translate"]["flip_probability"] == pytest.approx(7 / 20)
    assert results["perturbations"]["gaussian_noise"]["flip_probability"] == pytest.approx(8 / 20)
    assert results["settings"]["input_size"] == [3, 32, 32]
    opened = open_datasets([str(root)], resolve_data_config({}, model=nn.Conv2d(3, 3, 1)))
    assert isinstance(opened["p"][0], ImageNetPFolder)
    assert opened["p"][1] == f"imagenet-p:{root}"  # no resize: the videos hold the model's frames


def test_generated_perturbations_shift_and_noise_suites():
    images, labels = clean_set()
    model = MeanIntensityClassifier()
    results = evaluate_model(model, images, labels, suites=["p", "shift", "noise"],
                             perturbations=["gaussian_noise", "translate"], num_frames=4,
                             noise_levels={"contrast_poisson": [1.0, 0.4]}, progress=False,
                             **IDENTITY)  # fmt: skip
    assert results["perturbations"]["translate"]["n_frames"] == 4
    assert results["perturbations"]["translate"]["n_sequences"] == 12
    # zero-filled translation darkens the image: some predictions flip
    assert results["perturbations"]["translate"]["flip_probability"] > 0
    # a circular shift keeps the mean intensity, hence the prediction
    assert results["shift"]["consistency"] == 1.0 and results["shift"]["max_shift"] == 5
    sweeps = results["noise_sweeps"]
    assert sweeps["gaussian"]["levels"][0] == 0.0 and sweeps["gaussian"]["errors"][0] == 0.0
    assert sweeps["speckle"]["errors"][0] == 0.0
    # contrast 0.4 pulls every image towards 0.5: most classes are lost
    assert sweeps["contrast_poisson"]["errors"][1] > sweeps["contrast_poisson"]["errors"][0]
    crop = evaluate_model(model, images, labels, suites=["shift"], shift_mode="crop", max_shift=8,
                          progress=False, **IDENTITY)  # fmt: skip
    assert crop["shift"]["consistency"] < 1.0  # the zero border changes the mean


def test_shift_images_circular_and_crop():
    images = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    offsets = torch.tensor([[1, -2], [0, 3]])
    circular = shift_images(images, offsets, "circular")
    assert torch.equal(circular[0], torch.roll(images[0], (1, -2), dims=(1, 2)))
    assert torch.equal(circular[1], torch.roll(images[1], (0, 3), dims=(1, 2)))
    crop = shift_images(images, offsets, "crop")
    expected = torch.zeros(4, 5)
    expected[1:, :3] = images[0, 0, :3, 2:]  # content moves down 1 and left 2 over zeros
    assert torch.equal(crop[0, 0], expected)
    with pytest.raises(ValueError, match="circular"):
        shift_images(images, offsets, "wrap")


def test_noise_functions():
    images = torch.rand(4, 3, 16, 16)
    noise = torch.randn(images.shape)
    assert torch.equal(add_gaussian_noise(images, 0.0, noise), images)
    assert torch.equal(
        add_speckle_noise(torch.zeros(2, 3, 4, 4), 0.03, noise[:2, :, :4, :4]),
        torch.zeros(2, 3, 4, 4),
    )
    noisy = add_gaussian_noise(torch.full((1, 1, 200, 200), 0.5), 0.01, torch.randn(1, 1, 200, 200))
    assert noisy.std().item() == pytest.approx(0.1, rel=0.05)
    # contrast 0 turns every pixel to 0.5: Poisson(127.5) / 255 has std sqrt(127.5) / 255
    poisson = contrast_poisson_noise(
        torch.rand(1, 1, 200, 200), 0.0, torch.Generator().manual_seed(0)
    )
    assert poisson.mean().item() == pytest.approx(0.5, abs=0.005)
    assert poisson.std().item() == pytest.approx(127.5**0.5 / 255, rel=0.05)


def test_resume_skips_finished_units_and_keeps_them_after_a_crash(tmp_path):
    images, labels = clean_set()
    names = ["brightness", "contrast", "saturate"]
    model = MeanIntensityClassifier()
    # one image to check the model fits the data, the clean pass, all of brightness, then a crash
    # inside contrast
    model.fail_after = 1 + 1 + 5 + 2
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate_model(model, images, labels, corruptions=names, out_dir=tmp_path, batch_size=64,
                       progress=False, **IDENTITY)  # fmt: skip
    written = json.loads((tmp_path / "results.json").read_text())
    assert list(written["corruptions"]) == ["brightness"] and written["clean_error"] == 0.0
    assert not list(tmp_path.glob(".*.tmp"))

    resumed = MeanIntensityClassifier()
    results = evaluate_model(resumed, images, labels, corruptions=names, out_dir=tmp_path,
                             batch_size=64, progress=False, **IDENTITY)  # fmt: skip
    assert resumed.calls == 1 + 2 * 5  # the check, then contrast and saturate only
    assert results["corruptions"]["brightness"] == written["corruptions"]["brightness"]
    assert list(results["corruptions"]) == names
    # the outcomes of every unit, those before the crash included, as an uninterrupted run's
    evaluate_model(MeanIntensityClassifier(), images, labels, corruptions=names,
                   out_dir=tmp_path / "whole", batch_size=64, progress=False, **IDENTITY)  # fmt: skip
    with np.load(tmp_path / PER_IMAGE_FILE) as resumed, np.load(tmp_path / "whole" / PER_IMAGE_FILE) as whole:  # fmt: skip
        assert sorted(resumed.files) == sorted(whole.files)
        assert all((resumed[key] == whole[key]).all() for key in whole.files)

    again = MeanIntensityClassifier()
    evaluate_model(again, images, labels, corruptions=names, out_dir=tmp_path, batch_size=64,
                   progress=False, **IDENTITY)  # fmt: skip
    assert again.calls == 0


def test_other_settings_do_not_touch_existing_results(tmp_path):
    images, labels = clean_set()
    evaluate_model(MeanIntensityClassifier(), images, labels, corruptions=["contrast"], out_dir=tmp_path,
                   progress=False, **IDENTITY)  # fmt: skip
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(ValueError, match=r"settings.seed: 0 \(stored\) vs 1 \(this run\)"):
        evaluate_model(MeanIntensityClassifier(), images, labels, corruptions=["contrast"],
                       out_dir=tmp_path, seed=1, progress=False, **IDENTITY)  # fmt: skip
    bad_inputs = [
        dict(suites=["c", "x"]),
        dict(corruptions=["gaussian_nosie"]),
        dict(severities=[0, 1]),
        dict(images=images * 255),
        dict(labels=labels[:5]),
        dict(shift_mode="roll", suites=["shift"]),
        dict(baseline="alexnet"),
        dict(images=images[:, :1], mean=[0.5, 0.5, 0.5]),
    ]
    for overrides in bad_inputs:
        kwargs = dict(images=images, labels=labels, corruptions=["contrast"], out_dir=tmp_path,
                      progress=False, **IDENTITY) | overrides  # fmt: skip
        with pytest.raises(ValueError):
            evaluate_model(MeanIntensityClassifier(), **kwargs)
    assert (tmp_path / "results.json").read_bytes() == before


def test_suite_without_data_is_an_error():
    with pytest.raises(ValueError, match="needs clean images"):
        evaluate_model(MeanIntensityClassifier(), suites=["shift"], progress=False, **IDENTITY)


def test_cli_end_to_end(tmp_path, capsys):
    import timm
    from PIL import Image
    from timm.models import save_for_hf

    from timm_pushpull.cli import main

    model_dir = tmp_path / "model"
    model = timm.create_model("test_resnet", num_classes=10)
    save_for_hf(model, str(model_dir), safe_serialization=True)
    clean = tmp_path / "clean"
    for number in range(3):
        (clean / f"class{number}").mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 60 * number, np.uint8)).save(
            clean / f"class{number}" / "a.png"
        )
    corrupted = make_cifar_c(tmp_path / "CIFAR-10-C", corruptions=("fog", "contrast"))
    out = tmp_path / "out"
    argv = ["evaluate", "--model", "test_resnet", "--num-classes", "10",
            "--checkpoint", str(model_dir / "model.safetensors"), "--img-size", "32",
            "--dataset", str(corrupted), "--dataset", str(clean), "--suite", "c,shift",
            "--corruptions", "fog", "--severities", "1,5", "--baseline", "alexnet-cifar10c",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "clean error" in printed and "error: fog" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "test_resnet" and results["settings"]["severities"] == [1, 5]
    assert len(results["corruptions"]["fog"]["errors"]) == 2 and results["shift"]["n_pairs"] == 3
    assert results["settings"]["datasets"]["c"].startswith("cifar-c:")
    assert {p.name for p in out.iterdir()} >= {"report.md", "corruption_errors.png", "first_block_weights.png",
                                               "response_maps.png"}  # fmt: skip

    bad = [arg if arg != "1,5" else "0,5" for arg in argv]
    assert main(bad) == 2
    assert "severities must be distinct ints in 1..5, got [0, 5]" in capsys.readouterr().err
    assert main(argv[:1] + ["--model", "test_resnet", "--checkpoint", str(tmp_path / "missing.pt"),
                            "--dataset", str(clean), "--out", str(out)]) == 2  # fmt: skip
    assert "missing.pt" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == results

    # ImageNet-C layout (40 px JPEGs, centre-cropped to the model's 32 px) next to its clean folder
    imagenet_c = make_imagenet_c(tmp_path / "ImageNet-C", wnids=("n01", "n02"))
    for wnid in ("n01", "n02"):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (48, 40)).save(tmp_path / "val" / wnid / "x.JPEG")
    argv = ["evaluate", "--model", "test_resnet", "--num-classes", "10", "--img-size", "32",
            "--dataset", str(imagenet_c), "--dataset", str(tmp_path / "val"), "--severities", "1,2",
            "--out", str(tmp_path / "out_imagenet"), "--no-progress", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "out_imagenet" / "results.json").read_text())
    assert list(results["corruptions"]) == ["fog"] and results["n_images"] == 2
    assert (
        results["settings"]["input_size"] == [3, 32, 32] and results["settings"]["scale"] == "cifar"
    )
    assert results["settings"]["datasets"]["c"].startswith("imagenet-c:")


class RecordingClassifier(MeanIntensityClassifier):
    """Records every input, so that two runs can be compared image by image."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return super().forward(x)


def test_batch_size_changes_no_draw_and_no_number():
    # 40 images: a full block of draws and a partial one; batch sizes below and above a block
    images, labels = clean_set(count=40, size=16)
    runs = []
    for batch_size in (5, 64):
        model = RecordingClassifier()
        results = evaluate_model(
            model, images, labels, suites=["c", "p", "noise"], batch_size=batch_size,
            corruptions=["gaussian_noise", "glass_blur", "spatter"], severities=[2, 5],
            perturbations=["gaussian_noise", "snow"], num_frames=3,
            noise_levels={"gaussian": [0.02], "speckle": [0.02], "contrast_poisson": [0.5]},
            progress=False, **IDENTITY,
        )  # fmt: skip
        inputs = torch.cat(model.inputs[1:])  # after the check of one image
        # the shift suite classifies both shifts of a batch in turn: compare its numbers only
        shift = evaluate_model(model, images, labels, suites=["shift"], batch_size=batch_size,
                               shift_mode="crop", max_shift=5, shift_trials=2, progress=False,
                               **IDENTITY)  # fmt: skip
        runs.append((inputs, results, shift))
    (inputs_a, results_a, shift_a), (inputs_b, results_b, shift_b) = runs
    assert len(inputs_a) == 40 * (1 + 3 * 2 + 2 * 3 + 3)  # clean, c, p, noise
    assert torch.equal(inputs_a, inputs_b)  # the very same corrupted images, in the same order
    sections = ("clean_error", "corruptions", "perturbations", "noise_sweeps")
    assert {k: results_a[k] for k in sections} == {k: results_b[k] for k in sections}
    assert shift_a["shift"] == shift_b["shift"] and shift_a["shift"]["consistency"] < 1
    assert results_a["identity"] == results_b["identity"]
    # random draws decide some predictions (spatter's drops, snow's flakes)
    assert results_a["corruptions"]["spatter"]["errors"][1] > 0
    assert results_a["perturbations"]["snow"]["flip_probability"] > 0


def test_a_block_of_images_gets_the_same_draws_alone_or_in_the_whole_set():
    # what a process evaluating only images 32..39 (a shard of whole blocks) would draw
    images, _ = clean_set(count=40, size=16)
    whole = RecordingClassifier()
    evaluate_model(whole, images, torch.zeros(40, dtype=torch.long), corruptions=["gaussian_noise"],
                   severities=[3], progress=False, **IDENTITY)  # fmt: skip
    corrupted = torch.cat(whole.inputs[1:])[40:]  # after the check of one image and the clean pass
    shard = corrupt(images[32:], "gaussian_noise", 3, seed=noise_seed(0, 32))
    assert torch.equal(corrupted[32:], shard)
    assert not torch.equal(
        corrupted[:8], corrupt(images[:8], "gaussian_noise", 3, seed=noise_seed(0, 32))
    )


class WeightedClassifier(MeanIntensityClassifier):
    """The mean-intensity classifier with a positive gain on its logits: weights that do not
    change a prediction, as two checkpoints of one architecture may."""

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([gain]))

    def forward(self, x):
        return self.gain * super().forward(x)


def test_rerun_with_other_weights_or_generator_is_refused_and_overwrite_starts_over(tmp_path):
    from timm_pushpull.native import native_kernels

    images, labels = clean_set()
    kwargs = dict(corruptions=["contrast"], severities=[1], out_dir=tmp_path, progress=False,
                  **IDENTITY)  # fmt: skip
    first = evaluate_model(WeightedClassifier(), images, labels, model_args={"pretrained": False},
                           **kwargs)  # fmt: skip
    before = (tmp_path / "results.json").read_bytes()
    # the same architecture with "pretrained" weights: both differences are named
    with pytest.raises(ValueError) as refused:
        evaluate_model(WeightedClassifier(2.0), images, labels, model_args={"pretrained": True},
                       **kwargs)  # fmt: skip
    message = str(refused.value)
    assert "identity.model_args.pretrained: false (stored) vs true (this run)" in message
    assert f'identity.weights_sha256: "{first["identity"]["weights_sha256"]}" (stored)' in message
    assert "--overwrite" in message
    # a C-kernel run and a torch-generator run draw different noise
    if first["identity"]["random_generator"] == "c-kernel":
        with native_kernels(False), pytest.raises(ValueError, match="identity.random_generator"):
            evaluate_model(WeightedClassifier(), images, labels, model_args={"pretrained": False},
                           **kwargs)  # fmt: skip
    # another batch size is the same run: it resumes (nothing left to do)
    again = WeightedClassifier()
    evaluate_model(again, images, labels, model_args={"pretrained": False}, batch_size=3, **kwargs)
    assert again.calls == 0
    assert (tmp_path / "results.json").read_bytes() == before

    replaced = evaluate_model(WeightedClassifier(2.0), images, labels,
                              model_args={"pretrained": True}, overwrite=True, **kwargs)  # fmt: skip
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["identity"] == replaced["identity"] != first["identity"]
    assert stored["identity"]["model_args"] == {"pretrained": True}


def test_results_of_an_older_format_are_not_resumed(tmp_path):
    images, labels = clean_set()
    evaluate_model(MeanIntensityClassifier(), images, labels, corruptions=["contrast"],
                   out_dir=tmp_path, progress=False, **IDENTITY)  # fmt: skip
    old = json.loads((tmp_path / "results.json").read_text())
    del old["identity"]
    (tmp_path / "results.json").write_text(json.dumps({**old, "version": 1}))
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(ValueError, match="older timm-pushpull .* version 1"):
        evaluate_model(MeanIntensityClassifier(), images, labels, corruptions=["contrast"],
                       out_dir=tmp_path, progress=False, **IDENTITY)  # fmt: skip
    assert (tmp_path / "results.json").read_bytes() == before


def _baseline_run(tmp_path, severities):
    """The mean-intensity classifier on the official-layout fog folder (error (s - 1) / 4 at
    severity s), evaluated on ``severities`` into its own folder: a results.json baseline."""
    out = tmp_path / f"baseline-{'-'.join(map(str, severities))}"
    evaluate_model(MeanIntensityClassifier(), *clean_set(count=10),
                   corrupted=CifarCFolder(_official_folder(tmp_path)), severities=severities,
                   out_dir=out, progress=False, **IDENTITY)  # fmt: skip
    return out / "results.json"


def test_ce_against_a_baseline_on_other_severities_uses_the_pairs_both_have(tmp_path):
    from timm_pushpull.robustness.report import format_comparison

    baseline = _baseline_run(tmp_path, [3, 4, 5])  # fog errors 0.5, 0.75, 1.0
    results = evaluate_model(MeanIntensityClassifier(), *clean_set(count=10),
                             corrupted=CifarCFolder(_official_folder(tmp_path)), severities=[1, 2, 3],
                             baseline=baseline, progress=False, **IDENTITY)  # fmt: skip
    assert results["corruptions"]["fog"]["errors"] == [0.0, 0.25, 0.5]
    # severity 3 is the only pair: 0.5 / 0.5 (the old reader took the baseline's 3, 4, 5 for 1, 2, 3)
    assert results["summary"]["ce"] == {"fog": pytest.approx(1.0)}
    assert results["summary"]["ce_severities"] == {"fog": [3]}
    assert not results["summary"]["mce_complete"]
    assert results["baseline"]["severities"] == [3, 4, 5]
    table = format_comparison([results])
    assert "| CE on severities | 3 | – |" in table


def test_ce_against_a_one_severity_baseline(tmp_path):
    baseline = _baseline_run(tmp_path, [4])  # fog error 0.75
    results = evaluate_model(MeanIntensityClassifier(), *clean_set(count=10),
                             corrupted=CifarCFolder(_official_folder(tmp_path)), baseline=baseline,
                             progress=False, **IDENTITY)  # fmt: skip
    assert results["summary"]["ce"] == {"fog": pytest.approx(0.75 / 0.75)}
    assert results["summary"]["ce_severities"] == {"fog": [4]}
    # rCE: (0.75 - clean 0) / (0.75 - clean 0)
    assert results["summary"]["rce"] == {"fog": pytest.approx(1.0)}


def test_cli_refuses_other_weights_under_the_same_name_or_path(tmp_path, capsys, monkeypatch):
    import timm
    from safetensors.torch import save_file

    from timm_pushpull import hub
    from timm_pushpull.cli import main

    name = "lenet5_a_pp.demo_fmnist"

    def weights(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(timm.create_model(name).state_dict(), str(path))  # fresh random weights
        return str(path)

    def evaluate(out, *extra):
        argv = ["evaluate", "--model", name, "--dataset", "fashion_mnist", "--max-images", "8",
                "--corruptions", "contrast", "--severities", "1", "--out", str(out), "--no-progress",
                "--no-report", *extra]  # fmt: skip
        return main(argv), capsys.readouterr().err

    # random weights, then the pretrained ones (a local weights directory): not the same run
    out = tmp_path / "random"
    assert evaluate(out)[0] == 0
    before = (out / "results.json").read_bytes()
    weights(tmp_path / "weights" / name / "model.safetensors")
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    code, error = evaluate(out, "--pretrained")
    assert code == 2
    assert "identity.model_args.pretrained: false (stored) vs true (this run)" in error
    assert "identity.weights_sha256" in error and "--overwrite" in error
    assert (out / "results.json").read_bytes() == before

    # a checkpoint file replaced in place: same path, other weights
    out, checkpoint = tmp_path / "checkpoint", weights(tmp_path / "run" / "model.safetensors")
    assert evaluate(out, "--checkpoint", checkpoint)[0] == 0
    stored = json.loads((out / "results.json").read_text())
    assert evaluate(out, "--checkpoint", checkpoint)[0] == 0  # the same weights resume
    weights(Path(checkpoint))
    code, error = evaluate(out, "--checkpoint", checkpoint)
    assert code == 2 and "identity.weights_sha256" in error
    assert "identity.model_args" not in error and "settings." not in error
    assert json.loads((out / "results.json").read_text()) == stored
    assert evaluate(out, "--checkpoint", checkpoint, "--overwrite")[0] == 0
    replaced = json.loads((out / "results.json").read_text())
    assert replaced["identity"]["weights_sha256"] != stored["identity"]["weights_sha256"]
    assert replaced["checkpoint"] == checkpoint


def test_precision_and_channels_last_are_settings_of_the_run(tmp_path):
    images, labels = clean_set()
    model = nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    plain = evaluate_model(model, images, labels, corruptions=["contrast"], progress=False,
                           **IDENTITY)  # fmt: skip
    fast = evaluate_model(model, images, labels, corruptions=["contrast"], out_dir=tmp_path,
                          precision="bf16", channels_last=True, progress=False, **IDENTITY)  # fmt: skip
    assert (fast["settings"]["precision"], fast["settings"]["channels_last"]) == ("bf16", True)
    assert plain["settings"]["precision"] == "fp32" and plain["world_size"] == 1
    assert fast["clean_error"] == pytest.approx(plain["clean_error"], abs=2 / 12)
    with pytest.raises(ValueError, match="settings.precision"):  # bf16 numbers are other numbers
        evaluate_model(model, images, labels, corruptions=["contrast"], out_dir=tmp_path,
                       channels_last=True, progress=False, **IDENTITY)  # fmt: skip
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate_model(model, images, labels, precision="half", progress=False, **IDENTITY)
