"""Configs for the optimizer/schedule, the data, the training loop and logging.

The original workflow's options map onto these: run name -> ``train.run_name``,
dataset directory -> ``data.dataset_dir``, checkpoint path -> ``train.checkpoint``,
training batch size -> ``train.batch_size``, total training tokens ->
``train.total_tokens``, eval batch size -> ``train.eval_batch_size``, lr max/min
-> ``optimizer.lr_max``/``optimizer.lr_min``, warmup iterations ->
``optimizer.warmup_iters``.

Cross-field checks (positive sizes, gradient accumulation dividing the batch)
live in ``__post_init__`` so a bad file or ``--set`` fails at load time with a
one-line error naming the key, not minutes into a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal


def _finite(section: Any, name: str, fields: tuple[str, ...]) -> None:
    """A ValueError naming the first field that is NaN or infinite (no setting is meaningful there)."""
    for field_name in fields:
        value = getattr(section, field_name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name}.{field_name} must be a finite number, got {value}")


LR_LIMIT = 1e20
"""The largest learning rate accepted (``optimizer.lr_max``, ``optimizer.muon_lr``): far above any rate that
trains (a sweep looking for the divergence edge goes to 10-100), and low enough that the update's step size
``lr / (1 - beta1^t)`` (beta1 < 1 in float64: a factor below 1e16) stays within float32's range, so such a
rate diverges as a run instead of failing as arithmetic."""


def _check_learning_rate(name: str, value: float) -> None:
    """A ValueError unless ``optimizer.NAME`` (a finite peak rate) is positive and at most :data:`LR_LIMIT`."""
    if not value > 0:
        raise ValueError(f"optimizer.{name} must be > 0, got {value}")
    if value > LR_LIMIT:
        raise ValueError(f"optimizer.{name} = {value:g} is beyond any learning rate that trains (at most "
                         f"{LR_LIMIT:g}; typical values are 1e-4 to 1e-2); check the value")


@dataclass(frozen=True)
class OptimizerSpec:
    """One value of ``optimizer.name``; its builder is ``OPTIMIZER_BUILDERS[name]`` in :mod:`cs336_basics.training.step`
    (a test checks that the names agree and that each builder reads exactly ``reads``)."""

    doc: str
    reads: tuple[str, ...]
    """The OptimizerConfig fields its builder reads (the schedule's and grad_clip are the loop's, for every name)."""


_ADAMW_READS = ("lr_max", "beta1", "beta2", "eps", "weight_decay", "decay_all", "foreach", "compile")
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adamw": OptimizerSpec("AdamW for every parameter (Loshchilov & Hutter 2019)", _ADAMW_READS),
    "muon": OptimizerSpec("Muon for the blocks' 2-D matrices, AdamW for embeddings, LM head, norms and biases "
                          "(Jordan 2024)", _ADAMW_READS + ("muon_lr", "muon_momentum", "muon_nesterov",
                                                           "muon_ns_steps", "muon_weight_decay")),
}
"""Every optimizer, by the name ``optimizer.name`` takes: the one list of allowed names."""
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
OptimizerName = Literal[OPTIMIZER_NAMES]  # type: ignore[valid-type]


@dataclass
class OptimizerConfig:
    name: OptimizerName = "adamw"
    """Optimizer: AdamW for every parameter, or Muon for the blocks' 2-D matrices with AdamW for embeddings, LM head, norms and biases (Jordan 2024)."""
    lr_max: float = 1e-3
    """Peak learning rate (reached at the end of warmup); with Muon, the AdamW part's."""
    lr_min: float = 1e-4
    """Final learning rate of the cosine/WSD decay."""
    warmup_iters: int = 100
    """Linear warmup steps from 0 to lr_max."""
    schedule: Literal["cosine", "constant", "wsd"] = "cosine"
    """Learning-rate schedule after warmup."""
    cosine_cycle_iters: int | None = None
    """Step at which the cosine reaches lr_min; None means the last training step."""
    wsd_decay_fraction: float = 0.2
    """WSD only: fraction of the run spent in the final decay."""
    beta1: float = 0.9
    """AdamW first-moment decay."""
    beta2: float = 0.95
    """AdamW second-moment decay."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay for matrices."""
    decay_all: bool = False
    """Also decay norms, biases and embeddings (by default they are in a no-decay group)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 turns clipping off (negative values are errors)."""
    foreach: bool | None = None
    """AdamW's multi-tensor path (torch._foreach_* ops over many parameters per call; the same update and checkpoint format as the per-tensor loop); None: on for CUDA, and on a CPU the fused C update takes every float32 tensor where it is built (cs336_basics.training.fused_adamw), the rest taking the multi-tensor path only where it measured faster (cs336_basics.training.optimizer.CPU_FOREACH); true or false picks that path for every tensor."""
    compile: bool = False
    """Compile AdamW's multi-tensor update with torch.compile: each tensor's update becomes one pass over memory (faster where the step is memory-bound, as on CPUs), at the cost of compiling at start (seconds to minutes, growing with the number of parameter tensors); worth it for long runs."""
    muon_lr: float = 0.02
    """Muon only: peak learning rate of the hidden matrices; the schedule scales it by the same factor as lr_max."""
    muon_momentum: float = 0.95
    """Muon only: momentum (EMA decay) of the hidden matrices' gradients."""
    muon_nesterov: bool = True
    """Muon only: orthogonalise the Nesterov look-ahead of the momentum instead of the momentum itself."""
    muon_ns_steps: int = 5
    """Muon only: Newton-Schulz iterations per update."""
    muon_weight_decay: float = 0.0
    """Muon only: decoupled weight decay of the hidden matrices (weight_decay stays the AdamW part's)."""

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZER_NAMES:
            raise ValueError(f"optimizer.name: {self.name!r} is not one of {', '.join(OPTIMIZER_NAMES)}")
        _finite(self, "optimizer", ("lr_max", "lr_min", "beta1", "beta2", "eps", "weight_decay", "grad_clip",
                                    "wsd_decay_fraction", "muon_lr", "muon_momentum", "muon_weight_decay"))
        if not isinstance(self.compile, bool):
            raise ValueError(f"optimizer.compile must be true or false, got {self.compile!r}")
        if self.foreach is not None and not isinstance(self.foreach, bool):
            raise ValueError(f"optimizer.foreach must be true, false or unset, got {self.foreach!r}")
        for name in ("lr_max", "muon_lr"):
            _check_learning_rate(name, getattr(self, name))
        if not 0 <= self.muon_momentum < 1:
            raise ValueError(f"optimizer.muon_momentum must be in [0, 1), got {self.muon_momentum}")
        if not 1 <= self.muon_ns_steps <= 100:
            raise ValueError(f"optimizer.muon_ns_steps must be between 1 and 100, got {self.muon_ns_steps}")
        if self.muon_weight_decay < 0:
            raise ValueError(f"optimizer.muon_weight_decay must be >= 0, got {self.muon_weight_decay}")
        if not 0 <= self.lr_min <= self.lr_max:
            raise ValueError(f"optimizer.lr_min must be in [0, lr_max = {self.lr_max}], got {self.lr_min}")
        if self.warmup_iters < 0:
            raise ValueError(f"optimizer.warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.cosine_cycle_iters is not None and self.cosine_cycle_iters <= 0:
            raise ValueError(f"optimizer.cosine_cycle_iters must be positive or unset, got {self.cosine_cycle_iters}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"optimizer.beta1/beta2 must be in [0, 1), got {self.beta1}/{self.beta2}")
        if not self.eps > 0:
            raise ValueError(f"optimizer.eps must be > 0 (it keeps the update finite where a gradient is 0), "
                             f"got {self.eps}")
        if self.weight_decay < 0:
            raise ValueError(f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"optimizer.grad_clip must be > 0, or 0 to turn clipping off, got {self.grad_clip}")
        if not 0 <= self.wsd_decay_fraction <= 1:
            raise ValueError(f"optimizer.wsd_decay_fraction must be in [0, 1], got {self.wsd_decay_fraction}")


@dataclass
class DataConfig:
    dataset_dir: str | None = None
    """A dataset directory (data/NAME) holding train.npy, valid.npy and tokenizer/."""
    train_path: str | None = None
    """Training token file; defaults to DATASET_DIR/train.npy."""
    valid_path: str | None = None
    """Validation token file; defaults to DATASET_DIR/valid.npy."""
    tokenizer_dir: str | None = None
    """Tokenizer directory; defaults to DATASET_DIR/tokenizer."""


@dataclass
class TrainConfig:
    run_name: str = "run"
    """Name of the run directory under runs_dir."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    batch_size: int = 32
    """Sequences per optimizer step (per process, before gradient accumulation is split)."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step."""
    total_steps: int | None = None
    """Optimizer steps; derived from total_tokens when None."""
    total_tokens: int | None = None
    """Training tokens; steps = total_tokens / (batch_size * context_length)."""
    max_minutes: float | None = None
    """Wall-clock budget of the run in minutes: the step count is re-planned from the measured speed so the schedule ends when the time is up (total_steps/total_tokens, when also set, stay an upper bound)."""
    eval_interval: int = 200
    """Steps between validation passes; 0 trains without any validation (the only way to train without a validation file)."""
    eval_batch_size: int = 32
    """Sequences per validation batch."""
    eval_tokens: int | None = None
    """Validate on this fixed leading subset of the validation file during training (None: all of it)."""
    final_eval: bool = True
    """With eval_tokens set, end a completed run with one pass over the whole validation file (event eval_full)."""
    checkpoint_interval: int = 1000
    """Steps between checkpoints."""
    stop_at_step: int | None = None
    """Save and stop after this many steps without changing the schedule (split a long run into jobs; --resume auto continues)."""
    checkpoint: str | None = None
    """Explicit checkpoint path to start from (weights, optimizer and position)."""
    keep_last: int = 3
    """Step checkpoints kept (best.pt and latest.pt are extra); 0 keeps all."""
    seed: int = 0
    """Seed for initialisation, batch sampling and dropout."""
    device: str = "auto"
    """cuda, mps, cpu, or auto."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Autocast dtype; auto means bf16 on CUDA and on a CPU with native bf16 where the run's own step measured
    faster in it (cached per machine and shape), float32 elsewhere. Parameters and optimizer state stay float32."""
    compile: bool | Literal["auto"] = "auto"
    """Wrap the model in torch.compile: true, false, or auto (CPU: eager, which runs the C kernels; CUDA: compiled for runs of at least 2,000 planned steps). The decision is written to metrics.jsonl."""
    max_nonfinite: int = 5
    """Consecutive non-finite losses/gradients before the run stops (each such step skips its update)."""
    divergence_loss: float | None = None
    """Stop the run as diverged when the training loss exceeds this after updates with a positive learning rate; None: the larger of 2 ln(vocab_size) and the run's first loss + ln(vocab_size); 0 disables."""
    overwrite: bool = False
    """Allow starting a fresh run in a run directory that already holds metrics or checkpoints (they are replaced)."""
    samples: bool = True
    """Write generated samples to samples/ at every evaluation (needs a tokenizer)."""
    peak_tflops: float | None = None
    """Peak TFLOP/s of the device for the MFU column; None: looked up for known GPUs, no MFU otherwise."""

    def __post_init__(self) -> None:
        _finite(self, "train", ("divergence_loss", "peak_tflops", "max_minutes"))
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"train.max_minutes must be positive or unset, got {self.max_minutes}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"train.seed must be an integer in [0, 2^63), got {self.seed}")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ValueError(f"train.peak_tflops must be positive or unset, got {self.peak_tflops}")
        if self.divergence_loss is not None and self.divergence_loss < 0:
            raise ValueError(f"train.divergence_loss must be >= 0 (0 disables the check) or unset, "
                             f"got {self.divergence_loss}")
        if self.stop_at_step is not None and self.stop_at_step <= 0:
            raise ValueError(f"train.stop_at_step must be positive or unset, got {self.stop_at_step}")
        if self.eval_interval < 0:
            raise ValueError(f"train.eval_interval must be positive, or 0 to train without validation, "
                             f"got {self.eval_interval}")
        for name in ("batch_size", "grad_accum_steps", "eval_batch_size", "checkpoint_interval", "max_nonfinite"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("total_steps", "total_tokens", "eval_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"train.{name} must be positive (or unset), got {value}")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be divisible by train.grad_accum_steps "
                             f"({self.grad_accum_steps})")
        if self.keep_last < 0:
            raise ValueError(f"train.keep_last must be >= 0, got {self.keep_last}")
        if not self.run_name or "/" in self.run_name or self.run_name in (".", ".."):
            raise ValueError(f"train.run_name {self.run_name!r} must be a plain directory name")

    @property
    def micro_batch(self) -> int:
        """Sequences per forward/backward pass: the step's ``batch_size`` split into ``grad_accum_steps`` parts."""
        return self.batch_size // self.grad_accum_steps


@dataclass
class LoggingConfig:
    log_interval: int = 10
    """Steps between console/metrics.jsonl training-loss lines."""
    wandb: bool = False
    """Also log to Weights & Biases (honours WANDB_MODE)."""
    wandb_project: str = "cs336"
    """W&B project name."""
    wandb_entity: str | None = None
    """W&B entity (user or team); None: your default."""
    tensorboard: bool = False
    """Also write TensorBoard event files into the run directory."""
    quiet: bool = False
    """No progress bars."""

    def __post_init__(self) -> None:
        if self.log_interval <= 0:
            raise ValueError(f"logging.log_interval must be positive, got {self.log_interval}")
