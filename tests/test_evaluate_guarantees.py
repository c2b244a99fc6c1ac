"""What `evaluate` guarantees against careless or hostile input (README "What evaluate
guarantees"): data changed between runs, edited results, labels the model does not have, an
output folder in use or unusable, options that cannot work. Each refusal comes before any unit
is computed (or names the unit), and leaves results.json as it was."""

import json
import os
import shutil

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from PIL import Image
from test_evaluate import IDENTITY, MeanIntensityClassifier, clean_set
from test_robustness_data import make_cifar_c, make_imagenet_c

from timm_pushpull.errors import FolderInUseError, InvalidArgumentError, UserError
from timm_pushpull.locking import exclusive_folder, user_files
from timm_pushpull.robustness.corruptions.frost import FROST_DIR_ENV
from timm_pushpull.robustness.datasets import CifarCFolder, ImageNetCFolder, open_clean_dataset
from timm_pushpull.robustness.evaluate import evaluate_model
from timm_pushpull.robustness.results import load_per_image

RUN = dict(progress=False, **IDENTITY)


def _snapshot(out):
    return {p.name: p.read_bytes() for p in user_files(out)}


# ----------------------------------------------------------------------------------------------
# data changed between runs (the identity covers every input file of a unit)


def test_an_official_array_replaced_between_runs_is_refused_naming_unit_and_file(tmp_path):
    root = make_cifar_c(tmp_path / "CIFAR-10-C", corruptions=("fog", "contrast"))
    out, kwargs = tmp_path / "out", dict(corruptions=["fog", "contrast"], severities=[1, 2], **RUN)
    first = evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root), out_dir=out,
                           **kwargs)  # fmt: skip
    assert set(first["inputs"]["corruptions/fog"]) == {"fog.npy", "labels.npy"}
    before = _snapshot(out)
    # the same bytes written again (a copy, a new modification time) are the same data
    shutil.copy(root / "fog.npy", tmp_path / "fog.npy")
    os.replace(tmp_path / "fog.npy", root / "fog.npy")
    again = MeanIntensityClassifier()
    evaluate_model(again, corrupted=CifarCFolder(root), out_dir=out, **kwargs)
    assert again.calls == 0 and _snapshot(out) == before

    np.save(root / "fog.npy", np.load(root / "fog.npy")[::-1].copy())  # other images, same size
    with pytest.raises(InvalidArgumentError) as refused:
        evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root), out_dir=out,
                       **kwargs)  # fmt: skip
    message = str(refused.value)
    assert "corruptions/fog was evaluated on other data" in message and "fog.npy sha256" in message
    assert "--overwrite" in message and "contrast" not in message
    assert _snapshot(out) == before
    replaced = evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root), out_dir=out,
                              overwrite=True, **kwargs)  # fmt: skip
    fog = [r["inputs"]["corruptions/fog"]["fog.npy"] for r in (first, replaced)]
    assert fog[0] != fog[1]

    # the labels every corruption shares (the run's identity has their hash too)
    np.save(root / "labels.npy", (np.load(root / "labels.npy") + 1) % 10)
    with pytest.raises(InvalidArgumentError, match="identity.c_labels_sha256"):
        evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root), out_dir=out,
                       **kwargs)  # fmt: skip


def test_clean_images_changed_between_runs_are_refused(tmp_path):
    images, labels = clean_set()
    kwargs = dict(corruptions=["contrast"], severities=[1], out_dir=tmp_path, **RUN)
    evaluate_model(MeanIntensityClassifier(), images, labels, **kwargs)
    before = _snapshot(tmp_path)
    changed = images.clone()
    changed[3] = changed[3].flip(-1)  # one image mirrored: labels and subset as they were
    with pytest.raises(InvalidArgumentError) as refused:
        evaluate_model(MeanIntensityClassifier(), changed, labels, **kwargs)
    assert "clean_error was evaluated on other data" in str(refused.value)
    assert "clean sha256" in str(refused.value)
    assert _snapshot(tmp_path) == before


def test_an_image_replaced_in_a_folder_is_refused(tmp_path):
    root = make_imagenet_c(tmp_path / "ImageNet-C", wnids=("n01", "n02"))
    kwargs = dict(severities=[1, 2], out_dir=tmp_path / "out", **RUN)
    evaluate_model(MeanIntensityClassifier(), corrupted=ImageNetCFolder(root, _to_tensor), **kwargs)
    first = next((root / "fog" / "2" / "n02").iterdir())
    Image.new("RGB", (40, 40), (255, 255, 255)).save(first, format="JPEG", quality=10)
    with pytest.raises(InvalidArgumentError, match=r"corruptions/fog .* fog/2 sha256"):
        evaluate_model(MeanIntensityClassifier(), corrupted=ImageNetCFolder(root, _to_tensor),
                       **kwargs)  # fmt: skip


