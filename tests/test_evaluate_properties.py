"""Property-based tests (hypothesis) of `evaluate` and the loaders on generated malformed input:
arrays, labels, images, configs, weights, results files and command lines. Every example ends in
one of two ways: a clear error (a :class:`~timm_pushpull.errors.UserError`, exit 2 with one line
from the command) with nothing written or lost, or the correct result, computed here
independently. Examples are tiny; the command runs in this process."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from safetensors.torch import save_file
from test_data import make_mnist_folder
from test_evaluate import MeanIntensityClassifier, clean_set
from timm.models import save_for_hf

from timm_pushpull.cli import main
from timm_pushpull.data.image_folder import load_image
from timm_pushpull.errors import UserError
from timm_pushpull.factory import create_model, load_weights
from timm_pushpull.locking import user_files
from timm_pushpull.robustness.datasets import CifarCFolder
from timm_pushpull.robustness.evaluate import evaluate_model
from timm_pushpull.robustness.results import load_per_image

# few examples each, no example database, no deadline (the first example pays for imports)
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RUN = dict(progress=False, mean=[0.0], std=[1.0])  # no normalisation, of any number of channels
CENTERS = (np.arange(10) + 0.5) / 10


def _predictions(images: np.ndarray) -> np.ndarray:
    """What MeanIntensityClassifier predicts, computed here: the class whose centre is nearest
    the image's mean intensity in [0, 1]."""
    means = images.reshape(len(images), -1).astype(np.float64).mean(axis=1) / 255
    return np.abs(means[:, None] - CENTERS).argmin(axis=1)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


# ----------------------------------------------------------------------------------------------
# official -C arrays and their labels


def _valid_layout(images: np.ndarray, labels: np.ndarray) -> bool:
    return (
        images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] in (1, 3)
        and len(images) > 0 and len(images) % 5 == 0
        and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
        and len(labels) in (len(images), len(images) // 5)
    )  # fmt: skip


image_arrays = st.one_of(
    hnp.arrays(
        np.uint8,
        st.tuples(
            st.sampled_from([5, 10]), st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3])
        ),
    ),  # fmt: skip
    hnp.arrays(
        st.sampled_from([np.uint8, np.int16, np.float32, np.bool_]),
        hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6),
    ),  # fmt: skip
)
label_arrays = st.one_of(
    hnp.arrays(np.int64, st.sampled_from([(2,), (10,), (5,)]), elements=st.integers(-2, 12)),
    hnp.arrays(
        st.sampled_from([np.float32, np.int8, np.uint8]),
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=10),
        elements=st.integers(0, 11),
    ),  # fmt: skip
)


@EXAMPLES
@given(images=image_arrays, labels=label_arrays)
def test_official_arrays_give_the_right_errors_or_one_clear_refusal(tmp_path, images, labels):
    root, out = _fresh(tmp_path / "CIFAR-10-C"), _fresh(tmp_path / "out")
    root.mkdir()
    np.save(root / "fog.npy", images)
    np.save(root / "labels.npy", labels)
    try:
        results = evaluate_model(MeanIntensityClassifier(), corrupted=CifarCFolder(root),
                                 severities=[1, 3], out_dir=out, **RUN)  # fmt: skip
    except UserError:
        assert not out.exists()  # refused before anything was written
        in_range = labels.size and 0 <= labels.min() and labels.max() < 10
        assert not (_valid_layout(images, labels) and in_range)  # valid data is never refused
        return
    assert _valid_layout(images, labels)
    count = len(images) // 5
    per_severity = labels if len(labels) == len(images) else np.tile(labels, 5)
    expected = []
    for severity in (1, 3):
        rows = slice((severity - 1) * count, severity * count)
        expected.append(float(np.mean(_predictions(images[rows]) != per_severity[rows])))
    assert results["corruptions"]["fog"]["errors"] == pytest.approx(expected)
    assert results["n_images"] == count
    assert list(load_per_image(out)) == ["corruptions/fog"]


@EXAMPLES
@given(labels=hnp.arrays(np.int64, 12, elements=st.integers(-3, 13)))
def test_labels_give_the_clean_error_or_are_refused_with_their_values(labels):
    images, _ = clean_set()
    try:
        results = evaluate_model(MeanIntensityClassifier(), images, labels, suites=["shift"],
                                 **RUN)  # fmt: skip
    except UserError as error:
        outside = sorted({int(v) for v in labels if not 0 <= v < 10})
        assert outside and "labels outside [0, 10)" in str(error)
        assert str(outside[0]) in str(error)
        return
    assert labels.min() >= 0 and labels.max() < 10
    expected = np.mean(_predictions(images.permute(0, 2, 3, 1).numpy() * 255) != labels)
    assert results["clean_error"] == pytest.approx(expected)


