"""One `train` per run folder: a second process (same run or another model) is refused at once,
naming the holder, and never touches the holder's files; a killed holder leaves a lock that a
`--resume` rerun takes over, finishing the run."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

import pytest
from test_data import make_mnist_folder

from timm_pushpull.locking import LOCK_FILES, exclusive_folder
from timm_pushpull.training.checkpoint import RESUME_FILE, load_resume_state
from timm_pushpull_cli import main

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--dataset", "mnist", "--batch-size", "8", "--eval-batch-size", "8", "--workers", "0",
          "--cpu", "--no-progress", "--lr", "0.05", "--sched", "constant"]  # fmt: skip


def train_cli(*argv) -> tuple[int, str]:
    err = StringIO()
    with redirect_stderr(err):
        code = main(["train", *map(str, argv)])
    return code, err.getvalue()


def start_train(*argv) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "timm_pushpull.cli", "train", *map(str, argv)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def tiny_mnist(tmp_path):
    make_mnist_folder(tmp_path / "data", n_train=32, n_test=8)
    return tmp_path / "data"


def test_two_processes_one_folder_then_a_killed_holder(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    holder = start_train("--model", "lenet5_a", *COMMON, "--data-dir", tiny_mnist,
                         "--epochs", "100000", "--output", out)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (out / RESUME_FILE).is_file():  # the first epoch is done
            assert holder.poll() is None, holder.stderr.read()
            assert time.monotonic() < deadline, "the holder saved no checkpoint in 240 s"
            time.sleep(0.2)
        # the same run again in another process, and another model from this one
        same = start_train("--model", "lenet5_a", *COMMON, "--data-dir", tiny_mnist,
                           "--epochs", "100000", "--output", out)  # fmt: skip
        code, err = train_cli("--model", "lenet5_a_pp", *COMMON, "--data-dir", tiny_mnist,
                              "--epochs", "1", "--output", out)  # fmt: skip
        errors = [(code, err), (same.wait(timeout=240), same.stderr.read())]
        for code, err in errors:
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1, err
            assert f"--output {out} is in use by" in lines[0] and f"pid {holder.pid}" in lines[0]
        assert holder.poll() is None  # still training, its folder its own
        assert "lenet5_a_pp" not in (out / "train_config.yaml").read_text()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the crash leaves the lock's files (the holder file names a dead process) and the run's
    assert set(LOCK_FILES) <= {p.name for p in out.iterdir()}
    epochs_done = load_resume_state(out)["epoch"]
    # another run is still refused: the folder holds a run, lock or no lock
    code, err = train_cli("--model", "lenet5_a_pp", *COMMON, "--data-dir", tiny_mnist,
                          "--epochs", "1", "--output", out)  # fmt: skip
    assert code == 2 and "already holds files" in err
    # the killed run resumes and finishes one more epoch
    code, err = train_cli("--model", "lenet5_a", *COMMON, "--data-dir", tiny_mnist,
                          "--epochs", epochs_done + 1, "--resume", "--output", out)  # fmt: skip
    assert code == 0, err
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs_done + 2))
    assert records[-1]["step"] == 4 * (epochs_done + 1) and (out / "model.safetensors").is_file()


def test_a_held_folder_is_refused_before_anything_is_read_or_written(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    with exclusive_folder(out, "--out", command="timm-pushpull evaluate (another run)"):
        # the data dir does not exist either: the lock is checked first, and nothing is created
        code, err = train_cli("--model", "lenet5_a", *COMMON, "--data-dir", tmp_path / "nowhere",
                              "--epochs", "1", "--output", out)  # fmt: skip
        assert code == 2 and "is in use by 'timm-pushpull evaluate (another run)'" in err
        assert sorted(p.name for p in out.iterdir()) == sorted(LOCK_FILES)


def test_a_folder_holding_only_a_stale_lock_is_free(tiny_mnist, tmp_path):
    """What a run killed before its first write leaves: no run's files, so no --overwrite needed."""
    out = tmp_path / "run"
    out.mkdir()
    for name in LOCK_FILES:
        (out / name).write_text("")
    code, err = train_cli("--model", "lenet5_a", *COMMON, "--data-dir", tiny_mnist,
                          "--epochs", "1", "--output", out)  # fmt: skip
    assert code == 0, err


def test_a_metrics_line_cut_by_a_kill_does_not_block_resume(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    code, err = train_cli("--model", "lenet5_a", *COMMON, "--data-dir", tiny_mnist,
                          "--epochs", "2", "--max-steps", "4", "--output", out)  # fmt: skip
    assert code == 0, err
    with (out / "metrics.jsonl").open("a") as log:
        log.write('{"epoch": 2, "step": 8, "lr"')  # the line of an epoch after the checkpoint
    code, err = train_cli("--model", "lenet5_a", *COMMON, "--data-dir", tiny_mnist,
                          "--epochs", "2", "--resume", "--output", out)  # fmt: skip
    assert code == 0, err
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8]
