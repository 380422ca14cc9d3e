"""Learning-curve plots comparing runs: one PNG + SVG, plus a JSON sidecar of exactly what was drawn.

The legend names the config keys that differ between the runs (read from each
run's ``config.toml``, ignoring keys a run's own choices leave unused), so
``cs336 plot runs/lr_*`` needs no hand-written labels. With more than three
differing keys the legend names the runs instead and the keys go into a table
(``keys_table``: the sidecar holds it, ``cs336 plot`` prints it, sweep reports
put it under the figure). The assignment's two required views are ``--x steps``
and ``--x wallclock``.

Choices:
- Diverged runs are drawn up to their last finite value and marked with an
  ``x`` there; for loss-like metrics the y range is capped a little above the
  highest *initial* value of any run, so one exploding run does not flatten
  every other curve; other metrics (lr, gradient norm, tokens/s) show their
  full range, on a log scale when they span more than a factor of 30.
- The sidecar ``<out>.json`` records every series (label, x, y); ``<out>.axes.json``
  the limits actually drawn; tests and reports use them instead of parsing pixels.
- matplotlib's ``Agg`` backend: works headless, never opens a window.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_text
from cs336_basics.outputs import check_output_file, json_object_with
from cs336_basics.reporting.figures import pyplot, save_figure, value_limits, wants_log_scale
from cs336_basics.runs.layout import PLOTS, RunDir
from cs336_basics.runs.records import (
    MAX_LEGEND_KEYS,
    X_FIELDS,
    Run,
    config_value,
    differing_keys,
    expand_run_dirs,
    load_run,
    run_labels,
    short_names,
)

X_LABELS = {"steps": "gradient steps", "tokens": "training tokens", "wallclock": "wall-clock time (s)"}


def keys_table(runs: list[Run], keys: list[str]) -> str:
    """A Markdown table of run name -> differing config values: what a legend of run names leaves out."""
    short = short_names(keys)
    lines = ["| run | " + " | ".join(short[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {r.name} | " + " | ".join(config_value(r, k) for k in keys) + " |" for r in runs]
    return "\n".join(lines) + "\n"


def collect_series(runs: list[Run], x: str, metric: str) -> list[dict[str, Any]]:
    """One dict per run with label, xs, ys (non-finite ys as None) and whether it diverged."""
    labels = run_labels(runs)
    series = []
    for run, label in zip(runs, labels):
        xs, ys = run.curve(metric, x)
        series.append({"run": str(run.path), "label": label, "x": xs,
                       "y": [y if math.isfinite(y) else None for y in ys],
                       "diverged": run.summary().diverged or any(not math.isfinite(y) for y in ys)})
    return series


def default_out(run_dirs: list[Path], x: str, metric: str) -> Path:
    """A single run's plots/ folder, or a plots/ folder beside several runs."""
    stem = f"{metric}_vs_{x}"
    if len(run_dirs) == 1:
        return RunDir(run_dirs[0]).plots / stem
    parents = {p.resolve().parent for p in run_dirs}
    parent = parents.pop() if len(parents) == 1 else Path.cwd()
    if parent.name == "runs" and (parent.parent / "sweep.json").exists():
        parent = parent.parent  # a sweep's runs/: keep the plots with the sweep
    return parent / PLOTS / stem


SIDECAR_KEYS = ("x", "metric", "series")
"""Keys of the JSON written beside every plot: how an earlier plot (which a new one replaces) is recognised."""


def check_plot_output(out_stem: Path, inputs: list[Path]) -> None:
    """The PNG, SVG and JSON of ``out_stem`` are new files, or an earlier plot's three (recognised by its JSON)."""
    if out_stem.name in ("", ".", "..") or out_stem.is_dir():
        raise UserError(f"--out {out_stem} is a directory; give a path without suffix, e.g. --out "
                        f"{out_stem / 'val_loss_vs_steps'}")
    sidecar = out_stem.with_suffix(".json")
    earlier = json_object_with(sidecar, SIDECAR_KEYS)
    for suffix in (".png", ".svg", ".json"):
        check_output_file(out_stem.with_suffix(suffix), command="cs336 plot", is_previous=lambda _: earlier,
                          inputs=inputs)


def plot_runs(run_dirs: list[str | Path], x: str = "steps", metric: str = "val_loss",
              out: str | Path | None = None, *, title: str | None = None, log_y: bool = False) -> list[Path]:
    """Plot ``metric`` against ``x`` for each run; returns [PNG, SVG, JSON sidecar] paths.

    ``out`` is a path without suffix; the directory is created. Raises UserError
    when no run logged the metric (naming the metrics that are there).
    """
    if x not in X_FIELDS:
        raise UserError(f"unknown x axis {x!r}; choose one of {', '.join(X_FIELDS)}")
    paths = expand_run_dirs(list(run_dirs))
    runs = [load_run(p) for p in paths]
    series = collect_series(runs, x, metric)
    if not any(s["x"] for s in series):
        available = sorted(set().union(*(r.metrics_available() for r in runs)))
        hint = f" (logged metrics: {', '.join(available)})" if available else " (no metrics logged yet)"
        raise UserError(f"no run has '{metric}' values to plot{hint}; choose one with --metric")
    out_stem = Path(out) if out is not None else default_out(paths, x, metric)
    if out_stem.suffix in (".png", ".svg", ".json"):
        out_stem = out_stem.with_suffix("")
    check_plot_output(out_stem, paths)
    out_stem.parent.mkdir(parents=True, exist_ok=True)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    drawn = [s for s in series if s["x"]]
    for s in drawn:
        ys = [float("nan") if y is None else y for y in s["y"]]
        label = s["label"] + (" (diverged)" if s["diverged"] else "")
        ax.plot(s["x"], ys, marker="." if len(ys) <= 30 else None, label=label, linewidth=1.5)
    log_y = log_y or wants_log_scale(metric, [s["y"] for s in drawn])
    limits = None if log_y else value_limits(metric, [s["y"] for s in drawn])
    if limits is not None:
        ax.set_ylim(limits[0], limits[1])
    for s, line in zip(drawn, list(ax.get_lines())):
        finite = [(xv, yv) for xv, yv in zip(s["x"], s["y"]) if yv is not None]
        if s["diverged"] and finite:
            # mark where the run stopped; above a loss cap, pin the mark to the top edge
            xv, yv = finite[-1]
            y_mark = min(yv, limits[1]) if limits is not None else yv
            ax.plot([xv], [y_mark], marker="x", markersize=11, markeredgewidth=2.5, color=line.get_color(),
                    clip_on=False, label="_stopped")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(metric)
    keys = differing_keys(runs)
    named_by_run = len(keys) > MAX_LEGEND_KEYS
    ax.set_title(title or f"{metric} vs {X_LABELS[x]}")
    ax.grid(True, alpha=0.3)
    legend_title = None if named_by_run or not keys else "varied: " + ", ".join(short_names(keys).values())
    ax.legend(title=legend_title, fontsize="small", title_fontsize="small", ncol=2 if len(drawn) > 6 else 1)
    fig.tight_layout()
    png, svg, sidecar = (out_stem.with_suffix(s) for s in (".png", ".svg", ".json"))
    save_figure(fig, out_stem, dpi=120, formats=("png", "svg"), caps={0: limits[2] if limits else None})
    table = keys_table(runs, keys) if named_by_run else None
    atomic_write_text(sidecar, json.dumps({"x": x, "metric": metric, "varied": keys, "curves": len(drawn),
                                           "series": series, "keys_table": table}, indent=1))
    return [png, svg, sidecar]
