"""Optional experiment trackers beside metrics.jsonl: Weights & Biases and TensorBoard.

``metrics.jsonl`` is always written (by :class:`cs336_basics.runs.metrics.MetricsLog`);
the trackers here mirror the same events and are imported lazily, so neither
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


class Tracker:
    """Receives every logged event; ``step`` is the optimizer step."""

    run_id: str | None = None

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _numeric(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


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
        prefix = {"train": "train/", "eval": "val/"}.get(event, f"{event}/")
        self.run.log({prefix + k: v for k, v in _numeric(values).items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        for key, value in _numeric(values).items():
            self.writer.add_scalar(f"{event}/{key}", value, global_step=step)
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
