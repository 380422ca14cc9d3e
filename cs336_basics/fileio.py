"""Atomic file writes (readers never see a half-written file, a crash leaves the old one) and a full disk.

Kept apart from the run-directory code so that low layers (the tokenizer's token
files, downloads, the bundled sample) can use it without importing configs.
A write that fails because the disk is full becomes :class:`DiskFullError`, a
one-line user error naming the path, wherever in the exception chain the
``ENOSPC`` hides (``torch.save`` reports it as a RuntimeError whose context is
the OSError).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from cs336_basics.errors import UserError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(UserError):
    """No space left on the device (or quota exceeded) while writing; what was already complete is kept."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or anything in its cause/context chain is an OSError for a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def raise_if_disk_full(exc: BaseException, path: str | Path, hint: str = "rerun") -> None:
    """Re-raise a full-disk failure as :class:`DiskFullError`; return for anything else."""
    if is_disk_full(exc):
        raise DiskFullError(f"no space left on device at {path}; free space and {hint}") from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write via a temp file + fsync + rename so readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise_if_disk_full(exc, path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
