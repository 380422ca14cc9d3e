"""Reading finished (or running, or crashed) run directories: curves, summaries, config differences.

Everything here reads only ``config.toml`` and ``metrics.jsonl`` (the run
directory contract), so it works on runs made by ``cs336 train``, by a sweep,
or by hand, and on runs still in progress (a torn last line is ignored).

Metric values that were non-finite are stored as the strings ``"nan"``/``"inf"``
in metrics.jsonl (JSON has no NaN); :func:`as_float` turns them back.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_basics.config import unused_fields
from cs336_basics.errors import UserError
from cs336_basics.runs.layout import RunDir
from cs336_basics.runs.metrics import DIVERGED, INTERRUPTED, Event, Field, read_jsonl

# The plot/table x axes and the metrics.jsonl field each one reads.
X_FIELDS = {"steps": Field.STEP, "tokens": Field.TOKENS, "wallclock": Field.WALLCLOCK}

# Keys that differ between runs without changing what was trained.
IGNORED_KEYS = ("train.run_name", "train.runs_dir", "train.checkpoint", "logging.")


def as_float(value: Any) -> float | None:
    """A metrics.jsonl value as a float (``"nan"``/``"inf"`` strings included); None if not numeric."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"model.d_model": 512, ...}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out


@dataclass
class RunSummary:
    """Final numbers of one run, read from its metrics.jsonl."""

    steps: int | None = None
    tokens: int | None = None
    wallclock: float | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    diverged: bool = False
    finished: bool = False
    stop_reason: str | None = None


@dataclass
class Run:
    """One run directory loaded: its flattened config and its metric records."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def curve(self, metric: str, x: str = "steps", event: str | None = None) -> tuple[list[float], list[float]]:
        """(xs, ys) for every record of ``event`` carrying ``metric`` (non-finite ys kept as nan/inf).

        ``event`` defaults to the one that draws the metric's curve (:func:`curve_event`): the
        validation curve is the periodic evaluations only, never the final whole-file pass (a
        different quantity when evaluations use a subset, drawn as its own marker).
        """
        if x not in X_FIELDS:
            raise UserError(f"unknown x axis {x!r}; choose one of {', '.join(X_FIELDS)}")
        field_name = X_FIELDS[x]
        event = event or curve_event(metric)
        xs, ys = [], []
        for record in self.records:
            if metric not in record or record.get(Field.EVENT) != event:
                continue
            xv, yv = as_float(record.get(field_name)), as_float(record[metric])
            if xv is None or yv is None:
                continue
            xs.append(xv)
            ys.append(yv)
        return xs, ys

    def metrics_available(self) -> set[str]:
        names: set[str] = set()
        for record in self.records:
            names.update(k for k, v in record.items() if as_float(v) is not None)
        return names - {Field.TIME, Field.STEP, Field.TOKENS, Field.WALLCLOCK}

    def summary(self) -> RunSummary:
        return summarize_records(self.records)


CURVE_EVENTS = {Event.EVAL: ("val_",), Event.SAMPLES: ("distinct_", "repetition_", "eos_rate", "mean_tokens",
                                                      "in_vocab_rate", "reference_ppl")}


def curve_event(metric: str) -> str:
    """The metrics.jsonl event whose records draw ``metric``'s curve (train, eval or samples)."""
    for event, prefixes in CURVE_EVENTS.items():
        if metric.startswith(prefixes):
            return event
    return Event.TRAIN


def relevant_config(config: dict[str, Any]) -> dict[str, Any]:
    """A flattened config without the keys its own choices make unused (MoE sizes of a dense model, the RoPE
    base of a model without RoPE, a schedule's parameters under another schedule, Muon's settings under AdamW;
    the table is :data:`cs336_basics.config.run.CONDITIONAL_FIELDS`), so runs are not told apart by settings
    that changed nothing."""
    unused = unused_fields(config)
    return {k: v for k, v in config.items() if k not in unused}


