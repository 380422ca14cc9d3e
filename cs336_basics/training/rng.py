"""Every global random-number stream a training step uses: saved in checkpoints, restored on resume.

Python's ``random``, NumPy's global generator, torch's CPU generator and (where
present) every CUDA generator. The states are stored as tensors and plain data,
so a checkpoint holding them still loads with ``weights_only=True``.
:func:`preserved_rng` runs evaluation and sampling without moving any of these
streams, which is what keeps resumed runs bit-for-bit equal to uninterrupted ones.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """Python, NumPy (global), torch CPU and CUDA generator states, as weights_only-loadable data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                    int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng():
    """Run a block (evaluation, sampling) without changing any global RNG stream the training steps use."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def _as_tuple(value: Any) -> Any:
    """random.setstate wants nested tuples; a checkpoint round trip may hand back lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
