"""One local scaler per queue: an exclusive ``fcntl`` lock on a file.

A second scaler for the same queue on this machine refuses to start instead of fighting over
the same workers. On Kubernetes the chart runs exactly one scaler pod (``strategy: Recreate``),
so no lease is needed there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO


class AlreadyRunning(RuntimeError):
    """Another scaler holds the lock."""


class FileLock:
    """Exclusive, non-blocking ``flock`` on ``path``; the holder's pid is written into it.

    The kernel drops the lock when the process dies, however it dies, so a stale file never
    blocks a new scaler.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another scaler (pid {holder}) holds {self.path}; stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
