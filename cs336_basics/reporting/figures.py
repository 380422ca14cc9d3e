"""Saving report figures: headless backend, atomic writes, per-metric axis rules, a description of each axes.

Reports embed PNGs; SVG is optional (``formats=("png", "svg")``) because
rendering every figure twice doubles the report's cost, which matters on a
busy CPU machine. Each file is written under a temporary name and renamed, so
a report viewer never sees half an image. Beside each image,
``NAME.axes.json`` records every axes' limits, scales and plotted points, so a
test (or a reader) can check that every logged point is actually visible.

Axis rules (:func:`value_limits`): loss-like metrics may cap a blow-up above the
starting value, so a diverged run does not flatten every other curve; every
other metric (learning rate, gradient norm, throughput) shows its full range.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

from cs336_basics.fileio import atomic_write_text, atomic_writer

matplotlib.use("Agg", force=True)  # headless: works without a display, never opens a window
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    return plt


LOSS_LIKE = ("loss", "bpb", "ppl", "perplexity")


def is_loss_like(metric: str) -> bool:
    return any(word in metric for word in LOSS_LIKE)


def value_limits(metric: str, curves: list[list[float | None]]) -> tuple[float, float, float | None] | None:
    """``(low, high, cap)`` for the y axis of ``metric`` over ``curves`` (None when nothing is finite).

    Loss-like metrics are capped a little above the highest starting value (``cap``, the value above
    which points are deliberately off the chart); every other metric gets its full range (``cap`` None).
    """
    finite = [y for c in curves for y in c if y is not None and math.isfinite(y)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    cap = None
    if is_loss_like(metric):
        firsts = [next((y for y in c if y is not None and math.isfinite(y)), None) for c in curves]
        firsts = [f for f in firsts if f is not None]
        start = max(firsts) if firsts else high
        if high > start > low:
            cap = start + 0.1 * (start - low)
            high = min(high, cap)
    pad = 0.04 * (high - low) if high > low else max(abs(low) * 0.05, 0.05)
    return low - pad, high + pad, cap


def wants_log_scale(metric: str, curves: list[list[float | None]]) -> bool:
    """Log scale for positive quantities that span more than a factor of 30 (gradient norms, early losses)."""
    finite = [y for c in curves for y in c if y is not None and math.isfinite(y)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 30 and not metric.startswith("lr")


def describe_axes(fig, caps: dict[int, float | None] | None = None) -> dict:
    """Limits, scales and plotted points of every axes of ``fig`` (what the ``.axes.json`` sidecar holds)."""
    axes = []
    for i, ax in enumerate(fig.get_axes()):
        lines = []
        for line in ax.get_lines():
            if line.get_transform() != ax.transData:
                continue  # a reference line spanning the axes (axhline/axvline), not data
            xs, ys = line.get_xdata(), line.get_ydata()
            lines.append({"label": line.get_label(),
                          "x": [float(v) for v in xs], "y": [float(v) for v in ys]})
        axes.append({"title": ax.get_title(), "xlim": list(ax.get_xlim()), "ylim": list(ax.get_ylim()),
                     "xscale": ax.get_xscale(), "yscale": ax.get_yscale(), "cap": (caps or {}).get(i),
                     "lines": lines})
    return {"axes": axes}


def save_figure(fig, out_stem: str | Path, dpi: int = 110, formats: tuple[str, ...] = ("png",),
                caps: dict[int, float | None] | None = None) -> list[Path]:
    """Write ``out_stem.<format>`` for each format and ``out_stem.axes.json``, close the figure, return the
    image paths. ``caps`` maps an axes index to the loss cap it was drawn with (see :func:`value_limits`)."""
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_stem.with_suffix(f".{fmt}")
        with atomic_writer(path) as fh:
            fig.savefig(fh, format=fmt, dpi=dpi)
        paths.append(path)
    atomic_write_text(out_stem.with_name(out_stem.name + ".axes.json"), json.dumps(describe_axes(fig, caps)))
    plt.close(fig)
    return paths
