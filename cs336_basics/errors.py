"""The one exception type that means "the user asked for something we cannot do".

Library code raises :class:`UserError` (or a subclass) with a one-line message
that names the problem and the fix. The CLI turns it into ``error: <message>``
on stderr and exit code 2, without a traceback (``--debug`` shows one).
Programming errors stay ordinary exceptions so they are never hidden.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class UserError(Exception):
    """Bad input, a missing file, an impossible setting: reported in one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A configuration file or ``--set`` override names an unknown key or has the wrong type."""


class DiskFullError(UserError):
    """The disk (or the quota) ran out while writing ``path``: an environmental fault, not a bug."""

    def __init__(self, path: str | os.PathLike, fix: str = "free space and rerun") -> None:
        super().__init__(f"no space left on device at {path}; {fix}")
        self.path = path


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


def is_disk_full(exc: BaseException | None) -> bool:
    """True for the OSError of a full disk or an exhausted quota, wherever it hides in the cause/context chain
    (``torch.save`` reports it as a RuntimeError whose context is the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def disk_full_is_user_error(path: str | os.PathLike, fix: str = "free space and rerun") -> Iterator[None]:
    """Turn a full disk inside the block into :class:`DiskFullError` naming ``path`` and ``fix``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(path, fix) from exc
        raise
