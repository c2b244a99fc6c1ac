"""One process at a time in an output folder.

``evaluate --out``, ``train --output`` and the study write many files into one folder over a long
run; two processes writing the same folder would mix or overwrite each other's results without an
error. :func:`exclusive_folder` holds an operating-system lock on a file inside the folder for the
whole run (``filelock``, a well-kept library, rather than our own ``fcntl`` calls: it also covers
Windows). The OS drops the lock when its process ends, killed or not, so a crashed run never leaves
a lock that blocks the rerun. Beside the lock a small JSON file names the holder (command, process,
host, start time) for the error message of the process that is refused.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .constants import LOCK_FILE, LOCK_HOLDER_FILE
from .errors import FolderInUseError

__all__ = ["LOCK_FILES", "exclusive_folder", "folder_holder", "user_files"]

# the files exclusive_folder keeps in a folder: never results of a run
LOCK_FILES = (LOCK_FILE, LOCK_HOLDER_FILE)


def user_files(folder: str | Path) -> list[Path]:
    """The entries of ``folder`` other than the lock's own files (none if it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name not in LOCK_FILES)


def folder_holder(folder: str | Path) -> str:
    """Who holds (or last held) ``folder``'s lock, in words, from the holder file."""
    try:
        holder = json.loads((Path(folder) / LOCK_HOLDER_FILE).read_text())
        return (
            f"'{holder['command']}' (pid {holder['pid']} on {holder['host']}, "
            f"started {holder['started']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not named itself yet)"


def _holder_record(command: str) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    return json.dumps(
        dict(command=command, pid=os.getpid(), host=socket.gethostname(), started=started)
    )


@contextmanager
def exclusive_folder(
    folder: str | Path, argument: str, command: str | None = None
) -> Iterator[Path]:
    """Create ``folder`` if needed and hold its lock until the block ends.

    ``argument`` names the option the folder came from (``--out``) for the error message;
    ``command`` is what the holder file says about this process (default: its command line).
    A second process (or a second call in this process) asking for the same folder gets a
    :class:`~.errors.FolderInUseError` at once, naming the holder. A folder this call created and
    left holding nothing but the lock's files (a run refused before any work) is removed at the
    end, so that it never blocks the corrected rerun.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderInUseError(f"{argument} {folder} exists and is not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FolderInUseError(
            f"{argument} {folder} cannot be created: {error.strerror or error}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FolderInUseError(f"{argument} {folder} is not writable")
    # thread_local=False and no singleton: a second acquisition in this process is refused too
    lock = FileLock(folder / LOCK_FILE, blocking=False, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise FolderInUseError(
            f"{argument} {folder} is in use by {folder_holder(folder)}: wait for that run to end, "
            f"or choose another {argument}"
        ) from None
    holder_file = folder / LOCK_HOLDER_FILE
    try:
        holder_file.write_text(_holder_record(command or " ".join(sys.argv)))
        yield folder
    finally:
        holder_file.unlink(missing_ok=True)
        remove = created and not user_files(folder)
        if remove:  # unlinked while still held: no process can take a lock on a file going away
            (folder / LOCK_FILE).unlink(missing_ok=True)
        lock.release()
        if remove:
            try:
                folder.rmdir()
            except OSError:  # another process created something meanwhile: keep it
                pass
