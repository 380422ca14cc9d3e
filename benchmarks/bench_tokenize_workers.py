"""`cs336 tokenize` with 1 worker vs N workers: whole commands, interleaved, same output checked.

Each run is the full command as a user types it (``cs336 -q tokenize --tokenizer DIR
--input FILE --out OUT --workers W --force``), so start-up, the source fingerprint,
writing, fsync and the manifest are all inside the timing. Runs alternate
(1, N, 1, N, ...); the table gives medians of the wall time and of the CPU time
of the whole process tree, and the speed-up ``median(1 worker) / median(N workers)``.
The outputs of the two settings must be byte-identical (checked).

Usage::

    python benchmarks/bench_tokenize_workers.py --tokenizer TOKDIR --input big.txt [--workers 2] [--repeats 3]

``--concat K`` first writes the input K times over into one temporary file (to get
a GB-scale file from the text available here; repeated text makes later copies
cache-friendly for both settings alike, so say so when quoting the numbers).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(tokenizer: str, source: Path, out: Path, workers: int) -> tuple[float, float]:
    """(wall s, CPU s of the process tree) for one whole command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cs336_basics.cli", "-q", "tokenize", "--tokenizer", tokenizer,
                    "--input", str(source), "--out", str(out), "--workers", str(workers), "--force"], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="a tokenizer directory (cs336 tokenizer train)")
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concat", type=int, default=1, help="use the input this many times over (one temp file)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_tokenize."))
    try:
        source = args.input
        if args.concat > 1:
            source = tmp / f"{args.input.stem}_x{args.concat}.txt"
            with open(source, "wb") as dst:
                for _ in range(args.concat):
                    with open(args.input, "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 24)
        size_mb = source.stat().st_size / 1e6
        times: dict[int, list[tuple[float, float]]] = {1: [], args.workers: []}
        for r in range(args.repeats):
            for w in (1, args.workers):
                times[w].append(run_once(args.tokenizer, source, tmp / f"out_w{w}.npy", w))
                print(f"  run {r + 1}: {w} worker(s) {times[w][-1][0]:.2f} s wall, {times[w][-1][1]:.2f} s CPU",
                      file=sys.stderr, flush=True)
        same = filecmp.cmp(tmp / "out_w1.npy", tmp / f"out_w{args.workers}.npy", shallow=False)
        print(f"input {source.name}: {size_mb:,.0f} MB; {os.cpu_count()} CPUs; outputs identical: {same}\n")
        print("| workers | median wall s | MB/s | median CPU s (process tree) | runs (wall s) |")
        print("|---:|---:|---:|---:|---|")
        for w, runs in times.items():
            wall = statistics.median(t[0] for t in runs)
            cpu = statistics.median(t[1] for t in runs)
            print(f"| {w} | {wall:.2f} | {size_mb / wall:.1f} | {cpu:.2f} | {', '.join(f'{t[0]:.2f}' for t in runs)} |")
        one = statistics.median(t[0] for t in times[1])
        many = statistics.median(t[0] for t in times[args.workers])
        print(f"\nspeed-up with {args.workers} workers: {one / many:.2f}x (median wall)")
        assert same, "1-worker and N-worker outputs differ"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
