"""Training: loss, AdamW, learning-rate schedules, clipping, data loading, RNG state and the loop.

- :func:`cross_entropy` (:mod:`.loss`), :class:`AdamW` (:mod:`.optimizer`),
  :func:`lr_cosine_schedule` and siblings (:mod:`.schedule`),
  :func:`clip_grad_norm` (:mod:`.clipping`), :func:`get_batch` (:mod:`.data`)
- checkpoints and loading a trained model live in :mod:`cs336_basics.runs`
- :func:`train`, :class:`TrainResult` (:mod:`.loop`)
- the sections a run is configured by live in :mod:`cs336_basics.config`
"""

from __future__ import annotations

from cs336_basics.training.clipping import clip_grad_norm
from cs336_basics.training.data import BatchSampler, get_batch
from cs336_basics.training.loop import TrainResult, train
from cs336_basics.training.loss import cross_entropy
from cs336_basics.training.optimizer import AdamW, param_groups
from cs336_basics.training.schedule import lr_constant_schedule, lr_cosine_schedule, lr_wsd_schedule

__all__ = [
    "AdamW", "BatchSampler", "TrainResult", "clip_grad_norm", "cross_entropy", "get_batch", "lr_constant_schedule",
    "lr_cosine_schedule", "lr_wsd_schedule", "param_groups", "train",
]
