"""The loop's throughput clock: one window from a logged step to the next.

A window runs from one log point to the next, so the work a log point does
after it is read (writing the records, the finiteness guard, the console line)
counts in the next window: every second of the loop is in some window except
the evaluations and checkpoints, which are timed on their own
(:meth:`ThroughputWindow.excluded`; the ``end`` record reports them as
``time_eval`` and ``time_checkpoint``). The ``train`` record's ``tokens_per_s``
and the time budget's step time both come from here, so they measure the loop
as it runs, its own overhead included, not only forward, backward and the update.

The window also collects what the ``train`` record averages: the losses of its
finite steps and the number of skipped (non-finite) ones.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from cs336_basics.training.step import StepResult

MIN_SECONDS = 1e-9
"""A window's time never reads as zero (tokens/s stays finite)."""


@dataclass
class WindowReading:
    """One closed window."""

    seconds: float
    """Wall time from the previous log point, evaluations and checkpoints excluded."""
    tokens: int
    steps: int
    loss: float
    """Mean loss of the window's finite steps (NaN when every step was skipped)."""
    skipped: int
    """Steps whose update was skipped (non-finite loss or gradient)."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


class ThroughputWindow:
    """The steps since the last log point: their tokens, finite losses, skipped steps and wall time."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.restart(time.perf_counter())

    def restart(self, at: float) -> None:
        """Open a new window at ``at`` (a ``time.perf_counter()`` value)."""
        self.start = at
        self.tokens = 0
        self.skipped = 0
        self.excluded_seconds = 0.0
        self.losses: list[float] = []

    def count(self, result: StepResult) -> None:
        """Add one optimizer step."""
        self.tokens += self.tokens_per_step
        if result.finite:
            self.losses.append(result.loss)
        else:
            self.skipped += 1

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """Time the block outside the window (evaluations and checkpoints)."""
        started = time.perf_counter()
        yield
        self.excluded_seconds += time.perf_counter() - started

    def close(self) -> WindowReading:
        """Read the window at this log point and open the next one here."""
        log_point = time.perf_counter()
        reading = WindowReading(seconds=max(log_point - self.start - self.excluded_seconds, MIN_SECONDS),
                                tokens=self.tokens, steps=self.tokens // self.tokens_per_step,
                                loss=sum(self.losses) / len(self.losses) if self.losses else float("nan"),
                                skipped=self.skipped)
        self.restart(log_point)
        return reading
