"""One optimizer step, shared by the training loop and by anything that needs to know what a step costs.

:class:`TrainStep` is the whole step the loop runs: learning rate from the
schedule (a pure function of the step), ``grad_accum_steps`` micro-batches
forward/backward under the run's autocast (DDP all-reduce only on the last),
global-norm clipping, a finiteness check, the optimizer update (or the fp16
grad scaler's). :func:`build_training_parts` builds the model, optimizer,
schedule and sampler from a config, the same way for a run and for
:func:`measure_step_seconds`, which times this very step (the quickstart sizes
its run to a time budget with it), so the measurement includes autocast,
micro-batching, clipping and ``torch.compile`` exactly when the run does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cs336_basics.model import TransformerLM
from cs336_basics.model.compiled import compile_model
from cs336_basics.runs.checkpoint import unwrap_model
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.runtime.precision import DtypeChoice, autocast, choose_dtype, shape_key
from cs336_basics.training import placement
from cs336_basics.training.clipping import clip_grad_norm_tensor
from cs336_basics.training.compile_choice import choose_compile
from cs336_basics.training.data import BatchSampler
from cs336_basics.training.distributed import DistInfo, all_reduce_mean
from cs336_basics.training.loss import cross_entropy
from cs336_basics.training.muon import build_muon
from cs336_basics.training.optimizer import build_optimizer, set_lr
from cs336_basics.training.schedule import build_schedule


@dataclass
class StepTimings:
    """Seconds spent per phase, to report the loop's overhead beside the model's compute."""

    data: float = 0.0
    compute: float = 0.0
    logging: float = 0.0
    checkpoint: float = 0.0
    eval: float = 0.0
    samples: float = 0.0
    loop: float = 0.0
    """Wall time of the training loop, every step's work included (set by the loop when it ends)."""
    loop_eval: float = 0.0
    """The part of ``loop`` spent in evaluations during training (their samples included)."""

    def overhead_fraction(self) -> float:
        """Everything the loop does that is not forward, backward and the optimizer (sampling batches, logging,
        the finiteness guard, budget re-planning, checkpoints), as a fraction of the loop's time without its
        evaluations; before the loop has ended, (data + logging + checkpointing) / (that + compute)."""
        if self.loop > 0:
            steps = self.loop - self.loop_eval
            return max(steps - self.compute, 0.0) / max(steps, 1e-12)
        overhead = self.data + self.logging + self.checkpoint
        return overhead / max(overhead + self.compute, 1e-12)

    def end_fields(self) -> dict[str, float]:
        """Where the time went, as the ``end`` record of metrics.jsonl holds it."""
        return {"time_data": self.data, "time_compute": self.compute, "time_logging": self.logging,
                "time_checkpoint": self.checkpoint, "time_eval": self.eval, "time_samples": self.samples,
                "overhead_fraction": self.overhead_fraction()}


@dataclass
class StepResult:
    lr: float
    loss: float
    """Mean LM loss of the step's micro-batches (all-reduced); may be non-finite."""
    aux_loss: float
    grad_norm: float
    """Global gradient norm before clipping; may be non-finite."""

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


OPTIMIZER_BUILDERS = {"adamw": build_optimizer, "muon": build_muon}
"""``optimizer.name`` -> ``builder(model, OptimizerConfig)``: the torch side of
:data:`~cs336_basics.config.training.OPTIMIZERS`, which lists the names (checked when the config loads)."""


def optimizer_layout(cfg) -> list[tuple[int, bool]]:
    """(tensors, is a Muon group) for each parameter group of the optimizer ``cfg`` builds, in order.

    The model is built on the meta device (shapes only, no memory, milliseconds), so a resume can compare
    this with a checkpoint's optimizer state before anything is allocated or written.
    """
    with torch.device("meta"):
        model = TransformerLM(cfg.model)
    groups = OPTIMIZER_BUILDERS[cfg.optimizer.name](model, cfg.optimizer).state_dict()["param_groups"]
    return [(len(g["params"]), bool(g.get("muon", False))) for g in groups]


@dataclass
class TrainingParts:
    """What one training step needs, built from a config (see :func:`build_training_parts`)."""

    model: nn.Module
    """The plain model (what checkpoints hold)."""
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    sampler: BatchSampler
    dtype: torch.dtype
    """Autocast dtype (float32: no autocast)."""
    dtype_choice: DtypeChoice
    """How ``dtype`` was chosen (``train.dtype=auto`` may have measured both)."""
    step_model: nn.Module | None = None
    """The model as the step calls it: ``torch.compile`` (see :mod:`cs336_basics.model.compiled`) and DDP
    wrappers around ``model``."""
    scaler: torch.amp.GradScaler | None = None

    def wrap(self, compiled: bool, dist: DistInfo, device: torch.device) -> None:
        """Set ``step_model``: ``model`` compiled (its compile-friendly modules swapped in, in place) and/or in DDP."""
        model = compile_model(self.model) if compiled else self.model
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.step_model = model


