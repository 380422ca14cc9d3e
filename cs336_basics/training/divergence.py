"""When a run has diverged: a training loss far above where the run itself started, after real updates.

A loss threshold alone misjudges healthy runs: a model whose first loss is high
(a wide model, a large vocabulary) would be "diverged" before it has taken a
single step. :class:`DivergenceRule` therefore

- judges a step's loss only once an update with a positive learning rate has
  been applied (the losses before that are the initial model's, whatever the
  schedule), and never at a step whose own learning rate is 0;
- by default compares it with the run's own start: the limit is the larger of
  ``2 ln(vocab_size)`` and the run's first loss plus ``ln(vocab_size)``; an
  explicit ``train.divergence_loss`` is an absolute limit instead (0 turns the
  rule off);
- explains a stop by its likely cause: updates that make the model worse mean
  a learning rate too high for it (or a warm-up too short, or no clipping).

The start loss travels in checkpoints, so a resumed run keeps judging against
the same start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class DivergenceRule:
    vocab_size: int
    explicit: float | None = None
    """``train.divergence_loss``: None for the default rule, 0 to turn the rule off."""
    start_loss: float | None = None
    """The run's first finite training loss (the initial model's)."""
    moved: bool = False
    """Whether an update with a positive learning rate has been applied."""

    def limit(self) -> float:
        if self.explicit is not None:
            return self.explicit if self.explicit > 0 else math.inf
        uniform = math.log(self.vocab_size)
        start = self.start_loss if self.start_loss is not None else uniform
        return max(2.0 * uniform, start + uniform)

    def exceeded(self, loss: float, lr: float, applied: bool) -> bool:
        """Record one step (its loss, learning rate, and whether its update was applied); True when it diverged."""
        finite = math.isfinite(loss)
        if finite and self.start_loss is None:
            self.start_loss = loss
        judged = finite and self.moved and lr > 0 and loss > self.limit()
        if applied and lr > 0:
            self.moved = True
        return judged

    def describe_limit(self) -> str:
        if self.explicit is not None:
            return f"train.divergence_loss = {self.explicit:.3f}"
        uniform = math.log(self.vocab_size)
        if self.start_loss is not None and self.start_loss + uniform > 2.0 * uniform:
            return (f"the run's first loss {self.start_loss:.3f} + ln(vocab_size) {uniform:.3f} "
                    "(train.divergence_loss sets a limit of your own)")
        return (f"2 ln(vocab_size) = {2.0 * uniform:.3f}, twice the loss of a uniform guess "
                "(train.divergence_loss sets a limit of your own)")

    def advice(self, loss: float, step: int, optimizer) -> str:
        """The console line of a stop: what was exceeded, and the likely cause with the settings to change."""
        rates = f"optimizer.lr_max = {optimizer.lr_max:g}"
        if optimizer.name == "muon":
            rates += f", optimizer.muon_lr = {optimizer.muon_lr:g}"
        fixes = "lower the learning rate"
        if optimizer.warmup_iters < 100:
            fixes += f" or lengthen the warm-up (optimizer.warmup_iters = {optimizer.warmup_iters})"
        if optimizer.grad_clip == 0:
            fixes += " or turn gradient clipping on (optimizer.grad_clip = 1)"
        start = f" (it started at {self.start_loss:.3f})" if self.start_loss is not None else ""
        return (f"stopping: training loss {loss:.3f} at step {step} exceeds {self.describe_limit()}{start}: the "
                f"updates are making the model worse, the sign of a learning rate too high for it ({rates}); "
                f"{fixes}. The run diverged; its checkpoints so far are kept.")
