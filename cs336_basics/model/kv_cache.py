"""The key/value cache for incremental decoding.

Prefill a prompt, then feed one token at a time: every attention layer appends
the new tokens' keys and values to preallocated buffers and attends over
everything cached, so a decoding step costs O(cached length) instead of
re-running the whole prefix.

Layout: one ``(B, H, max_len, d_head)`` key buffer and one value buffer per
layer, filled from slot 0 up to ``length``. Alongside them the cache keeps

- ``next_position`` ``(B,)``: the position the next token of each row gets when
  the caller passes no ``positions`` (rows may differ after a left-padded
  prefill with explicit per-row positions);
- ``key_mask`` ``(B, max_len)`` (allocated on first use): which cached slots may
  be attended to (False for left padding); absent means all of them.

A forward pass calls :meth:`KVCache.begin` (make room, return the first free
slot), lets each layer :meth:`KVCache.append` its keys/values, then
:meth:`KVCache.commit`. Queries are causal over *slots*: the new token in slot
``s`` sees slots ``<= s``.

When the buffers are full the cache can drop its oldest entries (a sliding
window). Keys are stored already rotated, so for RoPE (relative positions) and
NoPE models the attention scores of the kept entries do not change; models with
absolute positions cannot slide past their position table and get a clear
error instead (``sliding=False``).

The cache is for inference: it writes into its buffers in place, so run it
under ``torch.no_grad()`` or ``torch.inference_mode()``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cs336_basics.errors import UserError


class KVCache:
    """Preallocated per-layer key/value buffers plus positions and a padding mask."""

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, d_head: int, max_len: int,
                 device=None, dtype=torch.float32, sliding: bool = True) -> None:
        if max_len <= 0:
            raise UserError(f"KV cache max_len must be positive, got {max_len}")
        self.num_layers = num_layers
        self.batch_size = batch_size
        self.max_len = max_len
        self.sliding = sliding
        shape = (batch_size, num_heads, max_len, d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.key_mask: Tensor | None = None  # (B, max_len) bool, None = every slot valid
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.length = 0
        self.dropped = 0
        """Entries dropped so far by the sliding window."""
        self._pending = 0

    @property
    def device(self) -> torch.device:
        return self.keys[0].device if self.keys else self.next_position.device

    def __len__(self) -> int:
        return self.length

    def reset(self) -> None:
        """Forget everything (buffers are reused)."""
        self.length = 0
        self.dropped = 0
        self.key_mask = None
        self.next_position.zero_()

    def drop_oldest(self, n: int) -> None:
        """Discard the ``n`` oldest cached entries of every row, shifting the rest to the front."""
        n = min(n, self.length)
        if n <= 0:
            return
        keep = self.length - n
        for buf in self.keys + self.values:
            buf[:, :, :keep] = buf[:, :, n:self.length].clone()  # (B, H, keep, D)
        if self.key_mask is not None:
            self.key_mask[:, :keep] = self.key_mask[:, n:self.length].clone()
        self.length = keep
        self.dropped += n

    def begin(self, num_new: int, batch_size: int) -> int:
        """Prepare to add ``num_new`` tokens: check the batch, slide if needed; return the first new slot."""
        if batch_size != self.batch_size:
            raise UserError(f"the KV cache was made for batch size {self.batch_size} but got {batch_size} rows "
                            "(create it with model.init_cache(batch_size, ...))")
        if num_new > self.max_len:
            raise UserError(f"cannot feed {num_new} tokens into a KV cache of max_len {self.max_len} "
                            "(create a larger cache or feed fewer tokens)")
        overflow = self.length + num_new - self.max_len
        if overflow > 0:
            if not self.sliding:
                raise UserError(f"KV cache full ({self.length} + {num_new} > max_len {self.max_len}) and this model's "
                                "absolute positions cannot slide (use a larger cache or re-encode the last tokens)")
            self.drop_oldest(overflow)
        self._pending = num_new
        return self.length

    def default_positions(self, num_new: int) -> Tensor:
        """Positions continuing after what each row holds: ``(B, num_new)``."""
        steps = torch.arange(num_new, device=self.next_position.device)
        return self.next_position.unsqueeze(1) + steps  # (B, T)

    def extend_key_mask(self, new_mask: Tensor | None) -> Tensor | None:
        """Record which of the new slots may be attended to; return the mask over all slots ``(B, S)`` or None.

        ``new_mask`` is ``(B, num_new)`` for the new tokens, or ``(B, length + num_new)`` for every slot.
        """
        start, num_new = self.length, self._pending
        end = start + num_new
        if new_mask is None and self.key_mask is None:
            return None
        if self.key_mask is None:
            self.key_mask = torch.ones(self.batch_size, self.max_len, dtype=torch.bool, device=self.device)
        if new_mask is None:
            self.key_mask[:, start:end] = True
        else:
            new_mask = new_mask.to(device=self.device, dtype=torch.bool)
            if new_mask.shape == (self.batch_size, num_new):
                self.key_mask[:, start:end] = new_mask
            elif new_mask.shape == (self.batch_size, end):
                self.key_mask[:, :end] = new_mask
            else:
                raise UserError(f"attention_mask has shape {tuple(new_mask.shape)}; with a KV cache holding {start} "
                                f"tokens it must be ({self.batch_size}, {num_new}) or ({self.batch_size}, {end})")
        return self.key_mask[:, :end]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` ``(B, H, T, D)`` of ``layer`` in the new slots; return all cached ``(B, H, S, D)``."""
        start = self.length
        end = start + k.shape[-2]
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def commit(self, positions: Tensor) -> None:
        """Advance past the new tokens; ``positions`` ``(B, T)`` or ``(T,)`` are the ones they were given."""
        self.length += self._pending
        self._pending = 0
        last = positions[..., -1]
        self.next_position.copy_((last + 1).expand_as(self.next_position))

    def layer(self, index: int) -> "LayerCache":
        return LayerCache(self, index)


class LayerCache:
    """The view of a :class:`KVCache` that one attention layer sees."""

    __slots__ = ("cache", "index")

    def __init__(self, cache: KVCache, index: int) -> None:
        self.cache, self.index = cache, index

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.cache.append(self.index, k, v)
