"""A wall-clock budget for a run (``train.max_minutes``): the step count follows the measured speed.

A fixed step count planned from one timed step is wrong whenever the machine's
speed changes (another process starts, the CPU throttles, a laptop goes on
battery): on a busy 2-core machine a run planned from one step for 9 minutes can
take more than twice that. With a budget, the trainer re-plans the total number of steps at every logged step
and rebuilds the learning-rate schedule for the new total, so cosine or WSD
reach their final phase when the time is up rather than when a guess said.
``train.total_steps`` / ``train.total_tokens``, when set as well, stay an upper
bound.

What the plan rests on, so that one slow stretch cannot end a run:

- **Step time** (:class:`StepSpeed`): seconds per training step of each logging
  window (evaluations and checkpoints excluded), planned from the median of the
  last :data:`RECENT_WINDOWS` windows (the lower median, so one slow window among
  two does not decide; a machine that stays slower wins the median within
  three windows). The first window pays for warm-up and compilation: alone it may
  shorten the plan, but never to less than one more window, after which the
  median of two decides.
- **Evaluation cost, measured**: the time of a few validation batches before
  the first step (:func:`measure_eval_seconds_per_token`), replaced by each
  evaluation's own timing as the run goes. The periodic evaluations are spread
  over the steps between them; the final evaluation is a reserve, capped at
  :data:`RESERVE_CAP` of the budget.
- A budget that runs out before the plan ends the run at once (the plan is
  then shortened to the current step), and the run says so: ``stop_reason``
  ``time_budget`` whenever the budget, not the step count asked for, ended it.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from cs336_basics.runs.metrics import StopReason

PROVISIONAL_STEPS = 1000
"""The plan before any step has been timed (re-planned after the first logged steps)."""

RECENT_WINDOWS = 5
"""The logging windows the step time is the median of."""

RESERVE_CAP = 0.25
"""The most of a budget the final evaluation's reserve may take, however slow a measurement said it would be."""


@dataclass
class TimeBudget:
    seconds: float
    """The whole budget, in seconds of run wall-clock (resumed runs count what they already spent)."""
    cap: int | None = None
    """An upper bound on the steps (train.total_steps / total_tokens when set)."""
    min_steps: int = 1

    def plan(self, step: int, elapsed: float, seconds_per_step: float | None, reserve: float = 0.0,
             at_least: int = 0) -> int:
        """Total steps that fit: the steps done plus what the remaining time allows at ``seconds_per_step``.

        ``elapsed`` is the wall-clock spent so far, ``reserve`` what the end of the run needs (final
        evaluation; at most :data:`RESERVE_CAP` of the budget is kept for it). Never fewer than the steps
        already done (at least ``min_steps`` and ``at_least``), never above ``cap``.
        """
        if seconds_per_step is None or seconds_per_step <= 0 or not math.isfinite(seconds_per_step):
            total = self.cap if self.cap is not None else max(PROVISIONAL_STEPS, step + 1)
        else:
            reserve = min(max(reserve, 0.0), RESERVE_CAP * self.seconds)
            remaining = self.seconds - elapsed - reserve
            total = step + max(0, int(remaining / seconds_per_step))
        total = max(total, step, self.min_steps, at_least)
        return min(total, self.cap) if self.cap is not None else total

    def expired(self, elapsed: float) -> bool:
        return elapsed >= self.seconds


@dataclass
class StepSpeed:
    """Seconds per step of each logging window; a robust estimate of the speed from them."""

    windows: list[float] = field(default_factory=list)
    steps_per_window: int = 1

    def add(self, seconds: float, steps: int) -> None:
        if steps > 0 and math.isfinite(seconds) and seconds > 0:
            self.windows.append(seconds / steps)
            self.steps_per_window = steps

    def seconds_per_step(self) -> float | None:
        """The lower median of the last :data:`RECENT_WINDOWS` windows (None before the first window)."""
        return statistics.median_low(self.windows[-RECENT_WINDOWS:]) if self.windows else None

    def trusted(self) -> bool:
        """Whether more than the first window (warm-up, a slow start) stands behind the estimate."""
        return len(self.windows) >= 2


