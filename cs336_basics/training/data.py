"""Training data: memory-mapped token files and random-window batches.

Token files are ``.npy`` arrays written by ``cs336 tokenize`` with a manifest
beside them (see :mod:`cs336_basics.tokenizer.token_files`). They are opened
with ``np.load(mmap_mode="r")`` so a multi-gigabyte corpus costs no RAM, and
checked against the run before the first step (``open_token_file``: vocabulary
size and tokenizer fingerprint from the manifest, or a scan for the largest id
when there is no manifest, since an id >= vocab_size would index past the
embedding table, a silent out-of-bounds read on CUDA; here also the dtype).

Batches are random windows (``get_batch``, as in the CS336 handout). The
:class:`BatchSampler` owns its own ``numpy.random.Generator`` whose state goes
into checkpoints, so a resumed run sees exactly the batches an uninterrupted run
would. Under DistributedDataParallel every rank draws the same global set of
window starts and keeps only its own rows: ranks never duplicate work, and the
union of their batches is exactly the batch a single process with the same
global batch size would draw (which is what makes DDP testable to 1e-5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cs336_basics.errors import UserError
from cs336_basics.tokenizer.token_files import open_token_file, read_manifest


def get_batch(data: np.ndarray, batch_size: int, context_length: int, device: str | torch.device = "cpu",
              rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``data``: inputs and next-token targets, each (batch_size, context_length) int64.

    Uses the global ``np.random`` when ``rng`` is None (the handout's signature).
    """
    n = len(data)
    if n <= context_length:
        raise UserError(f"token array has {n} tokens but context_length is {context_length}; "
                        "use more data or a shorter model.context_length")
    high = n - context_length  # a window needs context_length + 1 tokens
    starts = rng.integers(0, high, size=batch_size) if rng is not None else np.random.randint(0, high, size=batch_size)
    return windows_to_batch(data, starts, context_length, device)


def windows_to_batch(data: np.ndarray, starts: np.ndarray, context_length: int,
                     device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather windows ``data[s : s + context_length + 1]`` and split them into (inputs, targets)."""
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(context_length + 1)  # (B, T+1)
    block = batch_to_device(torch.from_numpy(np.asarray(data[idx], dtype=np.int64)), device)  # (B, T+1)
    return block[:, :-1], block[:, 1:]  # (B, T), (B, T)


def batch_to_device(block: torch.Tensor, device: str | torch.device, pin: bool | None = None) -> torch.Tensor:
    """A CPU batch on ``device``; ``pin`` (default: for CUDA) copies it through page-locked memory.

    From pinned memory the copy to the GPU can be asynchronous (``non_blocking``), so the host
    goes on to launch the step's kernels while the batch is in flight; from ordinary pageable
    memory it could not be, so ``non_blocking`` is used exactly when the batch is pinned.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return block
    pin = device.type == "cuda" if pin is None else pin
    if pin:
        block = block.pin_memory()
    return block.to(device, non_blocking=pin)


class BatchSampler:
    """Random training windows with a checkpointable RNG; in DDP, this rank's rows of a shared global draw."""

    def __init__(self, data: np.ndarray, batch_size: int, context_length: int, device: str | torch.device,
                 seed: int, rank: int = 0, world_size: int = 1) -> None:
        if len(data) <= context_length:
            raise UserError(f"training data has {len(data)} tokens, fewer than context_length "
                            f"{context_length} + 1; use more data or a shorter model.context_length")
        self.data, self.batch_size, self.context_length, self.device = data, batch_size, context_length, device
        self.rank, self.world_size = rank, world_size
        self.rng = np.random.default_rng(seed)
        self.batches_drawn = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (inputs, targets) for one micro-batch, each (batch_size, context_length)."""
        high = len(self.data) - self.context_length
        starts = self.rng.integers(0, high, size=self.batch_size * self.world_size)  # (world * B,)
        mine = starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        self.batches_drawn += 1
        return windows_to_batch(self.data, mine, self.context_length, self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
        self.batches_drawn = int(state["batches_drawn"])


def open_tokens(path: str | Path, *, vocab_size: int, tokenizer_fingerprint: str | None = None) -> np.ndarray:
    """Open a token file for training: the manifest and id-range checks of ``open_token_file``, plus the manifest's dtype."""
    tokens = open_token_file(path, vocab_size=vocab_size, tokenizer_fingerprint=tokenizer_fingerprint)
    declared = (read_manifest(path) or {}).get("dtype")
    if declared is not None and np.dtype(declared) != tokens.dtype:
        raise UserError(f"{path} holds {tokens.dtype} ids but its manifest says {declared} (replaced by other "
                        "code?); re-run 'cs336 tokenize' with --force")
    return tokens