def _to_tensor(image):
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def test_other_frost_photos_are_refused(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    generator = np.random.default_rng(0)
    for number in range(1, 6):
        image = generator.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(photos / f"frost{number}.png")
    monkeypatch.setenv(FROST_DIR_ENV, str(photos))
    images, labels = clean_set(count=4)
    kwargs = dict(corruptions=["frost"], severities=[1], out_dir=tmp_path / "out", **RUN)
    results = evaluate_model(MeanIntensityClassifier(), images, labels, **kwargs)
    assert set(results["inputs"]["corruptions/frost"]) == {"clean", "frost"}
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photos / "frost3.png")
    with pytest.raises(InvalidArgumentError, match="corruptions/frost .* frost sha256"):
        evaluate_model(MeanIntensityClassifier(), images, labels, **kwargs)


def test_units_of_a_file_without_input_fingerprints_are_evaluated_again(tmp_path):
    """results.json written before inputs were recorded (timm-pushpull <= 0.1.0) still loads for
    reports; resuming it evaluates its units again instead of trusting them."""
    images, labels = clean_set()
    kwargs = dict(corruptions=["contrast"], severities=[1], out_dir=tmp_path, **RUN)
    evaluate_model(MeanIntensityClassifier(), images, labels, **kwargs)
    old = json.loads((tmp_path / "results.json").read_text())
    del old["inputs"]
    (tmp_path / "results.json").write_text(json.dumps(old))
    assert list(load_per_image(tmp_path)) == ["clean_error", "corruptions/contrast"]
    again = MeanIntensityClassifier()
    results = evaluate_model(again, images, labels, **kwargs)
    assert again.calls == 1 + 1 + 1  # the check of one image, the clean pass, contrast
    assert results["clean_error"] == old["clean_error"] and set(results["inputs"]) == {
        "clean_error", "corruptions/contrast"
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------
# results edited by hand: each kept unit is checked against its per-image outcomes


@pytest.mark.parametrize(
    "unit, edit",
    [
        ("clean_error", lambda r: r.update(clean_error=0.5)),
        ("corruptions/contrast", lambda r: r["corruptions"]["contrast"]["errors"].__setitem__(0, 0.9)),
        ("corruptions/contrast", lambda r: r["corruptions"]["contrast"].update(mean_error=0.9)),
        ("shift", lambda r: r["shift"].update(consistency=0.1)),
        ("noise_sweeps/gaussian", lambda r: r["noise_sweeps"]["gaussian"]["errors"].__setitem__(1, 0.7)),
        ("perturbations/translate", lambda r: r["perturbations"]["translate"].update(flip_probability=0.123)),
    ],
)  # fmt: skip
def test_edited_numbers_are_refused_naming_the_unit(tmp_path, unit, edit):
    images, labels = clean_set(count=10, size=16)
    kwargs = dict(suites=["c", "p", "shift", "noise"], corruptions=["contrast"], severities=[1, 4],
                  perturbations=["translate"], num_frames=3, out_dir=tmp_path,
                  noise_levels={"gaussian": [0.0, 0.5]}, **RUN)  # fmt: skip
    evaluate_model(MeanIntensityClassifier(), images, labels, **kwargs)
    results = json.loads((tmp_path / "results.json").read_text())
    edit(results)
    (tmp_path / "results.json").write_text(json.dumps(results))
    before = _snapshot(tmp_path)
    with pytest.raises(InvalidArgumentError, match=f"the numbers of {unit} contradict"):
        evaluate_model(MeanIntensityClassifier(), images, labels, **kwargs)
    with pytest.raises(InvalidArgumentError, match=f"the numbers of {unit} contradict"):
        load_per_image(tmp_path)  # reports and paired statistics do not take them either
    assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------
# labels and classifier


@pytest.mark.parametrize("label", [10, -1, 99])
def test_labels_outside_the_models_classes_are_refused(tmp_path, label):
    images, labels = clean_set()
    labels = labels.clone()
    labels[4] = label
    model = MeanIntensityClassifier()
    with pytest.raises(InvalidArgumentError, match=rf"labels outside \[0, 10\).*: {label}"):
        evaluate_model(model, images, labels, out_dir=tmp_path / "out", **RUN)
    assert model.calls == 1 and not (tmp_path / "out").exists()  # the check of one image only


def test_official_labels_outside_the_models_classes_are_refused(tmp_path):
    root = make_cifar_c(tmp_path / "CIFAR-10-C", corruptions=("fog",))
    np.save(root / "labels.npy", np.full(20, 12))
    with pytest.raises(InvalidArgumentError, match=r"labels.npy has labels outside \[0, 10\).*12"):
        evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root), **RUN)


