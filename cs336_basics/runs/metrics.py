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

The names in the file are spelled here and nowhere else: :class:`Event` (the
``event`` of a record), :class:`Field` (the fields more than one module writes
or reads), :class:`StopReason` (the ``stop_reason`` of the ``end`` record, with
the exit code each one means) and :func:`eval_fields` (the one place the fields
of an evaluation record are listed). They are ``str`` enums, so a record, a
console line and a comparison with a string read from the file all see the
plain value (``"eval"``, ``"time_budget"``).
"""

from __future__ import annotations

import json
import math
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from cs336_basics.errors import ExitCode, disk_full_is_user_error, is_disk_full
from cs336_basics.progress import warn


class Event(StrEnum):
    """The ``event`` of a metrics.jsonl record (docs/training.md describes each one's fields)."""

    START = "start"
    RESUME = "resume"
    TRAIN = "train"
    """Every ``logging.log_interval`` steps: the window's mean loss, lr, gradient norm, tokens/s."""
    EVAL = "eval"
    """A periodic validation pass (a fixed subset of the file with ``train.eval_tokens``)."""
    EVAL_FULL = "eval_full"
    """The end-of-run pass over the whole validation file (with ``train.eval_tokens`` set)."""
    SAMPLES = "samples"
    SAMPLES_ERROR = "samples_error"
    NONFINITE = "nonfinite"
    """A step whose loss or gradient was not finite: its update was skipped."""
    NONFINITE_WEIGHTS = "nonfinite_weights"
    NONFINITE_VALIDATION = "nonfinite_validation"
    END = "end"


class Field(StrEnum):
    """Field names of metrics.jsonl records that more than one module writes or reads."""

    EVENT = "event"
    TIME = "time"
    STEP = "step"
    TOKENS = "tokens"
    WALLCLOCK = "wallclock"
    LOSS = "loss"
    LR = "lr"
    GRAD_NORM = "grad_norm"
    TOKENS_PER_S = "tokens_per_s"
    MFU = "mfu"
    AUX_LOSS = "aux_loss"
    SKIPPED_STEPS = "skipped_steps"
    IN_A_ROW = "in_a_row"
    VAL_LOSS = "val_loss"
    VAL_PPL = "val_ppl"
    VAL_BPB = "val_bpb"
    VAL_TOP1 = "val_top1"
    VAL_TOP5 = "val_top5"
    VAL_TOKENS = "val_tokens"
    EVAL_SECONDS = "eval_seconds"
    BEST_VAL_LOSS = "best_val_loss"
    FINAL_VAL_LOSS = "final_val_loss"
    FULL_VAL_LOSS = "full_val_loss"
    STOP_REASON = "stop_reason"
    DIVERGED = "diverged"


BOOKKEEPING = (Field.EVENT, Field.TIME, Field.STEP, Field.WALLCLOCK, Field.TOKENS)
"""What every record carries besides its own fields."""


class StopReason(StrEnum):
    """Why a run ended: the ``stop_reason`` of its ``end`` record and of ``TrainResult``."""

    COMPLETED = "completed"
    TIME_BUDGET = "time_budget"
    """``train.max_minutes`` ended the run before the steps asked for, or before its planned schedule ended."""
    STOP_AT_STEP = "stop_at_step"
    SIGINT = "sigint"
    SIGTERM = "sigterm"
    DIVERGED_NONFINITE = "diverged_nonfinite"
    """Too many non-finite losses/gradients in a row, non-finite weights, or a non-finite validation loss."""
    DIVERGED_LOSS = "diverged_loss"
    """A training loss far above the run's own start (:mod:`cs336_basics.training.divergence`)."""

    @property
    def diverged(self) -> bool:
        return self in DIVERGED

    @property
    def interrupted(self) -> bool:
        """Stopped from outside (a signal): resumable, not a result."""
        return self in INTERRUPTED

    @property
    def reached_end(self) -> bool:
        """The run trained to its planned end: it gets its final evaluation, checkpoint and weights file."""
        return self in (StopReason.COMPLETED, StopReason.TIME_BUDGET)

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.SIGINT if self is StopReason.SIGINT else ExitCode.SIGTERM
        return ExitCode.DIVERGED if self.diverged else ExitCode.OK


DIVERGED = (StopReason.DIVERGED_NONFINITE, StopReason.DIVERGED_LOSS)
"""Stop reasons of runs that diverged (tuples: a value read from a file may be any JSON, hashable or not)."""
INTERRUPTED = (StopReason.SIGINT, StopReason.SIGTERM)
"""Stop reasons of runs stopped from outside, which a sweep resumes rather than records."""


def eval_fields(event: Event, result: Any, best_val_loss: float | None = None) -> dict[str, Any]:
    """The fields of an ``eval`` or ``eval_full`` record from an evaluation result
    (:class:`~cs336_basics.evaluation.EvalResult`); ``eval`` also carries the best loss so far."""
    fields: dict[str, Any] = {Field.VAL_LOSS: result.loss, Field.VAL_PPL: result.perplexity,
                              Field.VAL_BPB: result.bits_per_byte, Field.VAL_TOP1: result.top1,
                              Field.VAL_TOP5: result.top5, Field.VAL_TOKENS: result.num_tokens}
    if event == Event.EVAL:
        fields[Field.BEST_VAL_LOSS] = best_val_loss
    fields[Field.EVAL_SECONDS] = result.seconds
    return fields


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
        record = {Field.EVENT: event, Field.TIME: time.time(), **fields}
        record.setdefault(Field.WALLCLOCK, time.time() - self.start)
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
