"""Saving the evaluation package's matplotlib figures: headless backend, atomic writes.

Reports embed PNGs; SVG is optional (``formats=("png", "svg")``) because
rendering every figure twice doubles the report's cost, which matters on a
busy CPU machine. Each file is written under a temporary name and renamed, so
a report viewer never sees half an image.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=True)  # headless: works without a display, never opens a window
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    return plt


def save_figure(fig, out_stem: str | Path, dpi: int = 110, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write ``out_stem.<format>`` for each format (directories created), close the figure, return the paths."""
    plt = pyplot()
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_stem.with_suffix(f".{fmt}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=fmt, dpi=dpi)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    return paths
