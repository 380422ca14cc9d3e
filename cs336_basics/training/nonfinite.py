"""The non-finite policy: a NaN or infinite loss skips its step; too many in a row, or weights that are no
longer finite, end the run as diverged.

- A step whose loss or gradient norm is not finite has its update skipped by
  :class:`~.step.TrainStep`. :class:`NonFiniteGuard` counts such steps (in a
  row and in all, for the ``end`` record) and says when ``train.max_nonfinite``
  of them in a row end the run (``stop_reason`` ``diverged_nonfinite``).
- :func:`check_weights` looks at every weight and optimizer moment: an update
  from a finite loss can still overflow them (a NaN learning rate, a zero
  epsilon), which the per-step checks cannot see. The trainer runs it at every
  logged step and before anything is written from the weights.
  :class:`NonFiniteState` ends the run without writing anything from those
  weights; a validation loss that is not finite raises it too.
- :func:`nonfinite_stop_message` is the console line of such a stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cs336_basics.runs.checkpoint import first_nonfinite, model_state_dict, optimizer_tensors

ADVICE = "Try a lower optimizer.lr_max."


class NonFiniteState(Exception):
    """A weight or optimizer moment became NaN/inf, or the validation loss did: the run stops without writing
    anything from the weights. ``tensor`` names the tensor, or is None for the validation loss."""

    def __init__(self, tensor: str | None) -> None:
        super().__init__(tensor)
        self.tensor = tensor


def check_weights(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`NonFiniteState` when a weight or an optimizer moment is NaN or infinite."""
    bad = first_nonfinite(model_state_dict(model)) or first_nonfinite(optimizer_tensors(optimizer.state_dict()))
    if bad is not None:
        raise NonFiniteState(bad)


@dataclass
class NonFiniteGuard:
    """Counts the steps whose loss or gradient was not finite; ``max_in_a_row`` of them in a row end the run."""

    max_in_a_row: int
    """``train.max_nonfinite``."""
    in_a_row: int = 0
    total: int = 0

    def record(self, finite: bool) -> bool:
        """Count one step; returns ``finite``."""
        if finite:
            self.in_a_row = 0
        else:
            self.in_a_row += 1
            self.total += 1
        return finite

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.max_in_a_row

    def stop_message(self, step: int) -> str:
        return (f"stopping: {self.in_a_row} non-finite losses/gradients in a row at step {step} "
                f"(train.max_nonfinite); the last good checkpoint is kept. {ADVICE}")


def nonfinite_stop_message(tensor: str | None, step: int, kept: Path | None) -> str:
    """The console line of a stop on non-finite weights (``tensor`` names one) or a non-finite validation loss;
    ``kept`` is the checkpoint that stays the last one."""
    if tensor is not None:
        what = f"the weights are not finite after step {step} (NaN or inf in {tensor})"
    else:
        what = (f"the validation loss is not finite at step {step} (the model's logits overflow to NaN or "
                "inf)")
    return (f"stopping: {what}; nothing is saved from these weights"
            + (f", {kept} stays the last {'good ' if tensor else ''}checkpoint" if kept else "")
            + f". {ADVICE}")
