"""Where a run reports: metrics.jsonl, the trackers that mirror it, the console, and the run's two clocks.

Only rank 0 writes (``main``); on the other ranks every call does nothing.
Each record is stamped with the step, the tokens seen and the run's wall-clock,
which continues across resumes (a checkpoint keeps the wall-clock spent); the
time spent writing records counts as ``StepTimings.logging``. The trackers get
the record as written (:mod:`.trackers` names its fields for W&B/TensorBoard).

Console lines go above the progress bar on a terminal and to stderr otherwise
(:mod:`.console` formats them); ``logging.quiet`` silences them. The time-left
estimate of a line extrapolates this process's own steps, so it counts from
:meth:`RunLog.start_loop`, not from the run's first session.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from cs336_basics.progress import info
from cs336_basics.runs.metrics import MetricsLog
from cs336_basics.training import console
from cs336_basics.training.step import StepTimings
from cs336_basics.training.trackers import Tracker


class RunLog:
    """metrics.jsonl, the trackers, the console lines and the clocks of one training process."""

    def __init__(self, main: bool, quiet: bool, timings: StepTimings, wallclock_offset: float = 0.0) -> None:
        self.main, self.quiet, self.timings = main, quiet, timings
        self.wallclock_offset = wallclock_offset
        """Run wall-clock spent before this process (a resumed run's checkpoint says how much)."""
        self.metrics: MetricsLog | None = None
        self.trackers: list[Tracker] = []
        self.bar = None
        """The progress bar while the loop runs (lines are written above it)."""
        self.last_train: tuple[float | None, float] = (None, float("nan"))
        """The latest ``train`` record's loss and tokens/s, repeated on the evaluation lines."""
        self.started = time.time()
        self.loop_started, self.loop_start_step = time.perf_counter(), 0

    def open(self, path: Path, trackers: list[Tracker]) -> None:
        """Start appending to metrics.jsonl at ``path`` and mirroring to ``trackers``."""
        self.metrics = MetricsLog(path, start_time=time.time() - self.wallclock_offset)
        self.trackers = trackers

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        if self.metrics is not None:
            self.metrics.close()

    def event(self, event: str, step: int, tokens: int, **values: Any) -> None:
        """A metrics.jsonl record (and the trackers' copy) of ``event`` at ``step``."""
        if not self.main:
            return
        started = time.perf_counter()
        record = self.metrics.log(event, step=step, tokens=tokens, wallclock=self.wallclock(), **values)
        for tracker in self.trackers:
            tracker.log(event, step, record)
        self.timings.logging += time.perf_counter() - started

    def say(self, line: str) -> None:
        """A line for the person watching: above the progress bar on a terminal, on stderr otherwise."""
        if not self.main or self.quiet:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            info(line)

    def train_line(self, step: int, total: int, loss: float, tokens_per_s: float, lr: float) -> None:
        """A log point on the console: the progress bar's figures, or a line where there is no bar."""
        self.last_train = (loss, tokens_per_s)
        if self.bar.disable and self.main and not self.quiet:
            info(console.progress_line(step, total, loss, tokens_per_s, self.elapsed(), self.loop_start_step, lr=lr))
        self.bar.set_postfix_str(f"train {console.loss(loss)} | lr {lr:.1e} | {console.rate(tokens_per_s)}",
                                 refresh=False)

    def eval_line(self, step: int, total: int, val_loss: float, val_tokens: int, subset: bool) -> None:
        """An evaluation on the console, beside the latest training loss and speed."""
        self.say(console.progress_line(step, total, *self.last_train, self.elapsed(), self.loop_start_step,
                                       val_loss=val_loss, val_tokens=val_tokens, val_is_subset=subset))

    def start_run(self) -> None:
        """Start the run's wall-clock for this process."""
        self.started = time.time()

    def start_loop(self, step: int) -> None:
        """Start the loop's clock at ``step`` (the time-left estimates count from here)."""
        self.loop_started, self.loop_start_step = time.perf_counter(), step

    def wallclock(self) -> float:
        """Seconds of run wall-clock, earlier sessions of a resumed run included."""
        return self.wallclock_offset + (time.time() - self.started)

    def elapsed(self) -> float:
        """Seconds since this process started its training loop."""
        return time.perf_counter() - self.loop_started
