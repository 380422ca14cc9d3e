"""What a training checkpoint holds: :class:`TrainState`, and its conversion to and from the checkpoint dict.

A training checkpoint is the handout's checkpoint (``model``, ``optimizer``,
``iteration``; see :mod:`.checkpoint`) plus everything a resumed run needs to
continue bit for bit: the resolved config, every RNG state and the batch
sampler's position, the tokens seen, the validation losses, the wall-clock
spent, the step count a time budget planned, the loss the divergence rule
judges against, the tokenizer fingerprint and the W&B run id.

The dict on disk keeps the handout's key names (``iteration`` for the step) and
the order of the fields below. :func:`TrainState.from_checkpoint` reads any
checkpoint :func:`~.checkpoint.read_checkpoint` accepts: an entry missing from an
older or foreign file takes its default (a bare state dict is a model at step 0).
The values are tensors and plain data only, so ``torch.load(weights_only=True)``
reads them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cs336_basics.runs.checkpoint import CHECKPOINT_FORMAT, check_finite

STEP_KEY = "iteration"
"""The checkpoint key of :attr:`TrainState.step` (the handout's name)."""


@dataclass
class TrainState:
    """One training checkpoint, field by field, in the order the checkpoint dict holds them."""

    model: dict[str, Any]
    """The model's state dict, without ``torch.compile``/DDP wrapper prefixes."""
    optimizer: dict[str, Any] | None = None
    """The optimizer's state dict (moments and parameter groups)."""
    step: int = 0
    """Optimizer steps completed (stored as ``iteration``)."""
    tokens: int | None = None
    """Training tokens seen (None when the file does not say: the trainer counts steps x tokens per step)."""
    config: dict[str, Any] | None = None
    """The resolved run config, as ``config.to_dict`` writes it."""
    lr: float | None = None
    """The learning rate of the last step taken."""
    rng: dict[str, Any] | None = None
    """Every global RNG state (Python, NumPy, torch CPU and CUDA)."""
    sampler: dict[str, Any] | None = None
    """The batch sampler's state: where the data stream continues."""
    best_val_loss: float | None = None
    final_val_loss: float | None = None
    """The latest periodic validation loss."""
    tokenizer_fingerprint: str | None = None
    """The tokenizer the run's token files were made with (a resume with another one is refused)."""
    wandb_run_id: str | None = None
    """A resumed run continues the same W&B run."""
    wallclock: float = 0.0
    """Seconds of run wall-clock spent so far, across resumes (a time budget counts them)."""
    planned_total_steps: int | None = None
    """The step count planned when the checkpoint was written (under a time budget, the re-planned one)."""
    start_loss: float | None = None
    """The run's first finite training loss: what the divergence rule compares with after a resume."""

    def to_checkpoint(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes: ``format``, then every field (the step as ``iteration``)."""
        out: dict[str, Any] = {"format": CHECKPOINT_FORMAT}
        for f in dataclasses.fields(self):
            out[STEP_KEY if f.name == "step" else f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_checkpoint(cls, obj: dict[str, Any]) -> TrainState:
        """The state in a checkpoint dict (from :func:`~.checkpoint.read_checkpoint`); missing entries take their
        defaults."""
        values = {f.name: obj.get(STEP_KEY if f.name == "step" else f.name, f.default)
                  for f in dataclasses.fields(cls) if f.name != "model"}
        values["step"] = int(values["step"] or 0)
        values["wallclock"] = float(values["wallclock"] or 0.0)
        return cls(model=obj["model"], **values)

    def check_finite(self, name: str, hint: str) -> None:
        """A UserError naming the tensor when the weights or the optimizer moments hold NaN or inf."""
        check_finite({"model": self.model, "optimizer": self.optimizer}, name, hint)
