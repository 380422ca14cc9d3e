"""The shared command line of the ``bench_*.py`` scripts (:func:`script_main`).

A script run on its own prints its tables (rendered as in BENCHMARKS.md's details); with
``--json FILE`` (how ``python -m benchmarks run`` runs it) it writes what it measured instead,
which ``python -m benchmarks`` wraps into a record. Kept apart from the harness so that the
harness (measuring) and the renderer (text) never import each other.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.render import groups_markdown


def script_main(description: str, sizes: dict[str, dict[str, Any]], measure: Callable[[dict, Any], dict]) -> None:
    """The shared command line of the ``bench_*.py`` scripts.

    ``sizes`` maps "quick" and "full" to the settings ``measure(settings, data_dir)`` takes;
    every setting is also an option (``--d-model 256``). Prints the area's tables;
    ``--json FILE`` (used by ``python -m benchmarks run``) writes what was measured instead.
    """
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="the small sizes of `python -m benchmarks run --quick`")
    ap.add_argument("--data-dir", help="the shared corpora (default: $CS336_SHARED_DATA or ../shared/data)")
    ap.add_argument("--json", help=argparse.SUPPRESS)
    for key, value in sizes["full"].items():
        kind = type(value) if value is not None and not isinstance(value, bool) else str
        ap.add_argument("--" + key.replace("_", "-"), type=kind, default=None,
                        help=f"default {value!r} ({sizes['quick'][key]!r} with --quick)")
    args = ap.parse_args()
    kind = "quick" if args.quick else "full"
    settings = dict(sizes[kind])
    for key, value in sizes["full"].items():
        given = getattr(args, key)
        if given is not None:
            settings[key] = (given.lower() in ("1", "true", "yes")) if isinstance(value, bool) else given
    measured = measure(settings, args.data_dir)
    measured["settings"] = {**settings, **measured.get("settings", {})}
    if args.json:
        Path(args.json).write_text(json.dumps(measured), encoding="utf-8")
        return
    print(groups_markdown(measured["groups"]) + "\n")
    for note in measured.get("notes", []):
        print(f"- {note}")
