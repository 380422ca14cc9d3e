"""``metrics.jsonl``: the append-only record of a run, one JSON object per event.

Every event carries ``event``, ``time`` (Unix seconds), ``wallclock`` (seconds
since the run started, continued across resumes), ``step`` and ``tokens``, plus
its own fields. Each line is flushed as soon as it is written, so a crash loses
nothing. JSON has no NaN or infinity: non-finite numbers are stored as the
strings ``"nan"``/``"inf"``/``"-inf"``.

A reader tolerates damage: a line that is not a JSON object (a torn write, a
stray byte that is not UTF-8) is skipped with one warning naming its line
number, so reports, plots and ``--resume`` keep working; an unfinished last line
(a run writing it right now) is skipped silently. A log reopened after a torn
last line starts its next record on a fresh line.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from cs336_basics.errors import disk_full_is_user_error, is_disk_full
from cs336_basics.progress import warn


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite_or_none(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: record them as strings so the file stays valid JSON for every reader."""
    out = {}
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[key] = value
    return out


class MetricsLog:
    """Append-only ``metrics.jsonl``: each event is flushed at once so a crash loses nothing."""

    def __init__(self, path: str | Path, start_time: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.start = time.time() if start_time is None else start_time
        torn = _ends_mid_line(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")
        if torn:  # a crash cut the last record short: the next one must not be glued to it
            self._write("\n")

    def _write(self, text: str) -> None:
        with disk_full_is_user_error(self.path, "free space and rerun with --resume auto"):
            self._fh.write(text)
            self._fh.flush()

    def log(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": time.time(), **fields}
        record.setdefault("wallclock", time.time() - self.start)
        self._write(json.dumps(_finite_or_none(record), default=_json_default) + "\n")
        return record

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError as exc:  # the write that found the disk full has already been reported
                if not is_disk_full(exc):
                    raise

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_WARNED: set[tuple[str, tuple[int, ...]]] = set()
"""(file, skipped line numbers) already reported by :func:`read_jsonl` in this process."""


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` exists and its last byte is not a newline."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return False
            fh.seek(-1, 2)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _line_numbers(numbers: list[int], shown: int = 5) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, skipping (with one warning naming the line numbers) every line that is
    not one; an unfinished last line (no newline yet: a writer is at it, or a crash cut it) is skipped silently."""
    path = Path(path)
    if not path.exists():
        return []
    records, skipped = [], []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif raw.endswith(b"\n"):
                skipped.append(number)
    key = (str(path.resolve()), tuple(skipped))
    if skipped and key not in _WARNED:  # a command reading the file several times says it once
        _WARNED.add(key)
        warn(f"{path}: skipped line{'s' if len(skipped) > 1 else ''} {_line_numbers(skipped)}, which "
             f"{'are' if len(skipped) > 1 else 'is'} not a JSON record (a torn or damaged write); "
             "the other records are read")
    return records