def summarize_records(records: list[dict[str, Any]]) -> RunSummary:
    """Final/best losses, extent and divergence of a run from its metric records."""
    s = RunSummary()
    val_losses: list[float] = []
    for record in records:
        step, tokens = as_float(record.get(Field.STEP)), as_float(record.get(Field.TOKENS))
        wall = as_float(record.get(Field.WALLCLOCK))
        if step is not None:
            s.steps = max(s.steps or 0, int(step))
        if tokens is not None:
            s.tokens = max(s.tokens or 0, int(tokens))
        if wall is not None and record.get(Field.EVENT) in (Event.TRAIN, Event.EVAL, Event.END):
            s.wallclock = max(s.wallclock or 0.0, wall)
        event = record.get(Field.EVENT)
        if event == Event.TRAIN and Field.LOSS in record:
            loss = as_float(record[Field.LOSS])
            s.final_train_loss = loss
            if loss is not None and not math.isfinite(loss):
                s.diverged = True
        elif event == Event.EVAL and Field.VAL_LOSS in record:
            loss = as_float(record[Field.VAL_LOSS])
            if loss is not None:
                s.final_val_loss = loss
                if math.isfinite(loss):
                    val_losses.append(loss)
                else:
                    s.diverged = True
        elif event == Event.END:
            s.stop_reason = record.get(Field.STOP_REASON) or record.get("reason")
            # an interrupted run logs "end" too, but it is not finished: a sweep resumes it
            s.finished = s.stop_reason not in INTERRUPTED
            if record.get(Field.DIVERGED):
                s.diverged = True
            for key in (Field.FINAL_VAL_LOSS, Field.VAL_LOSS):
                value = as_float(record.get(key))
                if value is not None:
                    s.final_val_loss = value
                    if math.isfinite(value):
                        val_losses.append(value)
                    break
    if s.stop_reason in DIVERGED:
        s.diverged = True
    s.best_val_loss = min(val_losses) if val_losses else None
    return s


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and RunDir(path).exists()


def load_run(path: str | Path) -> Run:
    """Load a run directory; a one-line error when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory not found: {path}")
    if not is_run_dir(path):
        raise UserError(f"{path} is not a run directory (no metrics.jsonl or config.toml); give runs/NAME")
    run = RunDir(path)
    config: dict[str, Any] = {}
    if run.config_path.exists():
        try:
            config = flatten(tomllib.loads(run.config_path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"cannot parse {run.config_path}: {exc}") from exc
    return Run(path=path, config=config, records=read_jsonl(run.metrics_path))


def _sweep_order(folder: Path):
    """Sort key: a sweep directory's runs in the sweep's own order (sweep.json), others alphabetically after."""
    order: dict[str, int] = {}
    spec = folder / "sweep.json"
    if spec.is_file():
        try:
            order = {r["name"]: i for i, r in enumerate(json.loads(spec.read_text(encoding="utf-8")).get("runs", []))}
        except (json.JSONDecodeError, KeyError, TypeError):
            order = {}
    return lambda p: (order.get(p.name, len(order)), p.name)


def expand_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Accept run directories and directories of runs (a sweep dir or runs/), in the given order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_run_dir(path):
            out.append(path)
            continue
        if not path.is_dir():
            raise UserError(f"run directory not found: {path}")
        inner = path / "runs" if (path / "runs").is_dir() else path
        children = sorted(p for p in inner.iterdir() if is_run_dir(p))
        children.sort(key=_sweep_order(path))
        if not children:
            raise UserError(f"{path} holds no run directories (each needs metrics.jsonl or config.toml)")
        out.extend(children)
    return out


def differing_keys(runs: list[Run]) -> list[str]:
    """Config keys whose values are not the same in every run (ignoring names and logging)."""
    if len(runs) < 2:
        return []
    configs = [relevant_config(r.config) for r in runs]
    keys = sorted(set().union(*configs))
    missing = object()
    out = []
    for key in keys:
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in IGNORED_KEYS):
            continue
        # compared only between the runs that use the key (a dense run has no say on the number of experts)
        values = [c.get(key, missing) for c, r in zip(configs, runs) if key in c or key not in r.config]
        if any(v != values[0] for v in values[1:]):
            out.append(key)
    return out


def short_names(keys: list[str]) -> dict[str, str]:
    """Last dotted component of each key unless two keys share it."""
    lasts = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (last if lasts.count(last) == 1 else k) for k, last in zip(keys, lasts)}


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


MAX_LEGEND_KEYS = 3
"""Beyond this many differing keys a legend names runs, and the keys go into a table beside the figure."""


def config_value(run: Run, key: str) -> str:
    """A config value for legends and tables: ``default`` for a None setting (TOML cannot store it),
    ``unused`` for a key this run's own choices ignore (a dense model's MoE sizes)."""
    if key in run.config and key not in relevant_config(run.config):
        return "unused"
    return format_value(run.config[key]) if key in run.config else "default"


def run_labels(runs: list[Run]) -> list[str]:
    """Legend labels naming what differs between the runs: the run directory name if nothing does, or if more
    than :data:`MAX_LEGEND_KEYS` keys do (a legend listing them all would hide the curves)."""
    keys = differing_keys(runs)
    if not keys or len(keys) > MAX_LEGEND_KEYS:
        return [r.name for r in runs]
    short = short_names(keys)
    labels = []
    for run in runs:
        relevant = relevant_config(run.config)
        shown = [k for k in keys if k in relevant or k not in run.config]
        labels.append(", ".join(f"{short[k]}={config_value(run, k)}" for k in shown) or run.name)
    if len(set(labels)) != len(labels):  # e.g. only ignored keys differ
        labels = [f"{r.name}: {label}" for r, label in zip(runs, labels)]
    return labels
