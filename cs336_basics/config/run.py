"""RunConfig: the five sections of a run, what they derive, and which fields a run's own choices leave unused.

A run is described by one :class:`RunConfig`; it is written as ``config.toml``
into its run directory, and everything that reads a run reads that file.

- ``model``     -> :class:`cs336_basics.config.model.ModelConfig`
- ``optimizer`` -> :class:`cs336_basics.config.training.OptimizerConfig`
- ``data``      -> :class:`cs336_basics.config.training.DataConfig`
- ``train``     -> :class:`cs336_basics.config.training.TrainConfig`
- ``logging``   -> :class:`cs336_basics.config.training.LoggingConfig`

Some fields only apply under a choice made by another one (the number of experts
under ``model.ffn = "moe"``, the Muon settings under ``optimizer.name = "muon"``).
:data:`CONDITIONAL_FIELDS` lists them next to the sections, so that comparisons of
runs (:mod:`cs336_basics.runs.records`) do not tell runs apart by settings that
changed nothing; :func:`unused_fields` applies it to a flattened config as read
from a run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_type_hints

from cs336_basics.config.model import ModelConfig
from cs336_basics.config.training import DataConfig, LoggingConfig, OptimizerConfig, TrainConfig
from cs336_basics.config.variants import FFN, POSITION


@dataclass
class RunConfig:
    """Everything that determines a training run; written as ``config.toml`` into its run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The network's shape and variant choices."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """AdamW hyper-parameters, learning-rate schedule and gradient clipping."""
    data: DataConfig = field(default_factory=DataConfig)
    """Where the token files and the tokenizer live."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Batch size, length of the run, evaluation/checkpoint cadence, device."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Console, metrics.jsonl, Weights & Biases and TensorBoard settings."""

    def tokens_per_step(self, world_size: int = 1) -> int:
        """Training tokens one optimizer step consumes: ``train.batch_size`` sequences per process (already the
        whole step, gradient accumulation only splits it) x processes x ``model.context_length``."""
        return self.train.batch_size * world_size * self.model.context_length


MUON_FIELDS = tuple(f"optimizer.{f.name}" for f in fields(OptimizerConfig) if f.name.startswith("muon_"))
"""The settings of Muon's part of the update (``optimizer.muon_*``)."""


@dataclass(frozen=True)
class ConditionalFields:
    """Fields that apply only when the field ``choice`` holds a value ``applies`` accepts."""

    choice: str
    """The deciding field, flattened (``model.ffn``)."""
    applies: Callable[[Any], bool]
    """Whether the fields apply under a value of ``choice`` (called only with a value the config allows)."""
    keys: tuple[str, ...]
    """The flattened fields that apply only then."""

    @property
    def allowed(self) -> tuple[Any, ...]:
        """The values the ``Literal`` type of ``choice`` allows; another value (say, in a run written by another
        version) decides nothing."""
        section, name = self.choice.split(".")
        return get_args(get_type_hints(get_type_hints(RunConfig)[section])[name])


CONDITIONAL_FIELDS = (
    ConditionalFields("model.ffn", lambda name: FFN[name].experts,
                      ("model.num_experts", "model.moe_top_k", "model.moe_aux_loss_coef")),
    ConditionalFields("model.position", lambda name: POSITION[name].rotary, ("model.rope_theta",)),
    ConditionalFields("optimizer.schedule", lambda name: name == "wsd", ("optimizer.wsd_decay_fraction",)),
    ConditionalFields("optimizer.schedule", lambda name: name == "cosine", ("optimizer.cosine_cycle_iters",)),
    ConditionalFields("optimizer.name", lambda name: name == "muon", MUON_FIELDS),
)
"""Which fields matter to which choice: every field that one variant, schedule or optimizer leaves unused."""


def unused_fields(flat: Mapping[str, Any]) -> set[str]:
    """The keys of a flattened config (``{"model.ffn": "swiglu", ...}``) that its own choices leave unused.

    A choice that is missing, or holds a value this version does not know, leaves every key in place.
    """
    unused: set[str] = set()
    for rule in CONDITIONAL_FIELDS:
        value = flat.get(rule.choice)
        if value in rule.allowed and not rule.applies(value):
            unused.update(k for k in rule.keys if k in flat)
    return unused
