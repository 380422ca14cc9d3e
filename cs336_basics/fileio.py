"""Atomic file and directory writes (readers never see a half-written output, a crash leaves the old one),
and file hashes.

A file output is written at a temp name beside it (``.NAME.PID.tmp``), fsynced and renamed over
it (:func:`atomic_path` for any writer, :func:`atomic_writer` for a file object,
:func:`atomic_write_text`); this module is the one place that renames outputs into place
(tests/test_one_place.py keeps it so).

A directory output (an export folder, a tokenizer directory) is built in a hidden temp
directory beside its final name and renamed into place; a previous one is moved aside
and only the files its writer names are deleted from it, so a file someone else put
there is never removed (:func:`replace_dir_atomically` refuses such a directory).

Kept apart from the run-directory code so that low layers (the tokenizer's token
files, downloads, the bundled sample) can use it without importing configs. A
write that fails because the disk is full becomes
:class:`~cs336_basics.errors.DiskFullError`, a one-line error naming the path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO

from cs336_basics.errors import UserError, disk_full_is_user_error


@contextmanager
def atomic_path(path: str | Path, fix: str | None = "free space and rerun") -> Iterator[Path]:
    """A temp name beside ``path`` (``.NAME.PID.tmp``) for the block to write in any way (a file object, a
    library that takes a file name, a hard link); when the block ends cleanly the file is fsynced and renamed
    over ``path``, on any failure it is removed and ``path`` is as it was. A full disk inside the block
    becomes :class:`~cs336_basics.errors.DiskFullError` naming ``path`` and ``fix`` (``fix=None``: the
    OSError is left to the caller, which reports it with its own advice)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with disk_full_is_user_error(path, fix) if fix is not None else nullcontext():
            yield tmp
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_writer(path: str | Path, mode: str = "wb", fix: str | None = "free space and rerun") -> Iterator[IO]:
    """A file opened for writing (``"wb"``, or ``"w"`` for UTF-8 text) that replaces ``path`` atomically when the
    block ends cleanly (see :func:`atomic_path`)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer writes a new file: mode 'wb' or 'w', got {mode!r}")
    with atomic_path(path, fix) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
        yield fh


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers never see a half-written file."""
    with atomic_writer(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def foreign_entries(directory: Path, owned: Collection[str]) -> list[Path]:
    """The entries of ``directory`` whose names are not in ``owned`` (sorted): what its writer did not put there."""
    return sorted(entry for entry in Path(directory).iterdir() if entry.name not in owned)


def replace_dir_atomically(out_dir: str | Path, fill: Callable[[Path], None], owned: Collection[str]) -> Path:
    """Build a directory with ``fill(tmp)`` in a temp dir beside ``out_dir``, then rename it into place.

    An existing ``out_dir`` may hold only names in ``owned`` (else UserError, nothing written): it is
    moved aside, the new directory takes its name, and then exactly those files are deleted from the
    old one. A failure before the rename leaves ``out_dir`` as it was.
    """
    out_dir = Path(out_dir).resolve()
    parent = out_dir.parent
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserError(f"{out_dir} exists and is not a directory; choose another output")
        foreign = foreign_entries(out_dir, owned)
        if foreign:
            raise UserError(f"{out_dir} holds {foreign[0].name}, which was not written there by this command; "
                            "move it away or choose another output")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            return out_dir
        aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=parent))
        os.rmdir(aside)
        os.replace(out_dir, aside)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(aside, out_dir)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name in owned:
        target = aside / name
        if target.is_file() or target.is_symlink():
            target.unlink()
    try:
        os.rmdir(aside)
    except OSError as exc:  # a file appeared there after the check: it is kept, and said so
        raise UserError(f"{out_dir} was written, but files that appeared in the previous one while it was "
                        f"replaced are kept in {aside}; look at them there") from exc
    return out_dir


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (hex), read in chunks so a corpus is never held in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
