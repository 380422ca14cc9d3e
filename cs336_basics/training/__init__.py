"""Training: loss, AdamW, learning-rate schedules, clipping, data loading, checkpoints and the loop.

Public names are imported lazily (PEP 562 ``__getattr__``) so that loading a
config (``cs336_basics.config`` imports :mod:`.config` from here) does not pay
for importing torch.

- :func:`cross_entropy` (:mod:`.loss`), :class:`AdamW` (:mod:`.optimizer`),
  :func:`lr_cosine_schedule` and siblings (:mod:`.schedule`),
  :func:`clip_grad_norm` (:mod:`.clipping`), :func:`get_batch` (:mod:`.data`)
- :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_trained_model` (:mod:`.checkpoint`)
- :func:`train`, :class:`TrainResult` (:mod:`.loop`)
"""

from __future__ import annotations

import importlib

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
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_trained_model": "checkpoint",
    "LoadedModel": "checkpoint",
    "export_safetensors": "checkpoint",
    "train": "loop",
    "TrainResult": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cs336_basics.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cs336_basics.training' has no attribute {name!r}")
