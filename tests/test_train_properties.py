"""Property-based tests of `timm-pushpull train`'s command line (hypothesis): malformed numbers,
paths, recipes and resume checkpoints end in one line on stderr and exit status 2 with nothing
written or lost; well-formed values are taken as given."""

import math
import shutil
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_data import make_mnist_folder

from timm_pushpull.training.checkpoint import RESUME_FILE
from timm_pushpull_cli import main

# hypothesis runs each example in the same pytest function: module-scoped folders, no tmp_path
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUNS = settings(SETTINGS, max_examples=20)  # each example opens the data and builds the model
TINY = ["--model", "lenet5_a", "--dataset", "mnist", "--batch-size", "8", "--workers", "0",
        "--cpu", "--no-progress", "--epochs", "1"]  # fmt: skip

# The values each numeric setting allows, from what they mean (torch's and timm's documented
# ranges): every one of them refuses negative numbers, NaN and the infinities.
INTEGERS = {
    "epochs": (1, None), "batch_size": (1, None), "eval_batch_size": (1, None),
    "num_classes": (1, None), "img_size": (1, 4096), "train_samples": (1, None),
    "val_samples": (1, None), "max_steps": (1, None), "padding": (0, None), "cutout": (0, None),
    "workers": (0, 256), "seed": (0, 2**32 - 1),
}  # fmt: skip
FLOATS = {
    "lr": (0.0, None, True), "weight_decay": (0.0, None, False), "gamma": (0.0, None, True),
    "momentum": (0.0, 1.0, False), "label_smoothing": (0.0, 1.0, False),
    "hflip": (0.0, 1.0, False), "color_jitter": (0.0, None, False), "crop_pct": (0.0, 1.0, True),
}  # fmt: skip
LISTS = {"milestones": int, "mean": float, "std": float}
NUMERIC = sorted([*INTEGERS, *FLOATS, *LISTS, "in_chans"])
NON_FINITE = ["nan", ".nan", "NaN", "inf", ".inf", "-inf", "-.inf", "Infinity", "1e999", "-1e999"]


def option(name: str, value) -> str:
    """``--name=value``: argparse would take a value such as ``-1e-06`` for an option."""
    return f"--{name.replace('_', '-')}={value}"


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["train", *map(str, argv)])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *named: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("timm-pushpull train: error:"), err
    for name in named:
        assert name in lines[0], err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("properties")
    make_mnist_folder(root / "data", n_train=16, n_test=4)
    return root


def _not_a_number(text: str) -> bool:
    """Text that is neither a number nor YAML for a number, a list, a mapping or null."""
    try:
        float(text)
        return False
    except ValueError:
        pass
    try:
        return not isinstance(yaml.safe_load(text), int | float | list | dict | type(None))
    except yaml.YAMLError:
        return True


malformed = st.one_of(
    st.sampled_from(NON_FINITE),
    st.floats(max_value=-1e-6, allow_nan=False, allow_infinity=False).map(repr),
    st.integers(max_value=-1).map(str),
    st.sampled_from(["true", "false", "yes", "[1, nan]", "{a: 1}"]),
    st.text("abcxyz_-.,:% ", min_size=1, max_size=8).filter(_not_a_number),
)


@SETTINGS
@given(name=st.sampled_from(NUMERIC), value=malformed)
@example(name="lr", value="nan")
@example(name="lr", value="inf")
@example(name="epochs", value=".inf")
@example(name="weight_decay", value="-.inf")
@example(name="momentum", value="nan")
@example(name="label_smoothing", value="inf")
def test_malformed_numbers_are_refused_before_anything_is_written(folders, name, value):
    out = folders / "out-malformed"
    code, _, err = run_cli(
        *TINY, "--data-dir", folders / "data", option(name, value), "--output", out
    )
    assert_one_line_error(code, err, f"{name}=", "allowed:")
    assert not out.exists()


@SETTINGS
@given(name=st.sampled_from(sorted(INTEGERS)), value=st.floats(0.5, 1e6).filter(lambda x: x % 1))
def test_fractions_are_not_counts(name, value):
    code, _, err = run_cli(*TINY, option(name, repr(value)), "--print-config")
    assert_one_line_error(code, err, f"{name}=")


