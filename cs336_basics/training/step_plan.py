"""How many steps a run takes: the count it asks for, or under ``train.max_minutes`` a plan that follows the speed.

:class:`StepPlan` holds the loop's one total. Without a budget it is
``train.total_steps`` (or ``total_tokens`` over the tokens per step) and never
changes. With a budget (:mod:`.budget`) it starts from the provisional plan, a
resumed run continues its checkpoint's plan, and at each logged step the
:class:`~.budget.BudgetPlanner` re-plans it from the window's measured time;
a budget spent before the plan ends makes the current step the last.

Under DDP every rank must take the same number of steps: ranks time themselves
(and only rank 0 evaluates), so all of them follow the shortest plan, and a
budget spent on any rank ends the run on every rank.
"""

from __future__ import annotations

import torch

from cs336_basics.runs.metrics import StopReason
from cs336_basics.training import console
from cs336_basics.training.budget import BudgetPlanner, TimeBudget
from cs336_basics.training.distributed import DistInfo, any_rank, min_over_ranks
from cs336_basics.training.resolve import total_steps


class StepPlan:
    """The run's total step count, re-planned under a time budget (the same on every rank)."""

    def __init__(self, cfg, dist: DistInfo, device: torch.device) -> None:
        t = cfg.train
        step_cap = total_steps(cfg, dist.world_size)
        self.budget = TimeBudget(t.max_minutes * 60.0, cap=step_cap) if t.max_minutes is not None else None
        self.total: int = step_cap if self.budget is None else self.budget.plan(0, 0.0, None)
        """The steps the run takes, as planned now."""
        self.planner: BudgetPlanner | None = None
        """The budget's planner, once :meth:`plan_evaluations` has told it what the evaluations score."""
        self.dist, self.device = dist, device

    @property
    def limit(self) -> int | None:
        """The most steps the run may take (None: only the budget bounds it)."""
        return self.total if self.budget is None else self.budget.cap

    def resume(self, step: int, planned: int | None) -> None:
        """Continue a checkpoint at ``step`` whose run had planned ``planned`` steps (kept under a budget)."""
        if self.budget is not None:
            self.total = max(int(planned or self.total), step)

    def plan_evaluations(self, valid_tokens: int | None, eval_interval: int, eval_tokens: int | None,
                         final_eval: bool) -> None:
        """Under a budget, build the planner and tell it what each evaluation and the end of the run score."""
        if self.budget is None:
            return
        if valid_tokens is None:
            self.planner = BudgetPlanner(self.budget, 0, 0, 0)
            return
        periodic = min(eval_tokens or valid_tokens, valid_tokens)
        whole = valid_tokens if eval_tokens is not None and final_eval else 0  # the end: a subset pass, the file
        self.planner = BudgetPlanner(self.budget, eval_interval, periodic, periodic + whole)

    def out_of_time(self, wallclock: float, step: int) -> None:
        """When the budget is spent (on any rank) before the plan ends, ``step`` becomes the last."""
        if self.planner is not None and any_rank(self.planner.out_of_time(wallclock, step, self.total), self.dist,
                                                 self.device):
            self.planner.cut = True
            self.total = step

    def replan(self, step: int, wallclock: float, window_seconds: float, window_steps: int) -> bool:
        """Fit the total to the budget after one more logging window; True when it changed."""
        if self.planner is None or step >= self.total:
            return False
        planned = self.planner.replan(step, wallclock, window_seconds, window_steps)
        planned = min_over_ranks(planned if planned is not None else self.total, self.dist, self.device)
        changed, self.total = planned != self.total, planned
        return changed

    def end_reason(self, step: int) -> StopReason:
        """``time_budget`` when the budget, not the steps asked for, ended the run; ``completed`` otherwise."""
        return self.planner.end_reason(step) if self.planner is not None else StopReason.COMPLETED

    def describe(self) -> str:
        """The run's length for its first console line."""
        if self.budget is None:
            return f"{self.total} steps"
        return f"{console.duration(self.budget.seconds)} budget (steps re-planned from the measured speed)"
