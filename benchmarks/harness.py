"""Shared benchmark harness: interleaved repeats, medians, ratios, peak memory.

Machines here are shared and noisy, so every benchmark measures our code and
its anchor side by side in the same invocation, alternating A, B, A, B, ...,
and reports medians and the ratio ours/anchor (time) or ours/anchor (rate).

Two ways to run a contender:
- ``Contender(name, fn)``: a Python callable run in this process;
- ``Contender(name, cmd=[...])``: a subprocess; its peak RSS summed over the
  whole process tree (workers included) is sampled with psutil.

Usage::

    from harness import Contender, compare, print_table
    results = compare([Contender("ours", f), Contender("tiktoken", g)], repeats=3)
    print_table(results, baseline="tiktoken")
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Contender:
    name: str
    fn: Callable[[], Any] | None = None
    cmd: Sequence[str] | None = None
    env: dict[str, str] | None = None
    work: float | None = None
    """Units of work per run (bytes, tokens...): enables a rate column."""
    work_unit: str = ""


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)
    work: float | None = None
    work_unit: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def peak_rss_mb(self) -> float | None:
        return max(self.peak_rss) / 2**20 if self.peak_rss else None

    @property
    def rate(self) -> float | None:
        return self.work / self.median if self.work else None


def _tree_rss(proc) -> int:
    import psutil

    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_subprocess(cmd: Sequence[str], env: dict[str, str] | None = None, poll: float = 0.05) -> tuple[float, int, str]:
    """Run ``cmd``; return (seconds, peak RSS of its whole process tree, stdout)."""
    import os

    import psutil

    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, text=True)
    proc = psutil.Process(popen.pid)
    peak = 0
    out_chunks: list[str] = []
    reader = threading.Thread(target=lambda: out_chunks.append(popen.stdout.read()), daemon=True)
    reader.start()
    while popen.poll() is None:
        peak = max(peak, _tree_rss(proc))
        time.sleep(poll)
    elapsed = time.perf_counter() - start
    reader.join()
    err = popen.stderr.read()
    if popen.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({popen.returncode}): {err[-2000:]}")
    return elapsed, peak, "".join(out_chunks)


def compare(contenders: Sequence[Contender], repeats: int = 3, warmup: int = 0, verbose: bool = True) -> list[Result]:
    """Run every contender ``repeats`` times, interleaved; return their results."""
    results = [Result(c.name, work=c.work, work_unit=c.work_unit) for c in contenders]
    for rnd in range(warmup + repeats):
        for contender, result in zip(contenders, results):
            gc.collect()
            if contender.cmd is not None:
                elapsed, peak, _ = run_subprocess(contender.cmd, contender.env)
            else:
                start = time.perf_counter()
                contender.fn()
                elapsed, peak = time.perf_counter() - start, 0
            if rnd >= warmup:
                result.times.append(elapsed)
                if peak:
                    result.peak_rss.append(peak)
            if verbose:
                tag = "warmup" if rnd < warmup else f"run {rnd - warmup + 1}/{repeats}"
                mem = f", peak {peak / 2**20:.0f} MB" if peak else ""
                print(f"  [{tag}] {contender.name}: {elapsed:.3f}s{mem}", file=sys.stderr, flush=True)
    return results


def print_table(results: Sequence[Result], baseline: str) -> str:
    """Print a Markdown table with medians and ratios against ``baseline``; return it."""
    base = next(r for r in results if r.name == baseline)
    lines = ["| contender | median s | ratio time (vs %s) | rate | peak RSS MB |" % baseline, "|---|---:|---:|---:|---:|"]
    for r in results:
        rate = f"{r.rate:,.2f} {r.work_unit}/s" if r.rate else ""
        mem = f"{r.peak_rss_mb:,.0f}" if r.peak_rss_mb else ""
        lines.append(f"| {r.name} | {r.median:.3f} | {r.median / base.median:.3f} | {rate} | {mem} |")
    table = "\n".join(lines)
    print(table)
    return table


def dump_json(results: Sequence[Result], path: str) -> None:
    with open(path, "w") as fh:
        json.dump([{"name": r.name, "times": r.times, "median": r.median, "peak_rss": r.peak_rss,
                    "work": r.work, "rate": r.rate} for r in results], fh, indent=1)
