"""Two `evaluate` runs on one --out, as real processes: the second is refused at once, naming the
first, whatever it evaluates (nothing lost, no work done twice); a killed run leaves a stale lock
file that the rerun takes over, finishing the run as an uninterrupted one would.

The first run is ``tests/evaluate_worker.py`` with ``gated_test_resnet``, which waits inside its
run (the output folder held) until the test releases it; the second runs in this process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_robustness_data import make_cifar_c

from timm_pushpull.cli import main
from timm_pushpull.constants import LOCK_FILE, LOCK_HOLDER_FILE
from timm_pushpull.locking import user_files

WORKER = Path(__file__).with_name("evaluate_worker.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Weights of a seeded test_resnet (10 classes) and a CIFAR-10-C folder of two corruptions."""
    import timm
    from timm.models import save_for_hf

    root = tmp_path_factory.mktemp("concurrency")
    torch.manual_seed(0)
    save_for_hf(timm.create_model("test_resnet", num_classes=10), str(root / "model"),
                safe_serialization=True)  # fmt: skip
    make_cifar_c(root / "CIFAR-10-C", corruptions=("fog", "contrast"))
    return root


def _arguments(data: Path, out: Path, model: str = "test_resnet", classes: int = 10) -> list[str]:
    weights = ["--checkpoint", str(data / "model" / "model.safetensors")] if classes == 10 else []
    return ["evaluate", "--model", model, "--num-classes", str(classes), *weights,
            "--dataset", str(data / "CIFAR-10-C"), "--severities", "1,3", "--device", "cpu",
            "--out", str(out), "--no-progress", "--no-report"]  # fmt: skip


class GatedRun:
    """``evaluate`` of ``gated_test_resnet`` in a process of its own, waiting inside its run
    (before its forward pass number ``gate_at``) until :meth:`release`."""

    def __init__(self, data: Path, out: Path, gate: Path, gate_at: int = 1):
        gate.mkdir()
        self.gate = gate
        env = {**os.environ, "GATE": str(gate), "GATE_AT": str(gate_at), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), *_arguments(data, out, "gated_test_resnet")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (gate / "started").exists():
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "the gated run never started"
            time.sleep(0.05)

    def release(self) -> tuple[int, str]:
        (self.gate / "release").touch()
        _, error = self.process.communicate(timeout=300)
        return self.process.returncode, error

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=60)


def _refusal(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    return error


def test_a_second_run_of_another_model_is_refused_and_nothing_is_lost(data, tmp_path, capsys):
    out = tmp_path / "out"
    first = GatedRun(data, out, tmp_path / "gate")
    try:
        # another model (5 classes, random weights) into the folder the first run holds
        assert main(_arguments(data, out, classes=5)) == 2
        error = _refusal(capsys)
        assert f"--out {out} is in use by" in error and f"pid {first.process.pid}" in error
    finally:
        code, stderr = first.release()
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "gated_test_resnet" and list(results["corruptions"]) == [
        "fog", "contrast"
    ]  # fmt: skip
    # once the first run is over, the other model is refused as another run: still nothing lost
    before = (out / "results.json").read_bytes()
    assert main(_arguments(data, out, classes=5)) == 2
    assert "holds the results of another run" in _refusal(capsys)
    assert (out / "results.json").read_bytes() == before


def test_the_same_run_started_twice_does_the_work_once(data, tmp_path, capsys):
    out = tmp_path / "out"
    first = GatedRun(data, out, tmp_path / "gate")
    try:
        assert main(_arguments(data, out)) == 2  # the same weights and data: the same run
        assert f"pid {first.process.pid}" in _refusal(capsys)
        assert user_files(out) == []  # the first run has written nothing yet, nor the second
    finally:
        code, stderr = first.release()
    assert code == 0, stderr
    before = json.loads((out / "results.json").read_text())
    assert main(_arguments(data, out)) == 0  # resumed: every unit is done
    after = json.loads((out / "results.json").read_text())
    assert (after.pop("model"), before.pop("model")) == ("test_resnet", "gated_test_resnet")
    assert after == before


def test_a_killed_run_leaves_a_stale_lock_that_the_rerun_recovers_from(data, tmp_path, capsys):
    out = tmp_path / "out"
    # forward passes: 1 checks the model on one image, 2 the clean set... here no clean set: 2 and
    # 3 are fog's severities, 4 is contrast's first: killed there, fog finished
    first = GatedRun(data, out, tmp_path / "gate", gate_at=4)
    first.kill()
    assert {LOCK_FILE, LOCK_HOLDER_FILE} <= {p.name for p in out.iterdir()}  # left by the crash
    assert list(json.loads((out / "results.json").read_text())["corruptions"]) == ["fog"]

    assert main(_arguments(data, out)) == 0  # the OS released the lock with the killed process
    assert main(_arguments(data, tmp_path / "whole")) == 0
    assert (out / "results.json").read_text() == (tmp_path / "whole" / "results.json").read_text()
    with np.load(out / "per_image.npz") as resumed, np.load(tmp_path / "whole" / "per_image.npz") as whole:  # fmt: skip
        assert sorted(resumed.files) == sorted(whole.files)
        assert all(np.array_equal(resumed[key], whole[key]) for key in whole.files)
    assert not (out / LOCK_HOLDER_FILE).exists()  # the rerun's own holder file, removed at its end
