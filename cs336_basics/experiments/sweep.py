"""Running a sweep: each planned run in its own run directory, resumable, one results line per run.

Layout of a sweep directory ``OUT/NAME/``::

    sweep.json        the specification (base config, grid, ablations, batch rule, command)
    results.jsonl     one line per finished run: config diff, final/best val loss, tokens,
                      wall-clock, status (finished | diverged | oom | failed)
    runs/RUN/         ordinary run directories (config.toml, metrics.jsonl, checkpoints/ ...)
    configs/RUN.toml  (subprocess launcher) the resolved config each child trained
    logs/RUN.log      (subprocess launcher) the child's output
    plots/, report.md written at the end (see report.py)

Re-running the same command skips runs that have a results line (and whose
config is unchanged: a changed definition under the same name is an error, not
a silent mix), records runs that finished but were not recorded, and resumes
runs that were interrupted (``resume="auto"``, i.e. their latest checkpoint).

Two launchers:
- in-process (default): ``train(cfg)`` one run after another; divergence comes
  back as ``TrainResult.diverged`` and is recorded, and an out-of-memory error
  (e.g. the largest batch of a batch-size sweep) is recorded as ``oom``;
- subprocess: ``python -m cs336_basics train --config RUN.toml`` per run, with
  one slot per GPU (``CUDA_VISIBLE_DEVICES=i``) or ``jobs`` CPU slots, several
  runs at once; results are read back from each run's metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_basics.config import dump_config, load_config, to_dict
from cs336_basics.errors import ExitCode, UserError
from cs336_basics.experiments.grid import PlannedRun, SweepSpec, expand
from cs336_basics.fileio import atomic_write_text
from cs336_basics.outputs import DirOutput, check_output_dir
from cs336_basics.progress import info
from cs336_basics.reporting.sweep_report import RESULTS_FILE, SPEC_FILE, read_results, write_sweep_report
from cs336_basics.runs.layout import METRICS_FILE, PLOTS, REPORT_FILE, RunDir
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.runs.records import INTERRUPTED, flatten, summarize_records

TrainFn = Callable[..., Any]
SWEEP_NAMES = frozenset((SPEC_FILE, RESULTS_FILE, "runs", "configs", "logs", PLOTS, REPORT_FILE))


def is_sweep_output(directory: Path) -> bool:
    """sweep.json or results.jsonl, or nothing but a sweep's own names (a sweep that stopped early)."""
    return ((directory / SPEC_FILE).is_file() or (directory / RESULTS_FILE).is_file()
            or all(entry.name in SWEEP_NAMES for entry in directory.iterdir()))


SWEEP_DIR = DirOutput("cs336 sweep", "sweep directory", is_sweep_output)
"""A sweep directory as an output: a rerun continues it, nothing replaces it."""


@dataclass
class SweepOutcome:
    """What one invocation did: the sweep directory and the runs it ran, skipped and lost."""

    sweep_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Path | None = None


def run_dir_of(sweep_dir: Path, run: PlannedRun) -> Path:
    return sweep_dir / "runs" / run.name


def _placed(run: PlannedRun, sweep_dir: Path) -> PlannedRun:
    """The run with its config pointed at the sweep's runs/ folder."""
    train = dataclasses.replace(run.config.train, runs_dir=str(sweep_dir / "runs"), run_name=run.name)
    return dataclasses.replace(run, config=dataclasses.replace(run.config, train=train))


def config_diff(base: Any, cfg: Any) -> dict[str, Any]:
    """Flattened keys whose value in ``cfg`` differs from ``base`` (run name and location ignored)."""
    a, b = flatten(to_dict(base)), flatten(to_dict(cfg))
    skip = {"train.run_name", "train.runs_dir"}
    return {k: b.get(k) for k in sorted(set(a) | set(b)) if k not in skip and a.get(k) != b.get(k)}


