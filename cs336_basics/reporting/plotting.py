"""Learning-curve plots comparing runs: one PNG + SVG, plus a JSON sidecar of exactly what was drawn.

The legend names the config keys that differ between the runs (read from each
run's ``config.toml``), so ``cs336 plot runs/lr_*`` needs no hand-written labels.
The assignment's two required views are ``--x steps`` and ``--x wallclock``.

Choices:
- Diverged runs are drawn up to their last finite value and marked with an
  ``x`` there; the y range is capped a little above the highest *initial*
  value of any run, so one exploding run does not flatten every other curve.
- The sidecar ``<out>.json`` records every series (label, x, y) and the axes;
  tests and reports use it instead of parsing pixels.
- matplotlib's ``Agg`` backend: works headless, never opens a window.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_text
from cs336_basics.reporting.figures import pyplot
from cs336_basics.runs.records import X_FIELDS, Run, differing_keys, expand_run_dirs, load_run, run_labels

X_LABELS = {"steps": "gradient steps", "tokens": "training tokens", "wallclock": "wall-clock time (s)"}


def _y_limits(series: list[dict[str, Any]]) -> tuple[float, float] | None:
    finite = [y for s in series for y in s["y"] if y is not None and math.isfinite(y)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    stable = [s for s in series if not s["diverged"]] or series  # a blow-up must not set the scale
    firsts = [next((y for y in s["y"] if y is not None and math.isfinite(y)), None) for s in stable]
    firsts = [f for f in firsts if f is not None]
    cap = max(firsts) if firsts else high
    top = min(high, cap + 0.1 * (cap - low)) if cap > low else high
    pad = 0.03 * (top - low) if top > low else max(abs(low) * 0.05, 0.05)
    return low - pad, top + pad


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
        return run_dirs[0] / "plots" / stem
    parents = {p.resolve().parent for p in run_dirs}
    parent = parents.pop() if len(parents) == 1 else Path.cwd()
    if parent.name == "runs" and (parent.parent / "sweep.json").exists():
        parent = parent.parent  # a sweep's runs/: keep the plots with the sweep
    return parent / "plots" / stem


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
    out_stem.parent.mkdir(parents=True, exist_ok=True)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    drawn = 0
    for s in series:
        if not s["x"]:
            continue
        ys = [float("nan") if y is None else y for y in s["y"]]
        (line,) = ax.plot(s["x"], ys, marker="." if len(ys) <= 30 else None, label=s["label"], linewidth=1.5)
        drawn += 1
        if s["diverged"]:
            line.set_label(s["label"] + " (diverged)")
    limits = _y_limits(series)
    if limits and not log_y:
        ax.set_ylim(*limits)
    for s, line in zip([s for s in series if s["x"]], list(ax.get_lines())):
        finite = [(xv, yv) for xv, yv in zip(s["x"], s["y"]) if yv is not None]
        if s["diverged"] and finite:
            # mark where the run stopped; above the y range, pin the mark to the top edge
            xv, yv = finite[-1]
            y_mark = min(yv, limits[1]) if limits and not log_y else yv
            ax.plot([xv], [y_mark], marker="x", markersize=11, markeredgewidth=2.5, color=line.get_color(),
                    clip_on=False)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(metric)
    keys = differing_keys(runs)
    ax.set_title(title or f"{metric} vs {X_LABELS[x]}")
    ax.grid(True, alpha=0.3)
    ax.legend(title=("varied: " + ", ".join(keys)) if keys else None, fontsize="small", title_fontsize="small")
    fig.tight_layout()
    png, svg, sidecar = (out_stem.with_suffix(s) for s in (".png", ".svg", ".json"))
    # write to temp names then rename, so a reader never sees half an image
    for path, fmt in ((png, "png"), (svg, "svg")):
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=fmt, dpi=120)
        tmp.replace(path)
    plt.close(fig)
    atomic_write_text(sidecar, json.dumps({"x": x, "metric": metric, "varied": keys, "curves": drawn,
                                           "series": series}, indent=1))
    return [png, svg, sidecar]