def measure_eval_seconds_per_token(evaluate, tokens: int) -> float | None:
    """Seconds per scored validation token of ``evaluate(max_tokens)`` over about ``tokens`` tokens (a few
    batches, timed here, warm-up included: the estimate errs on the slow side). None when nothing was scored."""
    started = time.perf_counter()
    result = evaluate(tokens)
    seconds = time.perf_counter() - started
    return seconds / result.num_tokens if result.num_tokens > 0 else None


class BudgetPlanner:
    """A training loop's use of a :class:`TimeBudget`: the robust speed, the measured evaluation cost, the
    plan at each logging window, and whether the budget (rather than the steps asked for) ended the run.

    ``periodic_eval_tokens`` is what each evaluation during training scores (0: none), every
    ``eval_interval`` steps; ``final_eval_tokens`` what the end of the run still scores.
    """

    def __init__(self, budget: TimeBudget, eval_interval: int, periodic_eval_tokens: int,
                 final_eval_tokens: int) -> None:
        self.budget = budget
        self.eval_interval = eval_interval
        self.periodic_eval_tokens = periodic_eval_tokens
        self.final_eval_tokens = final_eval_tokens
        self.speed = StepSpeed()
        self.eval_seconds_per_token: float | None = None
        """Measured: a probe of a few batches before the first step, then each evaluation's own timing."""
        self.eval_call_seconds: float | None = None
        """The last periodic evaluation as the loop paid for it (samples and best.pt included)."""
        self.cut = False
        """The budget ran out before the planned steps."""

    def probe(self, evaluate, tokens: int) -> None:
        if self.periodic_eval_tokens or self.final_eval_tokens:
            self.eval_seconds_per_token = measure_eval_seconds_per_token(evaluate, tokens)

    def record_eval(self, call_seconds: float, eval_seconds: float, scored_tokens: int) -> None:
        self.eval_call_seconds = call_seconds
        if scored_tokens > 0:
            self.eval_seconds_per_token = eval_seconds / scored_tokens

    def eval_seconds_per_step(self) -> float:
        """The periodic evaluations' measured cost, spread over the steps between two of them."""
        if not (self.periodic_eval_tokens and self.eval_interval):
            return 0.0
        if self.eval_call_seconds is not None:
            return self.eval_call_seconds / self.eval_interval
        return (self.eval_seconds_per_token or 0.0) * self.periodic_eval_tokens / self.eval_interval

    def replan(self, step: int, elapsed: float, window_seconds: float, window_steps: int) -> int | None:
        """The total steps after one more logging window (None before any speed is known).

        The first window alone may shorten the plan, but not below one more window: a slow start
        (warm-up, compilation, a briefly loaded machine) is checked against a second window first.
        """
        self.speed.add(window_seconds, window_steps)
        seconds_per_step = self.speed.seconds_per_step()
        if seconds_per_step is None:
            return None
        reserve = (self.eval_seconds_per_token or 0.0) * self.final_eval_tokens
        at_least = 0 if self.speed.trusted() else step + window_steps
        return self.budget.plan(step, elapsed, seconds_per_step + self.eval_seconds_per_step(), reserve,
                                at_least=at_least)

    def out_of_time(self, elapsed: float, step: int, planned: int) -> bool:
        """True (and remembered) when the budget is spent before ``planned`` steps: this step is the last."""
        if step < planned and self.budget.expired(elapsed):
            self.cut = True
        return self.cut

    def end_reason(self, step: int) -> StopReason:
        """``time_budget`` when the budget, not the steps asked for, ended the run; ``completed`` otherwise."""
        if self.cut or (self.budget.cap is not None and step < self.budget.cap):
            return StopReason.TIME_BUDGET
        return StopReason.COMPLETED

    def end_message(self, step: int, max_minutes: float) -> str:
        """The console line of a run the budget ended: how far it got of what was asked."""
        minutes = f"train.max_minutes = {max_minutes:g}"
        if self.budget.cap is not None:
            return (f"the time budget ({minutes}) ended the run after {step} of the {self.budget.cap} steps asked "
                    "(train.total_steps / total_tokens); raise train.max_minutes, or unset it, to run them all")
        return (f"the time budget ({minutes}) ran out at step {step}, before the planned end of the learning-rate "
                "schedule; a larger train.max_minutes trains longer")
