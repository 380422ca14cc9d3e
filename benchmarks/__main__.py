"""``python -m benchmarks run [--quick] [--only AREA,...]`` and ``python -m benchmarks render``.

``run`` measures each area in its own process (``python -m benchmarks.bench_AREA --json ...``,
so thread settings and imports of one area cannot leak into the next), wraps what it
measured into a record (commit, date, machine, load average before and after, the command,
every repetition) appended to ``benchmarks/results/AREA.jsonl``, then regenerates the
blocks of BENCHMARKS.md and README.md. ``render`` only regenerates the text.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import AREAS
from benchmarks.harness import REPO, append_record, new_record, start_line

FULL_ONLY = {"quickstart"}  # a single timed run of the whole quickstart: no quick form of it


def run(args: argparse.Namespace) -> int:
    areas = args.only.split(",") if args.only else list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        sys.exit(f"unknown area {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    kind = "quick" if args.quick else "full"
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    failed, start_all = [], time.perf_counter()
    for area in areas:
        if kind == "quick" and area in FULL_ONLY:
            print(f"== {area}: full runs only, skipped with --quick", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "measured.json")
            cmd = [sys.executable, "-m", f"benchmarks.{AREAS[area][0]}", "--json", out]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--data-dir", args.data_dir] if args.data_dir else []
            print(f"== {area} ({kind}): {' '.join(cmd[1:])}", flush=True)
            append_record(start_line(area, kind, command))
            load_before, start = os.getloadavg(), time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO)
            if proc.returncode != 0:
                print(f"== {area}: failed (exit {proc.returncode}); only its start line is written", flush=True)
                failed.append(area)
                continue
            with open(out, encoding="utf-8") as fh:
                measured = json.load(fh)
        record = new_record(area, kind, command, measured, load_before, time.perf_counter() - start)
        path = append_record(record)
        print(f"== {area}: {record['elapsed_s']} s, record appended to {path.relative_to(REPO)}", flush=True)
    print(f"== all areas: {time.perf_counter() - start_all:.0f} s", flush=True)
    render()
    if failed:
        print(f"failed areas: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def render(_args: argparse.Namespace | None = None) -> int:
    from benchmarks import render as rendering

    changed = rendering.write()
    names = ", ".join(str(p.relative_to(REPO)) for p in changed) or "nothing changed"
    print(f"rendered the generated blocks: {names}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="measure, append records, regenerate BENCHMARKS.md and README.md")
    p_run.add_argument("--quick", action="store_true", help="smaller sizes, >= 3 repetitions (under 10 min on 2 cores)")
    p_run.add_argument("--only", help=f"comma-separated areas: {', '.join(AREAS)}")
    p_run.add_argument("--data-dir", help="the shared corpora (default: $CS336_SHARED_DATA or ../shared/data)")
    p_run.set_defaults(func=run)
    sub.add_parser("render", help="regenerate the text from the existing records (no measuring)").set_defaults(
        func=render)
    args = ap.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
