"""Markdown output for experiments: a table of final metrics and a one-page sweep report.

``final_metrics_table`` is what ``cs336 plot --table`` prints; ``write_sweep_report``
is what ``cs336 report SWEEP_DIR`` (and ``cs336 sweep`` at its end) writes:
``SWEEP_DIR/report.md`` with the sweep's definition, the learning-curve plots
(validation loss vs steps, vs wall-clock and vs tokens; training loss vs steps)
and the results table, including runs that diverged or failed before logging
anything (those come from ``results.jsonl``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_text
from cs336_basics.outputs import check_output_file, starts_with
from cs336_basics.reporting.plotting import plot_runs
from cs336_basics.runs.layout import PLOTS, REPORT_FILE
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.runs.records import (
    MAX_LEGEND_KEYS,
    Run,
    config_value,
    differing_keys,
    expand_run_dirs,
    format_value,
    load_run,
    short_names,
)

RESULTS_FILE = "results.jsonl"
SPEC_FILE = "sweep.json"


def _loss(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def _status(run: Run, recorded: dict[str, Any] | None) -> str:
    if recorded and recorded.get("status"):
        return str(recorded["status"])
    summary = run.summary()
    if summary.diverged:
        return "diverged"
    return "finished" if summary.finished else "running/incomplete"


def metrics_rows(runs: list[Run], results: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the final-metrics table (one row per run)."""
    keys = differing_keys(runs)
    short = short_names(keys)
    compact = len(keys) > MAX_LEGEND_KEYS  # one "changed" column instead of a column per key
    key_header = ["changed"] if compact else [short[k] for k in keys]
    header = ["run"] + key_header + ["final val loss", "best val loss", "final train loss", "steps", "tokens",
                                     "wall-clock (s)", "status"]
    rows = []
    for run in runs:
        s = run.summary()
        values = [config_value(run, k) for k in keys]
        changed = [", ".join(f"{short[k]}={v}" for k, v in zip(keys, values) if v != "unused")] if compact else values
        rows.append([run.name] + changed + [
            _loss(s.final_val_loss), _loss(s.best_val_loss), _loss(s.final_train_loss), format_value(s.steps),
            format_value(s.tokens), "-" if s.wallclock is None else f"{s.wallclock:.1f}",
            _status(run, (results or {}).get(run.name))])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def final_metrics_table(run_dirs: list[str | Path]) -> str:
    """A Markdown table: run, the differing config keys, steps, tokens, wall-clock, losses, status."""
    runs = [load_run(p) for p in expand_run_dirs(list(run_dirs))]
    return markdown_table(*metrics_rows(runs))


def read_results(sweep_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The last results.jsonl line of each run name."""
    return {r["name"]: r for r in read_jsonl(Path(sweep_dir) / RESULTS_FILE) if "name" in r}


def is_sweep_dir(path: str | Path) -> bool:
    """A directory written by ``cs336 sweep`` (``cs336 report`` uses this to pick the sweep report)."""
    return (Path(path) / SPEC_FILE).is_file()


def _spec_section(spec: dict[str, Any]) -> list[str]:
    lines = ["## Definition", ""]
    lines.append(f"- base config: `{spec.get('base_config') or '(defaults)'}`")
    if spec.get("overrides"):
        lines.append("- every run: " + ", ".join(f"`{o}`" for o in spec["overrides"]))
    for key, values in spec.get("grid", []):
        lines.append(f"- grid `{key}`: " + ", ".join(str(v) for v in values))
    for ablation in spec.get("ablations", []):
        sets = ", ".join(f"`{s}`" for s in ablation.get("set", [])) or "(base)"
        lines.append(f"- ablation **{ablation['name']}**: {sets}")
    if spec.get("batch_rule", "none") != "none" or spec.get("fixed_tokens"):
        lines.append(f"- batch-size rule: LR scaling `{spec.get('batch_rule')}`, fixed tokens: {bool(spec.get('fixed_tokens'))}")
    if spec.get("command"):
        lines.append(f"- command: `{spec['command']}`")
    return lines + [""]


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``SWEEP_DIR/report.md`` (plots under ``SWEEP_DIR/plots/``) and return its path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"sweep directory not found: {sweep_dir}")
    check_output_file(sweep_dir / REPORT_FILE, command="cs336 sweep", is_previous=starts_with("# Sweep "),
                      flag="the sweep report")
    spec_path = sweep_dir / SPEC_FILE
    spec = json.loads(spec_path.read_text(encoding="utf-8")) if spec_path.exists() else {}
    results = read_results(sweep_dir)
    run_root = sweep_dir / "runs" if (sweep_dir / "runs").is_dir() else sweep_dir
    runs = [load_run(p) for p in expand_run_dirs([sweep_dir])] if any(run_root.iterdir()) else []
    if not runs and not results:
        raise UserError(f"{sweep_dir} holds no runs yet; run 'cs336 sweep' first")

    lines = [f"# Sweep {spec.get('name', sweep_dir.name)}", "", "## Results", ""]
    if runs:
        header, rows = metrics_rows(runs, results)
        lines.append(markdown_table(header, rows))
    missing = [r for name, r in results.items() if name not in {run.name for run in runs}]
    if missing:
        lines += ["Runs that left no metrics:", ""]
        lines += [f"- {r['name']}: {r.get('status')} {r.get('error', '')}".rstrip() for r in missing]
        lines.append("")
    finite = [(run.summary().best_val_loss, run.name) for run in runs if run.summary().best_val_loss is not None]
    if finite:
        best, name = min(finite)
        lines += [f"Best validation loss: **{best:.4f}** ({name}).", ""]
    lines += _spec_section(spec)
    lines += ["## Learning curves", ""]
    views = [("val_loss", "steps"), ("val_loss", "wallclock"), ("val_loss", "tokens"), ("loss", "steps")]
    for metric, x in views:
        if not any(run.curve(metric, x)[0] for run in runs):
            continue
        stem = sweep_dir / PLOTS / f"{metric}_vs_{x}"
        png, _, sidecar = plot_runs([r.path for r in runs], x=x, metric=metric, out=stem)
        lines += [f"![{metric} vs {x}]({png.relative_to(sweep_dir).as_posix()})", ""]
        table = json.loads(sidecar.read_text(encoding="utf-8")).get("keys_table")
        if table:
            lines += ["Runs in the legend:", "", table]
    diverged = [run.name for run in runs if _status(run, results.get(run.name)) == "diverged"]
    if diverged:
        lines += ["Diverged (stopped early, marked x on the plots): " + ", ".join(diverged) + ".", ""]
    out = sweep_dir / REPORT_FILE
    atomic_write_text(out, "\n".join(lines))
    return out
