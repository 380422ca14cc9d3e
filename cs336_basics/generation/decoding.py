"""How the next-token logits of a batch are computed: without a cache, or with a KV cache.

Three sibling strategies share one interface (``prefill(histories)`` then
``step(new_ids, histories)``, each returning the last position's logits
``(B, V)``), picked by :func:`make_decoder`:

- :class:`UncachedDecoder` runs the model on each row's last ``context_length``
  tokens at every step: the obviously-correct reference, O(T^2) per token.
- :class:`SlidingCacheDecoder` (RoPE / NoPE) prefills once, then feeds one token
  per step; when the cache holds ``context_length`` entries the oldest is
  dropped, so positions keep counting up and attention sees a sliding window
  (relative position schemes do not care about the absolute offset).
- :class:`ReencodeCacheDecoder` (learned / sinusoidal absolute positions) does
  the same until a row's next position would be ``context_length``: no such
  position exists, so the last ``context_length`` tokens are re-encoded from
  position 0 -- exactly what the uncached decoder computes.

Batches of prompts of different lengths are left-padded: each row gets its own
positions (``0..L_i-1`` for its real tokens) and a boolean key mask ``(B, S)``
(True = may attend) so padded rows compute exactly what they would alone. The
key mask is passed only when some row is padded, so unpadded decoding takes the
model's plain causal path.
"""

from __future__ import annotations

import torch

from cs336_basics.config.variants import POSITION

LEFT_PAD_ID = 0
"""Id written into padding slots; they are masked out, so any valid id works."""


def left_pad(windows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token lists: ids (B, T), positions (B, T) counting each row's real tokens from 0, mask (B, T)."""
    width = max(len(w) for w in windows)
    ids = torch.full((len(windows), width), LEFT_PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.bool)
    for row, window in enumerate(windows):
        if window:
            ids[row, width - len(window):] = torch.tensor(window, dtype=torch.long)
            mask[row, width - len(window):] = True
    positions = (mask.long().cumsum(dim=-1) - 1).clamp_min(0)  # (B, T); pads sit at 0 and are masked
    return ids.to(device), positions.to(device), mask.to(device)


class UncachedDecoder:
    """Full forward over each row's last ``context_length`` tokens every step (the reference)."""

    def __init__(self, model: torch.nn.Module, context_length: int, device: torch.device) -> None:
        self.model, self.context_length, self.device = model, context_length, device

    def prefill(self, histories: list[list[int]]) -> torch.Tensor:
        windows = [h[-self.context_length:] for h in histories]
        ids, positions, mask = left_pad(windows, self.device)
        padded = not bool(mask.all())
        logits = self.model(ids, positions=positions, attention_mask=mask if padded else None)  # (B, T, V)
        return logits[:, -1]

    def step(self, new_ids: torch.Tensor, histories: list[list[int]]) -> torch.Tensor:
        return self.prefill(histories)


class _CacheDecoder:
    """Shared KV-cache logic: prefill the windows, then one token per step with per-row positions."""

    def __init__(self, model: torch.nn.Module, context_length: int, device: torch.device) -> None:
        self.model, self.context_length, self.device = model, context_length, device
        self.cache = None
        self.key_mask: torch.Tensor | None = None  # (B, S), aligned with the cache entries
        self.next_pos: torch.Tensor | None = None  # (B,), position of each row's next token
        self.padded = False

    def prefill(self, histories: list[list[int]]) -> torch.Tensor:
        windows = [h[-self.context_length:] for h in histories]
        ids, positions, mask = left_pad(windows, self.device)
        self.padded = not bool(mask.all())
        self.cache = self.model.init_cache(len(windows), self.context_length, device=self.device)
        logits = self.model(ids, cache=self.cache, positions=positions,
                            attention_mask=mask if self.padded else None)  # (B, T, V)
        self.key_mask = mask
        self.next_pos = torch.tensor([len(w) for w in windows], dtype=torch.long, device=self.device)
        return logits[:, -1]

    def step(self, new_ids: torch.Tensor, histories: list[list[int]]) -> torch.Tensor:
        if self._full():
            reencoded = self._make_room(histories)
            if reencoded is not None:
                return reencoded
        if self.padded:
            ones = torch.ones((self.key_mask.shape[0], 1), dtype=torch.bool, device=self.device)
            self.key_mask = torch.cat([self.key_mask, ones], dim=1)  # (B, S + 1)
        else:  # all True: only its width (the cache length) is tracked
            self.key_mask = self.key_mask[:, :1].expand(-1, self.key_mask.shape[1] + 1)
        logits = self.model(new_ids.view(-1, 1), cache=self.cache, positions=self.next_pos.view(-1, 1),
                            attention_mask=self.key_mask if self.padded else None)  # (B, 1, V)
        self.next_pos += 1
        return logits[:, -1]

    def _full(self) -> bool:
        raise NotImplementedError

    def _make_room(self, histories: list[list[int]]) -> torch.Tensor | None:
        raise NotImplementedError


class SlidingCacheDecoder(_CacheDecoder):
    """RoPE / NoPE: drop the oldest cache entry when the cache is full; positions keep counting."""

    def _full(self) -> bool:
        return self.key_mask.shape[1] >= self.context_length

    def _make_room(self, histories: list[list[int]]) -> None:
        excess = self.key_mask.shape[1] - self.context_length + 1
        self.cache.drop_oldest(excess)
        self.key_mask = self.key_mask[:, excess:]  # (B, context_length - 1)
        return None


class ReencodeCacheDecoder(_CacheDecoder):
    """Learned / sinusoidal positions: once a row would pass the last position, re-encode the windows."""

    def _full(self) -> bool:
        return int(self.next_pos.max()) >= self.context_length

    def _make_room(self, histories: list[list[int]]) -> torch.Tensor:
        return self.prefill(histories)


def make_decoder(model: torch.nn.Module, use_cache: bool, device: torch.device):
    """The decoding strategy for ``model``'s position scheme (see the module docstring)."""
    cfg = model.config
    if not use_cache:
        return UncachedDecoder(model, cfg.context_length, device)
    if POSITION[cfg.position].relative:
        return SlidingCacheDecoder(model, cfg.context_length, device)
    return ReencodeCacheDecoder(model, cfg.context_length, device)
