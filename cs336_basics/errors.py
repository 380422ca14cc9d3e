"""The one exception type that means "the user asked for something we cannot do".

Library code raises :class:`UserError` (or a subclass) with a one-line message
that names the problem and the fix. The CLI turns it into ``error: <message>``
on stderr and exit code 2, without a traceback (``--debug`` shows one).
Programming errors stay ordinary exceptions so they are never hidden.

:class:`ExitCode` is the one table of the exit statuses every layer uses (the
CLI, the trainer's stop reasons, the signal handlers, the sweep reading its
children's status); docs/training.md lists them for people.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

try:  # Unix only: the file-size limit
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Errors of a write the filesystem refused for lack of room: a full disk, an exhausted quota, and a file past
the process's file-size limit (``ulimit -f``; Python ignores SIGXFSZ, so the write fails with EFBIG instead of
killing the process)."""

_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
"""How libraries written in Rust (safetensors) report an OS error: only in their message."""


class ExitCode(IntEnum):
    """The exit status of a ``cs336`` command."""

    OK = 0
    """Done; for ``cs336 train`` also a run its time budget or ``train.stop_at_step`` ended."""
    INTERNAL_ERROR = 1
    """A bug: an exception that is not a :class:`UserError` (one line; ``--debug`` shows the traceback)."""
    USER_ERROR = 2
    """Bad input or usage: a :class:`UserError`, an unreadable file, an unknown option."""
    DIVERGED = 3
    """``cs336 train``: the run diverged (non-finite or exploding loss); its good checkpoints are kept."""
    RUNS_FAILED = 4
    """``cs336 sweep``: one or more runs failed (their errors are in the sweep's ``results.jsonl``); the others are kept."""
    SIGINT = 130
    """Stopped by SIGINT (Ctrl-C): 128 + the signal number, the shell convention."""
    SIGTERM = 143
    """Stopped by SIGTERM (a scheduler's notice): 128 + the signal number."""


class UserError(Exception):
    """Bad input, a missing file, an impossible setting: reported in one line, exit code 2."""

    exit_code = ExitCode.USER_ERROR


class ConfigError(UserError, ValueError):
    """A configuration file or ``--set`` override names an unknown key or has the wrong type."""


def file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), or None when there is none."""
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


class DiskFullError(UserError):
    """The disk (or the quota, or the file-size limit) ran out while writing ``path``: an environmental fault,
    not a bug. ``fix`` says what to do once there is room again (by convention it starts "free space and ...");
    for the file-size limit the advice becomes raising the limit."""

    def __init__(self, path: str | os.PathLike, fix: str = "free space and rerun", code: int = errno.ENOSPC) -> None:
        if code == errno.EFBIG:
            limit = file_size_limit()
            size = f" of {limit:,} bytes" if limit is not None else ""
            rest = fix.removeprefix("free space") if fix.startswith("free space") else f" and {fix}"
            message = (f"file too large: writing {path} went past the file-size limit{size} (ulimit -f); "
                       f"raise the limit (ulimit -f unlimited){rest}")
        else:
            message = f"no space left on device at {path}; {fix}"
        super().__init__(message)
        self.path = path
        self.code = code


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file, as the end of a sentence that starts with the path
    ("is a directory", "is a symlink loop", "does not exist", ...); None when it is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (following its links leads back to a link already followed)"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"is a broken symlink (to {os.readlink(path)}, which does not exist)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def write_refused_errno(exc: BaseException | None) -> int | None:
    """The errno of :data:`DISK_FULL_ERRNOS` behind ``exc``, wherever it hides in the cause/context chain
    (``torch.save`` reports it as a RuntimeError whose context is the OSError; safetensors only in its message);
    None for any other failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc.errno
        found = _OS_ERROR_IN_TEXT.search(str(exc)) if not isinstance(exc, OSError) else None
        if found and int(found.group(1)) in DISK_FULL_ERRNOS:
            return int(found.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def is_disk_full(exc: BaseException | None) -> bool:
    """True for the OSError of a full disk, an exhausted quota or the file-size limit (see
    :func:`write_refused_errno`)."""
    return write_refused_errno(exc) is not None


@contextmanager
def disk_full_is_user_error(path: str | os.PathLike, fix: str = "free space and rerun") -> Iterator[None]:
    """Turn a full disk (or the file-size limit) inside the block into :class:`DiskFullError` naming ``path``
    and ``fix``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        code = write_refused_errno(exc)
        if code is not None:
            raise DiskFullError(path, fix, code) from exc
        raise