@settings(EXAMPLES, max_examples=15)
@given(offset=st.integers(0, 10**6), value=st.integers(1, 255))
def test_any_changed_byte_of_an_array_is_refused_on_resume(tmp_path, offset, value):
    root, out = _fresh(tmp_path / "CIFAR-10-C"), _fresh(tmp_path / "out")
    root.mkdir()
    generator = np.random.default_rng(0)
    np.save(root / "fog.npy", generator.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8))
    np.save(root / "labels.npy", generator.integers(0, 10, 10))
    kwargs = dict(corrupted=CifarCFolder(root), severities=[1], out_dir=out, **RUN)
    evaluate_model(MeanIntensityClassifier(), **kwargs)
    before = {p.name: p.read_bytes() for p in user_files(out)}
    data = bytearray((root / "fog.npy").read_bytes())
    header = len(data) - 10 * 4 * 4 * 3
    data[header + offset % (len(data) - header)] ^= value  # some byte of some image, changed
    (root / "fog.npy").write_bytes(bytes(data))
    with pytest.raises(UserError, match="corruptions/fog was evaluated on other data"):
        evaluate_model(MeanIntensityClassifier(), **kwargs)
    assert {p.name: p.read_bytes() for p in user_files(out)} == before


# ----------------------------------------------------------------------------------------------
# image files


@EXAMPLES
@given(
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "I;16"]),
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    seed=st.integers(0, 2**16),
    cut=st.one_of(st.none(), st.floats(0, 0.99)),
    suffix=st.sampled_from([".png", ".tif", ".jpg"]),
)
def test_an_image_file_reads_as_its_pixels_or_is_named_in_the_error(tmp_path, mode, size, seed, cut, suffix):  # fmt: skip
    assume(not (suffix == ".jpg" and mode in ("RGBA", "P", "I;16")))  # JPEG stores none of them
    generator = np.random.default_rng(seed)
    high = 65536 if mode == "I;16" else 256
    values = generator.integers(0, high, (size[1], size[0], 3 if mode in ("RGB", "RGBA") else 1))
    if mode == "I;16":
        image = Image.fromarray(values[..., 0].astype(np.uint16))
    else:
        image = Image.fromarray(values.astype(np.uint8).squeeze(-1) if values.shape[-1] == 1
                                else values.astype(np.uint8)).convert(mode)  # fmt: skip
    path = tmp_path / f"image{suffix}"
    image.save(path)
    if cut is not None:
        path.write_bytes(path.read_bytes()[: int(cut * path.stat().st_size)])
    try:
        loaded = load_image(path)
    except UserError as error:
        assert cut is not None and str(path) in str(error)  # only a damaged file is refused
        return
    assert loaded.mode == "RGB" and loaded.size == size
    if cut is None and mode in ("L", "I;16") and suffix != ".jpg":
        scale = 257 if mode == "I;16" else 1
        expected = (values[..., 0] + scale // 2) // scale  # v / 257, rounded: scaled, not clipped
        assert np.array_equal(np.asarray(loaded)[..., 0], expected)


# ----------------------------------------------------------------------------------------------
# model folders: configs and weights


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "lenet"
    torch.manual_seed(0)
    save_for_hf(timm.create_model("lenet5_a_pp"), str(folder), safe_serialization=True)
    return folder


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 20),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 2)), max_size=3
    ),  # fmt: skip
    st.dictionaries(
        st.sampled_from(["pp_pull_scale", "pp_alpha", "drop_rate", "nothing"]),
        st.one_of(st.floats(-2, 5), st.text(max_size=2)),
        max_size=2,
    ),  # fmt: skip
)


@EXAMPLES
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "mean",
                    "std",
                    "num_classes",
                    "model_args",
                    "architecture",
                    "input_size",
                    "pretrained_cfg",
                ]
            ),
            junk,
        ),  # fmt: skip
        min_size=1,
        max_size=3,
    ),  # fmt: skip
)
def test_a_model_folder_config_builds_a_usable_model_or_is_refused(tmp_path, model_folder, changes):
    folder = _fresh(tmp_path / "folder")
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes:
        if key in ("mean", "std", "input_size"):
            config.setdefault("pretrained_cfg", {})
            if isinstance(config["pretrained_cfg"], dict):
                config["pretrained_cfg"][key] = value
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    try:
        model = create_model(f"local-dir:{folder}", pretrained=True)
    except UserError:
        return
    cfg = model.pretrained_cfg
    assert len(cfg["mean"]) == len(cfg["std"]) and min(cfg["std"]) > 0
    assert all(math.isfinite(v) for v in [*cfg["mean"], *cfg["std"]])
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.rand(2, 1, 28, 28))).all()


@EXAMPLES
@given(
    dtypes=st.lists(
        st.sampled_from(["float32", "float16", "bfloat16", "float64", "int8", "int32", "bool"]),
        min_size=1,
        max_size=6,
    ),  # fmt: skip
    poison=st.sampled_from([None, float("nan"), float("inf"), -float("inf")]),
    drop=st.booleans(),
)
def test_a_weights_file_loads_exactly_or_is_refused(tmp_path, dtypes, poison, drop):
    reference = timm.create_model("lenet5_a_pp")
    state = {}
    for number, (key, value) in enumerate(reference.state_dict().items()):
        state[key] = value.to(getattr(torch, dtypes[number % len(dtypes)]))
    if poison is not None:
        state["fc.weight"] = state["fc.weight"].float().clone().fill_(poison)
    if drop:
        state.pop("fc.bias")
    save_file(state, str(tmp_path / "model.safetensors"))
    model = timm.create_model("lenet5_a_pp")
    try:
        load_weights(model, tmp_path / "model.safetensors")
    except UserError:
        floating = all(v.is_floating_point() for v in state.values())
        assert drop or poison is not None or not floating  # sound weights are never refused
        return
    assert not drop and poison is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key].to(value.dtype)) and torch.isfinite(value).all()


