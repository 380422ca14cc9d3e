"""Atomic file writes (readers never see a half-written file, a crash leaves the old one), and file hashes.

Kept apart from the run-directory code so that low layers (the tokenizer's token
files, downloads, the bundled sample) can use it without importing configs. A
write that fails because the disk is full becomes
:class:`~cs336_basics.errors.DiskFullError`, a one-line error naming the path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cs336_basics.errors import disk_full_is_user_error


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write via a temp file + fsync + rename so readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with disk_full_is_user_error(path), open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (hex), read in chunks so a corpus is never held in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
