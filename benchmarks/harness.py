"""Shared benchmark harness: interleaved repeats, wall and CPU time, peak memory, records.

Machines here are shared and noisy, so every benchmark measures our code and
its anchors side by side in the same invocation, alternating A, B, A, B, ...,
and keeps every repetition: summaries are the median and the [min, max] over
all of them, and ratios are computed per repetition from interleaved pairs
(A_i / B_i), so a range that straddles a target shows as such.

Two ways to run a contender:

- ``Contender(name, fn)``: a Python callable run in this process; wall time
  (``time.perf_counter``) and process CPU time (``time.process_time``, all
  threads) are measured around it. ``fn`` may return a :class:`Timing` to report
  its own measurement instead (e.g. only the steps after a warm-up);
- ``Contender(name, cmd=[...])``: a subprocess; its CPU time is that of the
  whole process tree (``RUSAGE_CHILDREN``) and its peak RSS is summed over the
  tree (workers included), sampled with psutil.

Usage::

    from benchmarks.harness import Contender, compare, print_table
    results = compare([Contender("ours", f), Contender("tiktoken", g)], repeats=3)
    print_table(results, baseline="tiktoken")

A benchmark script turns its results into record *groups* (:func:`group`);
``python -m benchmarks run`` wraps them into records (:func:`new_record`) with
the commit, the machine and the command, and appends them to
``benchmarks/results/AREA.jsonl``. This module imports only the standard
library at load time, so the renderer and its test stay fast.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".bench"  # decompressed corpora and trained tokenizers (git-ignored)


# ----------------------------------------------------------------------------- contenders and runs


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
class Timing:
    """A contender's own measurement of one run, returned by its ``fn`` (replaces the harness's timing)."""

    wall: float
    cpu: float | None = None


@dataclass
class Result:
    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)
    work: float | None = None
    work_unit: str = ""

    @property
    def times(self) -> list[float]:
        return self.wall

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_subprocess(cmd: Sequence[str], env: dict[str, str] | None = None, poll: float = 0.05,
                   merge_stderr: bool = False) -> tuple[float, int, str, float, str]:
    """Run ``cmd``; return (wall s, peak RSS of its process tree, stdout, CPU s of its process tree, stderr).

    ``merge_stderr``: stderr goes into stdout in the order it was written (a transcript), and "" is returned
    for it."""
    import psutil

    full_env = {**os.environ, **(env or {})}
    cpu_before = _children_cpu()
    start = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                             env=full_env, text=True)
    proc = psutil.Process(popen.pid)
    peak = 0
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(popen.stdout.read()), daemon=True)]
    if not merge_stderr:
        readers.append(threading.Thread(target=lambda: err_chunks.append(popen.stderr.read()), daemon=True))
    for reader in readers:
        reader.start()
    while popen.poll() is None:
        peak = max(peak, _tree_rss(proc))
        time.sleep(poll)
    elapsed = time.perf_counter() - start
    for reader in readers:
        reader.join()
    if popen.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({popen.returncode}): "
                           f"{''.join(err_chunks or out_chunks)[-2000:]}")
    return elapsed, peak, "".join(out_chunks), _children_cpu() - cpu_before, "".join(err_chunks)


def compare(contenders: Sequence[Contender], repeats: int = 3, warmup: int = 0, verbose: bool = True) -> list[Result]:
    """Run every contender ``repeats`` times, interleaved (after ``warmup`` untimed rounds); return their results."""
    results = [Result(c.name, work=c.work, work_unit=c.work_unit) for c in contenders]
    for rnd in range(warmup + repeats):
        for contender, result in zip(contenders, results):
            gc.collect()
            peak = 0
            if contender.cmd is not None:
                wall, peak, _, cpu, _ = run_subprocess(contender.cmd, contender.env)
            else:
                start, cpu_start = time.perf_counter(), time.process_time()
                out = contender.fn()
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                if isinstance(out, Timing):
                    wall, cpu = out.wall, out.cpu
            if rnd >= warmup:
                result.wall.append(wall)
                if cpu is not None:
                    result.cpu.append(cpu)
                if peak:
                    result.peak_rss.append(peak)
            if verbose:
                tag = "warmup" if rnd < warmup else f"run {rnd - warmup + 1}/{repeats}"
                extra = (f", CPU {cpu:.3f}s" if cpu is not None else "") + (f", peak {peak / 2**20:.0f} MB" if peak else "")
                print(f"  [{tag}] {contender.name}: {wall:.3f}s{extra}", file=sys.stderr, flush=True)
    return results


def print_table(results: Sequence[Result], baseline: str) -> str:
    """Print a Markdown table: median and [min, max] wall time, rate, ratio to ``baseline``; return it."""
    base = next(r for r in results if r.name == baseline)
    lines = [f"| contender | median s [min, max] | rate | time vs {baseline} | median CPU s | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        rate = f"{r.rate:,.2f} {r.work_unit}/s" if r.rate else ""
        mem = f"{r.peak_rss_mb:,.0f}" if r.peak_rss_mb else ""
        cpu = f"{statistics.median(r.cpu):.3f}" if r.cpu else ""
        lines.append(f"| {r.name} | {r.median:.3f} [{min(r.wall):.3f}, {max(r.wall):.3f}] | {rate} | "
                     f"{r.median / base.median:.3f} | {cpu} | {mem} |")
    table = "\n".join(lines)
    print(table)
    return table


# ----------------------------------------------------------------------------- statistics for the summary


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) over every repetition."""
    return statistics.median(values), min(values), max(values)


