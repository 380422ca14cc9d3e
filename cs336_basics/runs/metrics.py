"""``metrics.jsonl``: the append-only record of a run, one JSON object per event.

Every event carries ``event``, ``time`` (Unix seconds), ``wallclock`` (seconds
since the run started, continued across resumes), ``step`` and ``tokens``, plus
its own fields. Each line is flushed as soon as it is written, so a crash loses
nothing, and a reader tolerates a torn last line. JSON has no NaN or infinity:
non-finite numbers are stored as the strings ``"nan"``/``"inf"``/``"-inf"``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


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
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": time.time(), **fields}
        record.setdefault("wallclock", time.time() - self.start)
        self._fh.write(json.dumps(_finite_or_none(record), default=_json_default) + "\n")
        self._fh.flush()
        return record

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file, tolerating a torn last line (a crash mid-write)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