def _append_result(sweep_dir: Path, record: dict[str, Any]) -> None:
    with open(sweep_dir / RESULTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _has_checkpoint(run_dir: Path) -> bool:
    ckpt = RunDir(run_dir).checkpoints
    return ckpt.is_dir() and any(ckpt.glob("*.pt"))


def _result_from_train(result: Any) -> dict[str, Any]:
    diverged = bool(getattr(result, "diverged", False))
    interrupted = getattr(result, "stop_reason", None) in INTERRUPTED
    return {"status": "interrupted" if interrupted else "diverged" if diverged else "finished", "diverged": diverged,
            "final_val_loss": getattr(result, "final_val_loss", None),
            "best_val_loss": getattr(result, "best_val_loss", None),
            "steps": getattr(result, "steps", None), "tokens": getattr(result, "tokens", None),
            "wallclock": getattr(result, "wallclock", None), "stop_reason": getattr(result, "stop_reason", None)}


def _result_from_metrics(run_dir: Path) -> dict[str, Any]:
    s = summarize_records(read_jsonl(RunDir(run_dir).metrics_path))
    status = "interrupted" if s.stop_reason in INTERRUPTED else "diverged" if s.diverged else "finished"
    return {"status": status, "diverged": s.diverged,
            "final_val_loss": s.final_val_loss, "best_val_loss": s.best_val_loss, "steps": s.steps,
            "tokens": s.tokens, "wallclock": s.wallclock, "stop_reason": s.stop_reason}


def _is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "out of memory" in text or "outofmemory" in text


class SweepRunner:
    """Plans, skips, runs and records the runs of one sweep (see the module docstring)."""

    def __init__(self, spec: SweepSpec, out: str | Path = "sweeps", *, command: str | None = None) -> None:
        self.spec = spec
        self.sweep_dir = Path(out) / spec.name
        self.base = load_config(spec.base_config, spec.overrides)
        self.runs = [_placed(r, self.sweep_dir) for r in expand(spec)]
        self.command = command

    # -- bookkeeping

    def _write_spec(self) -> None:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        data = self.spec.to_json()
        if self.command:
            data["command"] = self.command
        data["runs"] = [{"name": r.name, "overrides": r.overrides} for r in self.runs]
        atomic_write_text(self.sweep_dir / SPEC_FILE, json.dumps(data, indent=1))

    def _record(self, run: PlannedRun, outcome: dict[str, Any]) -> dict[str, Any]:
        record = {"name": run.name, "run_dir": f"runs/{run.name}", "config_hash": run.config_hash,
                  "swept": run.swept, "config_diff": config_diff(self.base, run.config),
                  "overrides": run.overrides, **outcome, "recorded_at": time.time()}
        _append_result(self.sweep_dir, record)
        return record

    def plan(self) -> list[tuple[PlannedRun, str]]:
        """Each run with its state: done | record (finished, unrecorded) | resume | new."""
        results = read_results(self.sweep_dir)
        out = []
        for run in self.runs:
            previous = results.get(run.name)
            if previous is not None:
                if previous.get("config_hash") not in (None, run.config_hash):
                    raise UserError(f"run '{run.name}' in {self.sweep_dir} was made with a different config; "
                                    f"use another --name (or delete that run directory and its results line)")
                out.append((run, "done"))
                continue
            run_dir = run_dir_of(self.sweep_dir, run)
            summary = summarize_records(read_jsonl(RunDir(run_dir).metrics_path))
            if summary.finished:
                out.append((run, "record"))
            elif _has_checkpoint(run_dir):
                out.append((run, "resume"))
            else:
                out.append((run, "new"))
        return out

    def _set_aside_partial(self, run: PlannedRun) -> None:
        """A run that died before its first checkpoint restarts from scratch; keep its old log."""
        metrics = RunDir(run_dir_of(self.sweep_dir, run)).metrics_path
        if metrics.exists():
            metrics.replace(metrics.with_name(f"{metrics.stem}.abandoned-{int(time.time())}{metrics.suffix}"))

    # -- launchers

    def _run_inprocess(self, run: PlannedRun, resume: bool, train_fn: TrainFn) -> dict[str, Any]:
        try:
            result = train_fn(run.config, resume="auto" if resume else None)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing run must not end the sweep
            status = "oom" if _is_oom(exc) else "failed"
            return {"status": status, "diverged": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        return _result_from_train(result)

    def child_command(self, cfg_path: Path, resume: bool) -> list[str]:
        """The subprocess launcher's command for one run (tests substitute a stand-in trainer)."""
        return [sys.executable, "-m", "cs336_basics", "train", "--config", str(cfg_path)] + (["--resume", "auto"] if resume else [])

    def _launch(self, run: PlannedRun, resume: bool, env_extra: dict[str, str]) -> subprocess.Popen:
        cfg_path = self.sweep_dir / "configs" / f"{run.name}.toml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        dump_config(run.config, cfg_path)
        log_path = self.sweep_dir / "logs" / f"{run.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.child_command(cfg_path, resume)
        env = {**os.environ, "CS336_NO_PROGRESS": "1", **env_extra}
        log = open(log_path, "w", encoding="utf-8")
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        proc._sweep_log = log  # type: ignore[attr-defined]  # closed when the child is reaped
        return proc

    def _reap(self, run: PlannedRun, proc: subprocess.Popen) -> dict[str, Any]:
        proc._sweep_log.close()  # type: ignore[attr-defined]
        run_dir = run_dir_of(self.sweep_dir, run)
        outcome = _result_from_metrics(run_dir)
        if proc.returncode in (ExitCode.SIGINT, ExitCode.SIGTERM, -signal.SIGINT, -signal.SIGTERM):  # resumable
            return {**outcome, "status": "interrupted"}
        if proc.returncode == 0 or outcome["diverged"]:
            return outcome
        log_path = self.sweep_dir / "logs" / f"{run.name}.log"
        tail = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()][-1:]
        text = tail[0] if tail else f"exit code {proc.returncode}"
        return {**outcome, "status": "oom" if "out of memory" in text.lower() else "failed", "error": text,
                "returncode": proc.returncode}

    # -- driver

    def run(self, *, train_fn: TrainFn | None = None, launcher: str = "inprocess", gpus: list[str] | None = None,
            jobs: int = 1, report: bool = True, inputs: list[str | Path] = ()) -> SweepOutcome:
        """Run what is left of the sweep; ``inputs`` (the sweep file) must lie outside the sweep directory."""
        check_output_dir(self.sweep_dir, SWEEP_DIR, inputs=[self.spec.base_config, self.base.data.dataset_dir, *inputs],
                         flag="the sweep directory", fix="choose another --out or --name")
        self._write_spec()
        outcome = SweepOutcome(self.sweep_dir)
        todo: list[tuple[PlannedRun, bool]] = []
        for run, state in self.plan():
            if state == "done":
                outcome.skipped.append(run.name)
            elif state == "record":
                self._record(run, _result_from_metrics(run_dir_of(self.sweep_dir, run)))
                outcome.skipped.append(run.name)
            else:
                if state == "new":
                    self._set_aside_partial(run)
                todo.append((run, state == "resume"))
        if outcome.skipped:
            info(f"sweep {self.spec.name}: {len(outcome.skipped)} run(s) already finished, {len(todo)} to run")
        if gpus or launcher == "subprocess" or jobs > 1:  # several at once needs child processes
            self._run_subprocesses(todo, gpus, jobs, outcome)
        else:
            if train_fn is None:
                raise ValueError("the in-process launcher needs train_fn (cs336_basics.training.loop.train)")
            for i, (run, resume) in enumerate(todo, 1):
                info(f"sweep {self.spec.name}: run {i}/{len(todo)} {run.name}" + (" (resuming)" if resume else ""))
                self._finish(run, self._run_inprocess(run, resume, train_fn), outcome)
        outcome.results = read_results(self.sweep_dir)
        if report and any((self.sweep_dir / "runs").glob(f"*/{METRICS_FILE}")):
            outcome.report = write_sweep_report(self.sweep_dir)
        return outcome

    def _finish(self, run: PlannedRun, result: dict[str, Any], outcome: SweepOutcome) -> None:
        if result["status"] == "interrupted":
            # stopped by a signal: its checkpoint is saved and the next invocation resumes it
            info(f"  {run.name}: interrupted; rerun the same command to resume the sweep")
            raise KeyboardInterrupt
        self._record(run, result)
        outcome.ran.append(run.name)
        if result["status"] in ("failed", "oom"):
            outcome.failed.append(run.name)
        loss = result.get("final_val_loss")
        info(f"  {run.name}: {result['status']}" + (f", final val loss {loss:.4f}" if isinstance(loss, float) else "")
             + (f" ({result['error']})" if result.get("error") else ""))

    def _run_subprocesses(self, todo: list[tuple[PlannedRun, bool]], gpus: list[str] | None, jobs: int,
                          outcome: SweepOutcome) -> None:
        # one slot per GPU (the child sees only its GPU as cuda:0), else `jobs` CPU slots
        slots = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus] if gpus else [{} for _ in range(max(1, jobs))]
        free = list(range(len(slots)))
        running: dict[int, tuple[PlannedRun, subprocess.Popen]] = {}
        queue = list(todo)
        try:
            while queue or running:
                while queue and free:
                    slot = free.pop(0)
                    run, resume = queue.pop(0)
                    info(f"sweep {self.spec.name}: starting {run.name}" + (f" on GPU {gpus[slot]}" if gpus else ""))
                    running[slot] = (run, self._launch(run, resume, slots[slot]))
                for slot, (run, proc) in list(running.items()):
                    if proc.poll() is not None:
                        self._finish(run, self._reap(run, proc), outcome)
                        del running[slot]
                        free.append(slot)
                time.sleep(0.2)
        except KeyboardInterrupt:
            for _, proc in running.values():
                proc.terminate()  # the child saves a checkpoint on SIGTERM; a rerun resumes it
            for _, proc in running.values():
                proc.wait()
            raise


def run_sweep(spec: SweepSpec, out: str | Path = "sweeps", *, train_fn: TrainFn | None = None,
              launcher: str = "inprocess", gpus: list[str] | None = None, jobs: int = 1, report: bool = True,
              command: str | None = None) -> SweepOutcome:
    """Expand ``spec`` and run what is not finished yet under ``out/spec.name`` (see the module docstring)."""
    return SweepRunner(spec, out, command=command).run(train_fn=train_fn, launcher=launcher, gpus=gpus,
                                                       jobs=jobs, report=report)
