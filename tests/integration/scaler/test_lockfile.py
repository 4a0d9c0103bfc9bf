"""Only one local scaler per queue: the file lock, within and across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conversation_events_scaler.lockfile import AlreadyRunning, FileLock


def test_a_second_local_scaler_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    path = tmp_path / "scaler.lock"
    first = FileLock(path)
    assert first.acquire()
    with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
        FileLock(path).acquire()
    first.release()
    second = FileLock(path)
    assert second.acquire()
    second.release()


def test_the_lock_is_held_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "scaler.lock"
    holder = FileLock(path)
    holder.acquire()
    try:
        probe = (
            "import fcntl, sys\n"
            f"f = open({str(path)!r}, 'a+')\n"
            "try:\n"
            "    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except BlockingIOError:\n"
            "    sys.exit(3)\n"
        )
        assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 3
    finally:
        holder.release()