# ----------------------------------------------------------------------------------------------
# results files edited by hand


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    images, labels = clean_set(count=10, size=8)
    evaluate_model(MeanIntensityClassifier(), images, labels, suites=["c", "shift"],
                   corruptions=["contrast", "brightness"], severities=[1, 5], out_dir=out, **RUN)  # fmt: skip
    return out


numbers = [
    ("clean_error", ("clean_error",)),
    ("corruptions/contrast", ("corruptions", "contrast", "errors", 1)),
    ("corruptions/brightness", ("corruptions", "brightness", "mean_error")),
    ("shift", ("shift", "consistency")),
    ("shift", ("shift", "n_pairs")),
]


@EXAMPLES
@given(number=st.sampled_from(numbers), value=st.one_of(st.floats(0, 1), st.integers(0, 30)))
def test_an_edited_number_is_refused_naming_its_unit(tmp_path, finished_run, number, value):
    unit, path = number
    out = _fresh(tmp_path / "run")
    shutil.copytree(finished_run, out)
    results = json.loads((out / "results.json").read_text())
    entry = results
    for key in path[:-1]:
        entry = entry[key]
    # numbers are compared to 1e-9 relative, 1e-12 absolute (they are means recomputed exactly)
    assume(not math.isclose(entry[path[-1]], value, rel_tol=1e-9, abs_tol=1e-12))
    entry[path[-1]] = value
    (out / "results.json").write_text(json.dumps(results))
    try:
        load_per_image(out)
    except UserError as error:  # out of [0, 1] for the schema, or not what the outcomes give
        assert unit in str(error) or unit.replace("/", ".") in str(error)
        return
    raise AssertionError(f"{unit} edited to {value} was accepted")


# ----------------------------------------------------------------------------------------------
# the command line


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mnist")
    make_mnist_folder(folder, n_train=2, n_test=12)
    return folder


# option -> (values it takes, values it refuses)
OPTIONS = {
    "--batch-size": (st.integers(1, 40), st.integers(-2, 0)),
    "--max-images": (st.integers(1, 20), st.integers(-1, 0)),
    "--seed": (st.integers(0, 2**63 - 1), st.sampled_from([-1, 2**64])),
    "--severities": (
        st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True),
        st.lists(st.integers(-1, 7), min_size=1, max_size=3),
    ),  # fmt: skip
    "--shift-trials": (st.integers(1, 2), st.integers(-1, 0)),
    "--max-shift": (st.integers(0, 40), st.integers(-2, -1)),
    "--num-frames": (st.integers(2, 4), st.integers(-1, 1)),
    "--img-size": (st.integers(1, 40), st.integers(-1, 0)),
    "--num-classes": (st.sampled_from([10, 12]), st.sampled_from([-1, 0, 10**13])),
    "--workers": (st.just(0), st.just(-1)),
    "--device": (st.just("cpu"), st.sampled_from(["cpux", "cuda:9", "gpu"])),
    "--precision": (st.sampled_from(["fp32", "bf16"]), None),  # others: argparse's choices
    "--suite": (st.sampled_from(["c", "p", "shift", "noise", "c,shift"]), st.just("c,x")),
}


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


options = st.lists(st.sampled_from(sorted(OPTIONS)), max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries(
        {name: st.one_of(*[s for s in OPTIONS[name] if s is not None]).map(_text) for name in names}
    )
)


@EXAMPLES
@given(chosen=options)
def test_evaluate_options_give_a_valid_run_or_one_line_and_nothing_written(tmp_path, mnist, capsys, chosen):  # fmt: skip
    out = _fresh(tmp_path / "out")
    argv = ["evaluate", "--model", "lenet5_a", "--dataset", f"fashion_mnist:{mnist}",
            "--corruptions", "contrast", "--perturbations", "translate", "--out", str(out),
            "--no-progress", "--no-report"]  # fmt: skip
    argv += [f"{option}={value}" for option, value in chosen.items()]  # "=": values like -1
    capsys.readouterr()
    code = main(argv)
    error = capsys.readouterr().err.strip()
    event(f"exit {code}")
    if code == 2:
        assert error.startswith("timm-pushpull evaluate: error: ") and "\n" not in error
        assert not out.exists()
        return
    assert code == 0, error
    results = json.loads((out / "results.json").read_text())
    assert results["n_images"] == min(int(chosen.get("--max-images", 12)), 12)
    assert results["seed"] == int(chosen.get("--seed", 0))
    if "--severities" in chosen and "c" in chosen.get("--suite", "c"):
        severities = [int(s) for s in chosen["--severities"].split(",")]
        assert results["settings"]["severities"] == severities
    assert sorted(load_per_image(out)) == sorted(results["inputs"])  # every unit, both files
