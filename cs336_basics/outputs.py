"""Where a command may write: each output is checked before any work, so no command deletes what it did not create.

Every command that writes names its output (a directory or a file), its inputs, and how a
previous output of its own looks. The checks, all made before the command reads or computes
anything expensive:

- the output is not the current directory or one of its parents;
- it does not hold an input of the command (the text, the checkpoint, the run directory, the tokenizer read);
- an existing non-empty directory is a previous output of the same command (:class:`DirOutput`
  recognises one by its marker files). Replacing one needs the command's ``--force``, and a
  directory holding a file the command does not write is refused, naming that file, because
  replacing it would delete that file;
- an existing file is a previous output of the same command, never an input, never a directory.

Commands without natural marker files (export, quickstart) write :data:`MARKER` into their output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_text, foreign_entries

MARKER = ".cs336-output.json"
"""Written into a directory output by the commands whose own files do not identify it."""


def marker_command(directory: Path) -> str | None:
    """The command recorded in ``directory``'s :data:`MARKER` (None: no readable marker)."""
    try:
        data = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("command") if isinstance(data, dict) else None


def write_marker(directory: Path, command: str, **details) -> Path:
    """Mark ``directory`` as the output of ``command`` (with ``details`` for whoever looks)."""
    return atomic_write_text(Path(directory) / MARKER, json.dumps({"command": command, **details}, indent=1) + "\n")


def has_marker(command: str) -> Callable[[Path], bool]:
    return lambda directory: marker_command(directory) == command


def has_files(*names: str) -> Callable[[Path], bool]:
    return lambda directory: all((Path(directory) / name).is_file() for name in names)


@dataclass(frozen=True)
class DirOutput:
    """A kind of directory output: who writes it, how a previous one is recognised, and what may replace it."""

    command: str
    """The command that writes it, as the user types it (``cs336 export``)."""
    what: str
    """What it is, for messages (``export folder``)."""
    is_previous: Callable[[Path], bool]
    """True for a directory this command wrote before."""
    owned: frozenset[str] | None = None
    """The names the command writes at its top: the files a replacement deletes. None: never replaced as a
    whole; a rerun writes into it (a sweep continues, a quickstart reruns)."""


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _holds(outer: Path, inner: Path) -> bool:
    return outer == inner or outer in inner.parents


def _another(flag: str, fix: str | None) -> str:
    return fix or f"choose another {flag}"


def _shown(entries: list[Path]) -> str:
    """The entry to name in a message: the first one that is not hidden, else the first."""
    visible = [e for e in entries if not e.name.startswith(".")]
    return (visible or entries)[0].name


def check_not_cwd(out: str | Path, flag: str = "--out", fix: str | None = None) -> None:
    """Refuse the current directory and its parents as an output: replacing one would remove the user's work."""
    here, target = Path.cwd().resolve(), _resolved(out)
    if _holds(target, here):
        where = "the current directory" if target == here else "a parent of the current directory"
        raise UserError(f"{flag} {out} is {where}; a command never writes over it: "
                        f"{_another(flag, fix or 'choose a new folder')}")


def check_holds_no_input(out: str | Path, inputs: Iterable[str | Path | None], flag: str = "--out",
                         fix: str | None = None) -> None:
    """Refuse an output that is, or holds, one of ``inputs``."""
    target = _resolved(out)
    for given in inputs:
        if given is not None and _holds(target, _resolved(given)):
            what = "is an input" if target == _resolved(given) else f"holds {given}, an input"
            raise UserError(f"{flag} {out} {what} of this command; {fix or f'choose another {flag} outside it'}")


def check_output_dir(out: str | Path, kind: DirOutput, *, inputs: Iterable[str | Path | None] = (),
                     force: bool = False, flag: str = "--out", fix: str | None = None) -> bool:
    """Check a directory output before any work; True when it holds a previous output that will be replaced.

    ``force`` is the command's ``--force``; for a kind with ``owned=None`` a previous output is continued,
    with or without it. ``flag`` names the output in messages, ``fix`` replaces "choose another FLAG".
    """
    check_not_cwd(out, flag, fix)
    check_holds_no_input(out, inputs, flag, fix)
    path = Path(out)
    if not path.exists():
        return False
    if not path.is_dir():
        raise UserError(f"{flag} {out} exists and is not a directory; {_another(flag, fix)}")
    entries = sorted(path.iterdir())
    if not entries:
        return False
    if not kind.is_previous(path):
        raise UserError(f"{flag} {out} is a non-empty directory that {kind.command} did not write (it holds "
                        f"{_shown(entries)}); {_another(flag, fix)} (a new or empty folder)")
    if kind.owned is None:
        return True
    if not force:
        raise UserError(f"{flag} {out} holds a previous {kind.what}; add --force to replace it, or "
                        f"{_another(flag, fix)}")
    foreign = foreign_entries(path, kind.owned)
    if foreign:
        raise UserError(f"{flag} {out} holds {foreign[0].name}, which {kind.command} did not write; --force replaces "
                        f"only a {kind.what} it wrote: move {foreign[0].name} away or {_another(flag, fix)}")
    return True


def check_output_file(out: str | Path, *, command: str, is_previous: Callable[[Path], bool],
                      inputs: Iterable[str | Path | None] = (), force: bool | None = None, flag: str = "--out",
                      example: str = "out", why: str = "") -> bool:
    """Check a file output before any work; True when it exists (a previous output of ``command``).

    ``force=None``: the command has no ``--force`` and overwrites its own previous output; ``False``:
    replacing one needs ``--force``. ``why`` follows "was not written by COMMAND" in the message.
    """
    path = Path(out)
    target = _resolved(path)
    if path.is_dir() or target == Path.cwd().resolve():
        raise UserError(f"{flag} {out} is a directory; give a file name, e.g. {flag} {path / example}")
    for given in inputs:
        if given is not None and target == _resolved(given):
            raise UserError(f"{flag} {out} is an input of this command; choose another {flag}")
    if not (path.exists() or path.is_symlink()):
        return False
    if not path.is_file() or not is_previous(path):
        raise UserError(f"{flag} {out} exists and was not written by {command}{why}; choose another {flag} "
                        "(or move that file away)")
    if force is False:
        raise UserError(f"{flag} {out} holds a previous output of {command}; add --force to replace it, or "
                        f"choose another {flag}")
    return True


def json_object_with(path: Path, keys: Collection[str], limit: int = 64 << 20) -> bool:
    """True when ``path`` is a JSON object holding every key in ``keys`` (how JSON outputs are recognised)."""
    try:
        if os.path.getsize(path) > limit:
            return False
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and all(key in data for key in keys)


def starts_with(prefix: str) -> Callable[[Path], bool]:
    """A recogniser for text outputs whose first line starts with ``prefix`` (a report's heading)."""
    def check(path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                return fh.read(len(prefix.encode("utf-8"))) == prefix.encode("utf-8")
        except OSError:
            return False
    return check
