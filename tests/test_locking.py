"""exclusive_folder: one process at a time in an output folder, named in the refusal, and a lock
that dies with its process (killed holders leave nothing that blocks a rerun)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from timm_pushpull.errors import FolderInUseError, UserError
from timm_pushpull.locking import LOCK_FILES, exclusive_folder, user_files

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from timm_pushpull.locking import exclusive_folder
    with exclusive_folder(sys.argv[1], "--out", command="holder-run"):
        (Path(sys.argv[1]) / "work.txt").write_text("started")
        print("held", flush=True)
        time.sleep(60)
    """
)


def _start_holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_second_process_refused_with_the_holder_named(tmp_path):
    holder = _start_holder(tmp_path / "out")
    try:
        with pytest.raises(FolderInUseError, match=rf"--out .*holder-run.*pid {holder.pid}"):
            with exclusive_folder(tmp_path / "out", "--out"):
                pytest.fail("the folder was entered while another process held it")
        assert (tmp_path / "out" / "work.txt").read_text() == "started"  # nothing touched
    finally:
        holder.kill()
        holder.wait()


def test_killed_holder_leaves_no_lock(tmp_path):
    holder = _start_holder(tmp_path / "out")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # the stale holder file of the killed process is still there; the OS lock is not
    with exclusive_folder(tmp_path / "out", "--out", command="rerun"):
        assert (tmp_path / "out" / "work.txt").is_file()


def test_same_process_cannot_enter_twice(tmp_path):
    with exclusive_folder(tmp_path / "out", "--out"):
        with pytest.raises(FolderInUseError, match="in use"):
            with exclusive_folder(tmp_path / "out", "--out"):
                pass


def test_folder_created_for_nothing_is_removed(tmp_path):
    """A run refused before any work must not leave a folder that blocks the corrected rerun."""
    with pytest.raises(RuntimeError):
        with exclusive_folder(tmp_path / "a" / "out", "--out"):
            raise RuntimeError("refused before any work")
    assert not (tmp_path / "a" / "out").exists()
    # a folder that was there before is kept, and so is one the run wrote into
    (tmp_path / "kept").mkdir()
    with exclusive_folder(tmp_path / "kept", "--out"):
        pass
    assert (tmp_path / "kept").is_dir() and user_files(tmp_path / "kept") == []
    with exclusive_folder(tmp_path / "written", "--out"):
        (tmp_path / "written" / "results.json").write_text("{}")
    assert [p.name for p in user_files(tmp_path / "written")] == ["results.json"]


def test_lock_files_are_not_user_files(tmp_path):
    with exclusive_folder(tmp_path, "--out"):
        present = {p.name for p in tmp_path.iterdir()}
        assert set(LOCK_FILES) <= present
        assert user_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_unusable_folder_is_a_user_error(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into any folder")
        target.mkdir()
        target.chmod(0o500)
    with pytest.raises(UserError, match="--out"):
        with exclusive_folder(target, "--out"):
            pass


def test_holder_released_after_the_block(tmp_path):
    with exclusive_folder(tmp_path / "out", "--out"):
        pass
    other = subprocess.run(
        [sys.executable, "-c", HOLDER.replace("time.sleep(60)", "pass"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr  # refused (exit 1) if the lock were still held
