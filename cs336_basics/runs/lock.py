"""One trainer per run directory: an advisory lock on ``RUN_DIR/.lock``.

Two ``cs336 train --resume auto`` on the same run would both append to
``metrics.jsonl`` and overwrite each other's checkpoints. The trainer takes an
exclusive ``fcntl.flock`` on the run directory's ``.lock`` file for the whole
run and writes its pid there; a second trainer fails at once with a one-line
error naming that pid. The kernel drops the lock when the process ends, however
it ends (SIGKILL included), so a crashed run never leaves a stale lock.

Platforms without ``fcntl`` (Windows) run without the lock.
"""

from __future__ import annotations

import os
from pathlib import Path

from cs336_basics.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here, the run goes on without one
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """Exclusive lock of one run directory, held from :meth:`acquire` until :meth:`release` (or process exit)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"run directory {self.path.parent} is in use by another trainer (pid {holder}); "
                            "wait for it to finish, stop it, or choose another --run-name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