def rates(series: dict) -> list[float]:
    """Work per wall second for every repetition of a recorded contender (1 unit of work when none is given)."""
    work = series.get("work") or 1.0
    return [work / t for t in series["wall_s"]]


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-repetition ratios a_i / b_i of interleaved pairs (the i-th runs of A and B were neighbours in time)."""
    if len(a) != len(b):
        raise ValueError(f"unpaired repetitions: {len(a)} vs {len(b)}")
    return [x / y for x, y in zip(a, b)]


def cross_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Every a_i / b_j: their [min, max] clears 1 only when the ranges of a and b do not overlap.

    For values with no pairing between repetitions (one recipe's seeds against another's), so that a
    difference counts only when every run of one side is beyond every run of the other.
    """
    return [x / y for x in a for y in b]


def verdict(low: float, high: float, target: float | None, better: str = "higher") -> str:
    """'met' when the whole [low, high] range clears the target, 'not met' when none of it does, else 'within noise'."""
    if target is None:
        return "-"
    if better == "higher":
        return "met" if low >= target else "not met" if high < target else "within noise"
    return "met" if high <= target else "not met" if low > target else "within noise"


# ----------------------------------------------------------------------------- records


def shared_data(relative: str, data_dir: str | Path | None = None) -> Path:
    """A file of the shared corpora (``--data-dir``, else $CS336_SHARED_DATA, else ../shared/data); exits in one line when absent."""
    root = Path(data_dir or os.environ.get("CS336_SHARED_DATA") or REPO.parent / "shared" / "data")
    path = root / relative
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set CS336_SHARED_DATA or pass --data-dir)")
    return path


def group(gid: str, title: str, results: Sequence[Result], *, size: str = "", settings: dict | None = None,
          metrics: dict[str, list[float]] | None = None, facts: dict[str, Any] | None = None) -> dict:
    """One comparison of a record: every repetition of every contender, per-repetition metrics and plain facts.

    ``size`` is the few words the summary shows next to each figure ("10 MB", "batch 8, 512 tokens")."""
    contenders = {}
    for r in results:
        series: dict[str, Any] = {"wall_s": [round(t, 6) for t in r.wall]}
        if r.cpu:
            series["cpu_s"] = [round(t, 6) for t in r.cpu]
        if r.peak_rss:
            series["peak_rss_mb"] = [round(b / 2**20, 1) for b in r.peak_rss]
        if r.work:
            series["work"], series["work_unit"] = r.work, r.work_unit
        contenders[r.name] = series
    return {"id": gid, "title": title, "size": size, "settings": settings or {}, "contenders": contenders,
            "metrics": metrics or {}, "facts": facts or {}}


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The commit measured and whether the tree differed from it. The records' own files
    (``benchmarks/results/``) do not count: a run appends its start line there before it measures."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False).stdout

    results = RESULTS.relative_to(REPO).as_posix() + "/"
    status = [line for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
              if line and not line[3:].strip('"').startswith(results)]  # "XY PATH": two status letters, a space
    return {"commit": git("rev-parse", "HEAD").strip() or "unknown",
            "dirty": any(not line.startswith("??") for line in status),
            "untracked": any(line.startswith("??") for line in status)}


# the vector features a CPU's record names, in the kernel's spelling, with the short label rows show
VECTOR_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16",
                   "asimd": "NEON", "sve": "SVE", "bf16": "BF16"}


def _cpuinfo() -> tuple[str, list[str]]:
    """The CPU's model name and its flags, from ``/proc/cpuinfo`` (empty flags elsewhere)."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_model() -> str:
    return _cpuinfo()[0]


def machine_identity() -> dict[str, Any]:
    """What tells two machines apart: CPU model, its vector features, cores, memory, and a fingerprint of those.

    The fingerprint hashes the model name, every CPU flag and the memory size, so two hosts sold under one name
    ("AMD EPYC") but with different instruction sets get different fingerprints.
    """
    import hashlib

    model, flags = _cpuinfo()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    memory_gib = round(memory / 2**30)
    digest = hashlib.sha256("|".join([model, " ".join(sorted(flags)), str(memory_gib)]).encode()).hexdigest()
    return {"cpu": model, "features": [f for f in VECTOR_FEATURES if f in flags], "cores": os.cpu_count(),
            "usable_cores": usable_cores(), "memory_gib": memory_gib, "fingerprint": digest[:12]}


def torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def cold_inductor_cache(prefix: str):
    """An empty Inductor cache directory for the block, so a compile time measured in it is a first run's.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first compiles, so enter this before any compilation.
    """
    cache = tempfile.mkdtemp(prefix=f"{prefix}.inductor.")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def usable_cores() -> int:
    """Cores this process may run on: fewer than ``os.cpu_count()`` when pinned (taskset, container CPU sets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def new_record(area: str, kind: str, command: str, measured: dict, load_before: Sequence[float],
               elapsed: float) -> dict:
    """The JSON record of one area's run: what, where, when, at which commit, and every repetition."""
    return {
        "area": area, "kind": kind,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **git_state(),
        "command": command,
        "machine": {**machine_identity(), "python": platform.python_version(),
                    "torch": torch_version(), "torch_threads": measured.get("torch_threads"),
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "elapsed_s": round(elapsed, 1),
        "settings": measured.get("settings", {}),
        "notes": measured.get("notes", []),
        "groups": measured["groups"],
        **({"transcript": measured["transcript"]} if "transcript" in measured else {}),
    }


def start_line(area: str, kind: str, command: str) -> dict:
    """The line a run appends before it measures: a start with no record after it was interrupted or discarded."""
    return {"event": "start", "area": area, "kind": kind,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **git_state(), "command": command, "fingerprint": machine_identity()["fingerprint"]}


def append_record(record: dict, results_dir: Path = RESULTS) -> Path:
    path = results_dir / f"{record['area']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")  # key order kept: contenders in the order they ran
    return path
