"""Continuing a run from a checkpoint: the checks before anything is written, and the restore after.

:func:`read_resumable` reads the checkpoint (a :class:`~cs336_basics.runs.train_state.TrainState`)
and refuses, in one line naming the setting to change, a checkpoint this run
cannot continue: another model config, an optimizer state the configured
optimizer cannot take, another tokenizer, a step past the run's length, or
weights that are not finite. It runs before the run directory is touched, so a
refused resume changes nothing on disk.

:func:`restore_parts` loads the weights, the optimizer state, the batch
sampler's position and every RNG stream into freshly built training parts;
the trainer restores its own counters from the same state.
"""

from __future__ import annotations

from pathlib import Path

from cs336_basics.config import ModelConfig, from_dict
from cs336_basics.errors import UserError
from cs336_basics.runs.checkpoint import load_model_weights, read_checkpoint
from cs336_basics.runs.train_state import TrainState
from cs336_basics.training.resolve import check_optimizer_resumable
from cs336_basics.training.rng import set_rng_state
from cs336_basics.training.step import TrainingParts


def _check_model(cfg, saved_config, source: Path) -> None:
    """A UserError naming the first model setting where the checkpoint's config and this run's differ."""
    if not (isinstance(saved_config, dict) and isinstance(saved_config.get("model"), dict)):
        return
    saved_model = from_dict(ModelConfig, saved_config["model"], prefix="model")
    if saved_model != cfg.model:
        diff = [f"model.{k}={getattr(saved_model, k)!r} (config says {getattr(cfg.model, k)!r})"
                for k in vars(saved_model) if getattr(saved_model, k) != getattr(cfg.model, k)]
        raise UserError(f"checkpoint {source} was trained with {diff[0]}; resume with the same model config")


def read_resumable(source: Path, cfg, fingerprint: str | None, limit: int | None) -> TrainState:
    """The state at ``source``, checked that a run of ``cfg`` (tokenizer ``fingerprint``, at most ``limit`` steps)
    can continue it; nothing is written."""
    state = TrainState.from_checkpoint(read_checkpoint(source))
    _check_model(cfg, state.config, source)
    check_optimizer_resumable(cfg, state.config, state.optimizer, source)
    if fingerprint and state.tokenizer_fingerprint not in (None, fingerprint):
        raise UserError(f"checkpoint {source} was trained with a different tokenizer than data.tokenizer_dir; "
                        "resume with the run's original dataset")
    if limit is not None and state.step > limit:
        raise UserError(f"checkpoint {source} is at step {state.step}, past the run's {limit} steps; "
                        "raise train.total_steps/total_tokens to continue")
    state.check_finite(str(source), "resume from an earlier checkpoints/step_*.pt with --resume PATH")
    return state


def restore_parts(state: TrainState, parts: TrainingParts, source: Path) -> None:
    """Load the weights, the optimizer state, the sampler's position and the RNG streams of ``state``."""
    load_model_weights(parts.model, state.model, str(source))
    if state.optimizer is not None:
        parts.optimizer.load_state_dict(state.optimizer)
    if state.sampler is not None:
        parts.sampler.load_state_dict(state.sampler)
    if state.rng is not None:
        set_rng_state(state.rng)
