"""Learning-rate schedules: cosine with linear warmup, constant, and warmup-stable-decay (WSD).

All are pure functions of the step, so resuming a run needs nothing but the
step number to land on exactly the same learning rate.

- cosine (the CS336 handout / Loshchilov & Hutter's SGDR without restarts):
  ``t < Tw: t/Tw * lr_max``; ``Tw <= t <= Tc``: cosine from lr_max to lr_min;
  after ``Tc``: lr_min.
- constant: linear warmup, then lr_max.
- WSD (Hu et al. 2024, "MiniCPM"; Hägele et al. 2024, "Scaling Laws and
  Compute-Optimal Training Beyond Fixed Training Durations"): warmup, a long
  stable phase at lr_max, then a linear decay to lr_min over the last
  ``decay_fraction`` of the run. Its point is that a run can be extended from
  any stable-phase checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def _warmup(it: int, lr_max: float, warmup_iters: int) -> float:
    return it / warmup_iters * lr_max


def lr_cosine_schedule(it: int, lr_max: float, lr_min: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """Learning rate at step ``it`` (0-based) of a warmup + cosine schedule."""
    if it < warmup_iters:
        return _warmup(it, lr_max, warmup_iters)
    if it > cosine_cycle_iters:
        return lr_min
    span = cosine_cycle_iters - warmup_iters
    if span <= 0:
        return lr_max
    progress = (it - warmup_iters) / span
    return lr_min + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr_max - lr_min)


def lr_constant_schedule(it: int, lr_max: float, warmup_iters: int) -> float:
    """Linear warmup to ``lr_max``, then constant."""
    return _warmup(it, lr_max, warmup_iters) if it < warmup_iters else lr_max


def lr_wsd_schedule(it: int, lr_max: float, lr_min: float, warmup_iters: int, total_iters: int,
                    decay_fraction: float = 0.2) -> float:
    """Warmup, stable at ``lr_max``, then linear decay to ``lr_min`` over the last ``decay_fraction`` of the run."""
    if it < warmup_iters:
        return _warmup(it, lr_max, warmup_iters)
    decay_iters = max(1, round(decay_fraction * total_iters)) if decay_fraction > 0 else 0
    decay_start = total_iters - decay_iters
    if decay_iters == 0 or it < decay_start:
        return lr_max
    progress = min(1.0, (it - decay_start) / decay_iters)
    return lr_max + progress * (lr_min - lr_max)


def build_schedule(cfg, total_steps: int) -> Callable[[int], float]:
    """The schedule an :class:`~cs336_basics.config.training.OptimizerConfig` describes, as ``step -> lr``."""
    if cfg.schedule == "cosine":
        cycle = cfg.cosine_cycle_iters if cfg.cosine_cycle_iters is not None else max(total_steps - 1, 0)
        return lambda it: lr_cosine_schedule(it, cfg.lr_max, cfg.lr_min, cfg.warmup_iters, cycle)
    if cfg.schedule == "constant":
        return lambda it: lr_constant_schedule(it, cfg.lr_max, cfg.warmup_iters)
    if cfg.schedule == "wsd":
        return lambda it: lr_wsd_schedule(it, cfg.lr_max, cfg.lr_min, cfg.warmup_iters, total_steps,
                                          cfg.wsd_decay_fraction)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
