"""A wall-clock budget for a run (``train.max_minutes``): the step count follows the measured speed.

A fixed step count planned from one timed step is wrong whenever the machine's
speed changes (another process starts, the CPU throttles, a laptop goes on
battery): on a busy 2-core machine a "9 minute" quickstart took over 20. With
a budget, the trainer re-plans the total number of steps at every logged step
from the speed it has actually measured so far in this run (seconds per step,
evaluations included), and rebuilds the learning-rate schedule for the new
total, so cosine or WSD reach their final phase when the time is up rather than
when a guess said. A budget that runs out before the plan ends the run at once
(the plan is then shortened to the current step). ``train.total_steps`` /
``train.total_tokens``, when set as well, stay an upper bound.

The budget covers the training loop and the final evaluations; a reserve for
the final whole-file evaluation is estimated from the measured step time (a
forward pass costs about a third of a training step per token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROVISIONAL_STEPS = 1000
"""The plan before any step has been timed (re-planned after the first logged steps)."""


@dataclass
class TimeBudget:
    seconds: float
    """The whole budget, in seconds of run wall-clock (resumed runs count what they already spent)."""
    cap: int | None = None
    """An upper bound on the steps (train.total_steps / total_tokens when set)."""
    min_steps: int = 1

    def plan(self, step: int, elapsed: float, seconds_per_step: float | None, reserve: float = 0.0) -> int:
        """Total steps that fit: the steps done plus what the remaining time allows at the measured speed.

        ``elapsed`` is the wall-clock spent so far, ``reserve`` what the end of the run needs (final
        evaluation). Never fewer than the steps already done (at least ``min_steps``), never above ``cap``.
        """
        if seconds_per_step is None or seconds_per_step <= 0 or not math.isfinite(seconds_per_step):
            total = self.cap if self.cap is not None else max(PROVISIONAL_STEPS, step + 1)
        else:
            remaining = self.seconds - elapsed - reserve
            total = step + max(0, int(remaining / seconds_per_step))
        total = max(total, step, self.min_steps)
        return min(total, self.cap) if self.cap is not None else total

    def expired(self, elapsed: float) -> bool:
        return elapsed >= self.seconds


def final_eval_reserve(seconds_per_step: float | None, tokens_per_step: int, eval_tokens: int) -> float:
    """Seconds a final evaluation of ``eval_tokens`` takes: a forward pass is about a third of a step per token."""
    if not seconds_per_step or eval_tokens <= 0:
        return 0.0
    return seconds_per_step / tokens_per_step / 3.0 * eval_tokens