def build_training_parts(cfg, train_tokens: np.ndarray, device: torch.device, total_steps: int,
                         dist: DistInfo | None = None) -> TrainingParts:
    """Model (seeded by ``train.seed``, built on the CPU then moved), optimizer, schedule and batch sampler."""
    dist = dist or DistInfo()
    t = cfg.train
    choice = choose_training_dtype(cfg, train_tokens, device, dist)  # before seeding: it may build trial models
    dtype = choice.dtype
    torch.manual_seed(t.seed)
    model = TransformerLM(cfg.model, attention_device=device).to(device)
    sampler = BatchSampler(train_tokens, t.micro_batch, cfg.model.context_length, device, seed=t.seed, rank=dist.rank,
                           world_size=dist.world_size)
    return TrainingParts(model=model, optimizer=OPTIMIZER_BUILDERS[cfg.optimizer.name](model, cfg.optimizer),
                         schedule=build_schedule(cfg.optimizer, total_steps), sampler=sampler, dtype=dtype,
                         dtype_choice=choice, scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None)


@dataclass
class TrainStep:
    """``step(i)`` runs optimizer step ``i`` (0-based) and returns its :class:`StepResult`."""

    parts: TrainingParts
    device: torch.device
    grad_accum_steps: int
    grad_clip: float
    dist: DistInfo = field(default_factory=DistInfo)
    timings: StepTimings = field(default_factory=StepTimings)

    def __call__(self, step: int) -> StepResult:
        p = self.parts
        step_model = p.step_model if p.step_model is not None else p.model
        lr = p.schedule(step)
        set_lr(p.optimizer, lr)
        accum = self.grad_accum_steps
        inner = unwrap_model(p.model)
        loss_sum = torch.zeros((), device=self.device)
        aux_sum = torch.zeros((), device=self.device)
        for micro in range(accum):
            t0 = time.perf_counter()
            x, y = p.sampler.next()  # (B, T) each
            t1 = time.perf_counter()
            self.timings.data += t1 - t0
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else step_model.no_sync()
            with sync:
                with autocast(self.device, p.dtype):
                    logits = step_model(x)  # (B, T, V)
                    loss = cross_entropy(logits, y)
                    aux = getattr(inner, "aux_loss", None)
                    total = loss + aux if isinstance(aux, torch.Tensor) else loss
                    del logits  # the loss keeps what backward needs; this frees a (B, T, V) buffer early
                scaled = total / accum
                (p.scaler.scale(scaled) if p.scaler is not None else scaled).backward()
            loss_sum += loss.detach().float()
            if isinstance(aux, torch.Tensor):
                aux_sum += aux.detach().float()
            self.timings.compute += time.perf_counter() - t1
        t2 = time.perf_counter()
        if p.scaler is not None:
            p.scaler.unscale_(p.optimizer)
        norm = clip_grad_norm_tensor(p.model.parameters(), self.grad_clip)
        reduced = all_reduce_mean(torch.stack([loss_sum, aux_sum]) / accum, self.dist)  # (2,)
        # one device->host transfer per step for everything the loop decides on
        loss_value, aux_value, grad_norm = torch.cat([reduced, norm.reshape(1).to(reduced.device)]).tolist()
        result = StepResult(lr, loss_value, aux_value, grad_norm)
        if p.scaler is not None:
            p.scaler.step(p.optimizer)  # skips the update itself on inf/nan gradients
            p.scaler.update()
        elif result.finite:
            p.optimizer.step()
        p.optimizer.zero_grad(set_to_none=True)
        self.timings.compute += time.perf_counter() - t2
        return result


def choose_training_dtype(cfg, train_tokens: np.ndarray, device: torch.device, dist: DistInfo) -> DtypeChoice:
    """``train.dtype`` resolved for this run; ``auto`` on a CPU with native bf16 times this run's step in both.

    The trial steps run eagerly (without ``train.compile``: compiling twice would cost more than
    the measurement) and are cached per machine and shape. Under DDP nothing is measured, since
    ranks timing independently could choose differently; ``auto`` then keeps the unmeasured rule.
    """
    t = cfg.train

    def measure(dtype: torch.dtype) -> float:
        trial = dataclasses.replace(cfg, train=dataclasses.replace(t, dtype=str(dtype).removeprefix("torch."),
                                                                  compile=False))
        return measure_step_seconds(trial, train_tokens, steps=3, warmup=1)

    key = shape_key("train", {"model": dataclasses.asdict(cfg.model), "micro_batch": t.micro_batch,
                              "device": str(device)})
    return choose_dtype(t.dtype, device, measure=None if dist.enabled else measure, key=key,
                        d_model=cfg.model.d_model)


def measure_step_seconds(cfg, train_tokens: np.ndarray, steps: int = 3, warmup: int = 1) -> float:
    """Median wall time of one training step of ``cfg`` on this machine, right now: the run's own step.

    Few steps on purpose: on a slow or busy machine every calibration step is time the
    budget no longer has, and the first (warm-up) step is not counted (with ``train.compile``
    it pays the compilation). The median, not the mean: one step that coincides with another
    process's burst would otherwise shrink the whole plan (and its evaluation cadence) for a
    run whose loop re-plans from the speed it sees anyway.
    """
    device = resolve_device(cfg.train.device)
    placement.configure_backends(device)
    parts = build_training_parts(cfg, train_tokens, device, total_steps=warmup + steps)
    parts.wrap(choose_compile(cfg.train.compile, device, cfg.train.total_steps or 0).compiled, DistInfo(), device)
    step = TrainStep(parts, device, cfg.train.grad_accum_steps, cfg.optimizer.grad_clip)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))
