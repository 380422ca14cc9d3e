"""Training data: memory-mapped token files and random-window batches.

Token files are ``.npy`` arrays written by ``cs336 tokenize`` with a manifest
beside them (see :mod:`cs336_basics.tokenizer.token_files`). They are opened
with ``np.load(mmap_mode="r")`` so a multi-gigabyte corpus costs no RAM, and
checked against the run before the first step: vocabulary size, dtype and
tokenizer fingerprint from the manifest, and the largest id actually present
(an id >= vocab_size would otherwise index past the embedding table, a silent
out-of-bounds read on CUDA).

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

_SCAN_CHUNK = 1 << 24  # tokens per chunk when scanning for the largest id


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
    block = torch.from_numpy(np.asarray(data[idx], dtype=np.int64))  # (B, T+1)
    device = torch.device(device)
    if device.type == "cuda":
        block = block.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        block = block.to(device)
    return block[:, :-1], block[:, 1:]  # (B, T), (B, T)


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


def max_token_id(tokens: np.ndarray) -> int:
    """Largest id in a (possibly memory-mapped) token array, scanned in chunks to bound memory."""
    best = -1
    for start in range(0, len(tokens), _SCAN_CHUNK):
        best = max(best, int(np.max(tokens[start:start + _SCAN_CHUNK])))
    return best


def open_tokens(path: str | Path, *, vocab_size: int, tokenizer_fingerprint: str | None = None,
                what: str = "token file") -> np.ndarray:
    """Open a token file for training: manifest checks (engineer B's ``open_token_file``) plus an id-range check."""
    from cs336_basics.tokenizer.token_files import open_token_file, read_manifest

    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path} (create it with 'cs336 tokenize' or set data.dataset_dir / "
                        "data.train_path / data.valid_path)")
    tokens = open_token_file(path, vocab_size=vocab_size, tokenizer_fingerprint=tokenizer_fingerprint)
    if tokens.ndim != 1:
        raise UserError(f"{what} {path} holds a {tokens.ndim}-D array; expected a 1-D array of token ids")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"{what} {path} has dtype {tokens.dtype}; expected integer token ids (re-run 'cs336 tokenize')")
    manifest = read_manifest(path) or {}
    top = manifest.get("max_id")
    if not isinstance(top, int):
        top = max_token_id(tokens)
    if top >= vocab_size:
        raise UserError(f"{what} {path} contains token id {top} but model.vocab_size is {vocab_size}; "
                        f"set model.vocab_size >= {top + 1} or re-tokenize with the run's tokenizer")
    return tokens