def _valid(name: str):
    if name in INTEGERS:
        low, high = INTEGERS[name]
        return st.integers(low, high if high is not None else 10**9)
    if name in FLOATS:
        low, high, open_low = FLOATS[name]
        top = 1e6 if high is None else high
        values = st.floats(low, top, exclude_min=open_low, exclude_max=name == "momentum")
        return values.filter(lambda x: x > 0 or not open_low)
    if name == "in_chans":
        return st.sampled_from([1, 3])
    if name == "milestones":
        return st.lists(st.integers(1, 10**6), max_size=4)
    channel = st.floats(0, 1) if name == "mean" else st.floats(1e-6, 1e3)
    return st.lists(channel, min_size=1, max_size=3)


@SETTINGS
@given(data=st.data(), name=st.sampled_from(NUMERIC))
def test_well_formed_numbers_are_taken_as_given(data, name):
    value = data.draw(_valid(name))
    text = repr(value) if not isinstance(value, list) else "[" + ", ".join(map(repr, value)) + "]"
    code, out, err = run_cli(*TINY, option(name, text), "--print-config")
    assert code == 0, err
    assert yaml.safe_load(out)[name] == value


scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)
)
recipe_values = st.one_of(scalar, st.lists(scalar, max_size=3))
recipe_keys = st.one_of(st.sampled_from([*NUMERIC, "opt", "sched", "crop", "dataset", "model_kwargs"]),
                        st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))  # fmt: skip


@SETTINGS
@given(recipe=st.dictionaries(recipe_keys, recipe_values, max_size=4))
def test_any_recipe_file_is_taken_or_refused_in_one_line(folders, recipe):
    path = folders / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, out, err = run_cli("--recipe", path, "--model", "lenet5_a", "--print-config")
    if code != 0:
        assert_one_line_error(code, err)
        return
    # what is taken holds no NaN or infinity anywhere
    config = yaml.safe_load(out)
    for value in config.values():
        for item in value if isinstance(value, list) else [value]:
            assert not isinstance(item, float) or math.isfinite(item), config


path_part = st.text("abcdef0123456789_-. ", min_size=1, max_size=12).filter(
    lambda s: s.strip(". ") != ""
)


@RUNS
@given(kind=st.sampled_from(["data_dir", "folder", "name"]), part=path_part)
def test_missing_data_paths_are_refused_and_nothing_is_written(folders, kind, part):
    missing = folders / "missing" / part
    out = folders / "out-paths"
    argv = list(TINY)
    if kind == "data_dir":
        argv += ["--data-dir", missing]
    elif kind == "folder":
        argv += ["--dataset", f"folder:{missing}"]
    else:
        argv += ["--dataset", f"{missing}"]
    code, _, err = run_cli(*argv, "--output", out)
    assert_one_line_error(code, err, "dataset")
    assert not out.exists()


@pytest.fixture(scope="module")
def stopped_run(folders):
    out = folders / "stopped"
    code, _, err = run_cli(*TINY, "--data-dir", folders / "data", "--epochs", "2",
                           "--max-steps", "1", "--output", out)  # fmt: skip
    assert code == 0, err
    return out


@RUNS
@given(data=st.data())
def test_damaged_checkpoints_are_refused_and_the_run_is_kept(folders, stopped_run, data):
    whole = (stopped_run / RESUME_FILE).read_bytes()
    damaged = data.draw(
        st.one_of(
            st.binary(max_size=4096),
            st.integers(0, len(whole) - 1).map(lambda n: whole[:n]),
        )
    )
    run = folders / "damaged"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(stopped_run, run)
    (run / RESUME_FILE).write_bytes(damaged)
    before = {p.name: p.read_bytes() for p in Path(run).iterdir() if p.is_file()}
    code, _, err = run_cli(*TINY, "--data-dir", folders / "data", "--epochs", "2", "--resume",
                           "--output", run)  # fmt: skip
    assert_one_line_error(code, err, str(run / RESUME_FILE))
    assert {p.name: p.read_bytes() for p in Path(run).iterdir() if p.is_file()} == before
