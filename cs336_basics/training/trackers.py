"""Optional experiment trackers beside metrics.jsonl: Weights & Biases and TensorBoard.

``metrics.jsonl`` is always written (by :class:`cs336_basics.runs.metrics.MetricsLog`);
the trackers here mirror the same events under one naming scheme
(:func:`tracker_metrics`: ``train/loss``, ``val/loss``, ``val/bpb``, ...; the step
is the x-axis, wall-clock time is the tracker's own) and are imported lazily, so neither
package is needed unless asked for. Asking for one that is not installed is a
one-line error with the install command. W&B honours ``WANDB_MODE``
(``offline`` writes locally, ``disabled`` does nothing), and a resumed run keeps
its W&B run id (stored in the checkpoint) so its curves continue in place.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.runs.metrics import BOOKKEEPING, Event, Field


class Tracker:
    """Receives every logged event; ``step`` is the optimizer step."""

    run_id: str | None = None

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


_VALIDATION_NAMES = {Field.VAL_LOSS: "loss", Field.VAL_PPL: "perplexity", Field.VAL_BPB: "bpb", Field.VAL_TOP1: "top1",
                     Field.VAL_TOP5: "top5", Field.VAL_TOKENS: "tokens", Field.EVAL_SECONDS: "seconds"}

# metrics.jsonl event -> (tracker prefix, {field: tracker name}); fields not listed keep their own name
TRACKER_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    Event.TRAIN: ("train", {f: f for f in (Field.LOSS, Field.LR, Field.GRAD_NORM, Field.TOKENS_PER_S, Field.MFU,
                                           Field.AUX_LOSS, Field.SKIPPED_STEPS)}),
    Event.EVAL: ("val", {**_VALIDATION_NAMES, Field.BEST_VAL_LOSS: "best_loss"}),
    Event.EVAL_FULL: ("val_whole_file", _VALIDATION_NAMES),
    Event.SAMPLES: ("samples", {}),
    Event.NONFINITE: ("train", {Field.IN_A_ROW: "nonfinite_in_a_row"}),
}
NOT_CHARTED = set(BOOKKEEPING)
"""Bookkeeping every record carries: the step is the x-axis, time and wall-clock are the trackers' own."""


def tracker_metrics(event: str, values: dict[str, Any]) -> dict[str, float]:
    """One naming scheme for every tracker: ``train/loss``, ``train/lr``, ``val/loss``, ``val/bpb``, ...

    Only numbers are kept, and none of the bookkeeping (:data:`NOT_CHARTED`): events that are not
    metrics (start, end, resume) give nothing.
    """
    if event not in TRACKER_NAMES:
        return {}
    prefix, names = TRACKER_NAMES[event]
    out = {}
    for key, value in values.items():
        if key in NOT_CHARTED or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if event == Event.NONFINITE and key not in names:
            continue  # its loss/grad_norm are NaN by definition and would break the train/ charts
        out[f"{prefix}/{names.get(key, key)}"] = float(value)
    return out


def require_available(logging_cfg) -> None:
    """Fail before any work when a requested tracker's package is missing."""
    if logging_cfg.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError("logging.wandb is true but wandb is not installed; "
                        "pip install 'cs336_basics[wandb]' or set logging.wandb=false")
    if logging_cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("logging.tensorboard is true but tensorboard is not installed; "
                        "pip install tensorboard or set logging.tensorboard=false")


class WandbTracker(Tracker):
    def __init__(self, project: str, entity: str | None, name: str, run_dir: Path, config: dict[str, Any],
                 run_id: str | None) -> None:
        import wandb

        self._wandb = wandb
        self.run = wandb.init(project=project, entity=entity, name=name, dir=str(run_dir), config=config,
                              id=run_id, resume="allow" if run_id else None)
        self.run_id = getattr(self.run, "id", None)

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        metrics = tracker_metrics(event, values)
        if metrics:
            self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        walltime = values.get("time") if isinstance(values.get("time"), (int, float)) else None
        for key, value in tracker_metrics(event, values).items():
            self.writer.add_scalar(key, value, global_step=step, walltime=walltime)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def build_trackers(logging_cfg, run_name: str, run_dir: Path, config: dict[str, Any],
                   wandb_run_id: str | None) -> list[Tracker]:
    require_available(logging_cfg)
    trackers: list[Tracker] = []
    if logging_cfg.wandb:
        trackers.append(WandbTracker(logging_cfg.wandb_project, logging_cfg.wandb_entity, run_name, run_dir, config,
                                     wandb_run_id))
    if logging_cfg.tensorboard:
        trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
    return trackers
