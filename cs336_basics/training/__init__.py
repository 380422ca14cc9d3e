"""Training: loss, AdamW, learning-rate schedules, clipping, data loading, RNG state and the loop.

Public names are imported on first use (:mod:`cs336_basics.lazy`) so that loading a
config (``cs336_basics.config`` imports :mod:`.config` from here) does not pay
for importing torch.

- :func:`cross_entropy` (:mod:`.loss`), :class:`AdamW` (:mod:`.optimizer`),
  :func:`lr_cosine_schedule` and siblings (:mod:`.schedule`),
  :func:`clip_grad_norm` (:mod:`.clipping`), :func:`get_batch` (:mod:`.data`)
- checkpoints and loading a trained model live in :mod:`cs336_basics.runs`
- :func:`train`, :class:`TrainResult` (:mod:`.loop`)
"""

from __future__ import annotations

from cs336_basics.lazy import lazy_exports

_EXPORTS = {
    "cross_entropy": "loss",
    "AdamW": "optimizer",
    "param_groups": "optimizer",
    "lr_cosine_schedule": "schedule",
    "lr_constant_schedule": "schedule",
    "lr_wsd_schedule": "schedule",
    "clip_grad_norm": "clipping",
    "get_batch": "data",
    "BatchSampler": "data",
    "train": "loop",
    "TrainResult": "loop",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
