"""Lets a benchmark script run as a file (``python benchmarks/bench_model.py --quick``).

Python puts the script's own folder (``benchmarks/``) on ``sys.path``, not the repository,
so ``benchmarks`` (and, without an install, ``cs336_basics``) would not import. A script
run that way imports this module first, as the top-level module ``standalone`` of that
folder, and it puts the repository root first on ``sys.path``: the one place the
benchmarks change the import path. Run as a module (``python -m benchmarks.bench_model``)
nothing needs changing, and the scripts do not import it.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