def test_labels_of_an_image_folder_outside_the_models_classes_are_refused(tmp_path):
    for number in range(12):  # 12 classes for a 10-class model
        (tmp_path / "clean" / f"c{number:02d}").mkdir(parents=True)
        Image.new("RGB", (16, 16), (20 * number,) * 3).save(tmp_path / "clean" / f"c{number:02d}" / "a.png")  # fmt: skip
    clean = open_clean_dataset(str(tmp_path / "clean"), _to_tensor)
    with pytest.raises(InvalidArgumentError, match=r"labels outside \[0, 10\).*: 10, 11"):
        evaluate_model(MeanIntensityClassifier(), clean, corruptions=["contrast"], **RUN)


def test_a_model_without_classifier_is_refused():
    images, labels = clean_set()
    features = timm.create_model("test_resnet", num_classes=0)  # pooled features, no classes
    with pytest.raises(InvalidArgumentError, match="no classifier .*num_classes 0"):
        evaluate_model(features, images, labels, **RUN)


# ----------------------------------------------------------------------------------------------
# metadata, output folder, options


def test_n_images_is_the_number_of_images_evaluated(tmp_path):
    root = make_cifar_c(tmp_path / "CIFAR-10-C", corruptions=("fog",))  # 4 images per severity
    results = evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root),
                             max_images=100000, **RUN)  # fmt: skip
    assert results["n_images"] == results["settings"]["n_images"] == 4


def test_an_output_folder_in_use_is_refused_before_any_work(tmp_path):
    images, labels = clean_set()
    model = MeanIntensityClassifier()
    with exclusive_folder(tmp_path / "out", "--out", command="the other run"):
        with pytest.raises(FolderInUseError, match="--out .* is in use by 'the other run'"):
            evaluate_model(model, images, labels, out_dir=tmp_path / "out", **RUN)
    assert model.calls == 0 and user_files(tmp_path / "out") == []


def test_compare_does_not_write_into_a_folder_a_run_holds(tmp_path, capsys):
    from timm_pushpull.cli import main

    images, labels = clean_set()
    evaluate_model(MeanIntensityClassifier(), images, labels, out_dir=tmp_path / "run", **RUN)
    with exclusive_folder(tmp_path / "run", "--out", command="evaluate"):
        assert main(["compare", str(tmp_path / "run"), "--out", str(tmp_path / "run")]) == 2
    assert "is in use by 'evaluate'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "report.md").exists()
    assert main(["compare", str(tmp_path / "run"), "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_an_unusable_output_folder_is_refused_before_any_unit(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("a file")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into any folder")
        tmp_path.chmod(0o500)
    model = MeanIntensityClassifier()
    images, labels = clean_set()
    try:
        with pytest.raises(UserError, match="--out"):
            evaluate_model(model, images, labels, out_dir=out, **RUN)
    finally:
        tmp_path.chmod(0o700)
    assert model.calls == 0


def test_a_device_this_machine_lacks_is_one_clear_error():
    images, labels = clean_set()
    for device in ("gpu", "cuda:99" if torch.cuda.is_available() else "cuda"):
        with pytest.raises(InvalidArgumentError, match=f"device '{device}' is not usable here"):
            evaluate_model(MeanIntensityClassifier(), images, labels, device=device, **RUN)


def test_a_model_that_cannot_take_the_images_fails_before_any_unit(tmp_path):
    images, labels = clean_set(size=4)
    model = nn.Sequential(nn.Conv2d(3, 4, 7), nn.Flatten())  # needs images of at least 7 px
    with pytest.raises(InvalidArgumentError, match=r"cannot classify the data's images of size \[3, 4, 4\]"):  # fmt: skip
        evaluate_model(model, images, labels, out_dir=tmp_path / "out", **RUN)
    assert not (tmp_path / "out").exists()
