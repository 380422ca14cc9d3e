"""Run and dataset directory conventions shared by every command.

A run directory ``runs/NAME/`` holds::

    config.toml        the resolved RunConfig (every default spelled out)
    metrics.jsonl      one JSON object per logged event: step, tokens, wallclock, ...
    checkpoints/       step_000100.pt ..., best.pt, latest.pt
    samples/           generated text during and after training
    plots/             PNG/SVG learning curves

A dataset directory ``data/NAME/`` keeps the tokenizer next to the token files,
as in the original workflow::

    train.txt valid.txt          raw text (or the published file names)
    tokenizer/                   vocab.json, merges.txt, tokenizer.json, meta.json
    train.npy valid.npy          token ids, with train.npy.manifest.json beside each
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def create(self) -> "RunDir":
        """Make the directory tree (idempotent); a clear error when the location is not writable."""
        try:
            for sub in (self.root, self.checkpoints, self.samples, self.plots):
                sub.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run directory {self.root}: {exc.strerror}; choose another --set train.runs_dir") from exc
        return self

    def write_config(self, cfg: Any) -> Path:
        from cs336_basics.config import dump_config

        return dump_config(cfg, self.config_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)


@dataclass(frozen=True)
class DatasetDir:
    """Paths inside one dataset directory."""

    root: Path

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    def tokens(self, split: str) -> Path:
        return self.root / f"{split}.npy"

    def text(self, split: str) -> Path:
        return self.root / f"{split}.txt"


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
