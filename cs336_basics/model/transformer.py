"""The Transformer language model: embeddings, a stack of blocks, a final norm and the LM head.

``TransformerLM(cfg)`` builds the architecture a
:class:`~cs336_basics.config.model.ModelConfig` names; every variant is a
sibling class chosen here, at construction, so ``forward`` is the same straight
line for all of them:

    x = token_embeddings(ids) (+ absolute positions) -> dropout
    x = block_i(x, positions, mask, cache)  for each layer
    logits = lm_head(ln_final(x))

``forward(token_ids (..., T), cache=None, positions=None, attention_mask=None)``
returns logits ``(..., T, vocab_size)`` (exactly ``vocab_size``, never padded).

- ``positions`` ``(T,)`` or ``(..., T)``: explicit integer positions (e.g. per
  row for left-padded batches); default ``0..T-1``, or continuing after what the
  cache holds.
- ``attention_mask`` ``(..., T)`` bool, True = a real token that may be attended
  to (False = padding); with a cache it may also cover every cached slot.
- ``cache``: from :meth:`TransformerLM.init_cache`; the call appends the new
  tokens' keys/values, so prefill-then-decode gives the same logits as one
  full forward.

After each forward, ``aux_loss`` holds the MoE load-balancing loss (already
multiplied by ``moe_aux_loss_coef``; a zero for dense models) that training
adds to the LM loss.

With ``tie_embeddings`` the LM head reuses the token embedding matrix (the
state dict then holds it once, as ``token_embeddings.weight``).
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from cs336_basics.config import ModelConfig
from cs336_basics.config.variants import FFN, POSITION, attention_kernel
from cs336_basics.errors import UserError
from cs336_basics.model.attention import MultiHeadSelfAttention
from cs336_basics.model.blocks import PreNormBlock
from cs336_basics.model.init import make_generator, tied_embedding_std
from cs336_basics.model.kv_cache import KVCache
from cs336_basics.model.layers import Embedding, Linear, dropout_or_identity
from cs336_basics.model.variant_classes import ATTENTION_KERNELS, BLOCKS, FFNS, INITS, NORMS, POSITIONS, QK_NORMS


def build_block(cfg: ModelConfig, rotary: nn.Module | None = None, *, device=None, dtype=None,
                generator: torch.Generator | None = None, attention_device=None) -> PreNormBlock:
    """One block as ``cfg`` describes it, every part picked by name from its map.

    ``rotary`` is the (shared) position rotation for its attention; the model passes
    one :class:`~cs336_basics.model.positions.RotaryEmbedding` to every layer. The
    ``auto`` attention kernel is resolved here, once, for ``attention_device`` (default: ``device``).
    """
    target = attention_device if attention_device is not None else device
    device_type = torch.device(target).type if target is not None else torch.get_default_device().type
    kernel = ATTENTION_KERNELS[attention_kernel(cfg.attention, device_type)](cfg.attn_pdrop)
    qk_norm = QK_NORMS[cfg.qk_norm]
    attn = MultiHeadSelfAttention(cfg.d_model, cfg.num_heads, rotary=rotary, kernel=kernel, device=device,
                                  dtype=dtype, generator=generator,
                                  q_norm=qk_norm(cfg.head_size, cfg.norm_eps, device=device, dtype=dtype),
                                  k_norm=qk_norm(cfg.head_size, cfg.norm_eps, device=device, dtype=dtype))
    ffn = FFNS[cfg.ffn].from_config(cfg, device=device, dtype=dtype, generator=generator)
    norm = NORMS[cfg.norm]
    ln1 = norm(cfg.d_model, cfg.norm_eps, device=device, dtype=dtype)
    ln2 = norm(cfg.d_model, cfg.norm_eps, device=device, dtype=dtype)
    return BLOCKS[cfg.block](attn, ffn, ln1, ln2, cfg.residual_pdrop)


class TiedLMHead(nn.Module):
    """Logits from the token embedding matrix: ``x @ E^T``. Holds no parameter of its own."""

    def __init__(self, embedding: Embedding) -> None:
        super().__init__()
        # kept outside _modules so the shared matrix is registered (and saved) once, under token_embeddings
        object.__setattr__(self, "_embedding", embedding)

    @property
    def weight(self) -> Tensor:
        return self._embedding.weight

    def forward(self, x: Tensor) -> Tensor:
        return x @ self._embedding.weight.t()  # (..., d) @ (d, V) -> (..., V)


class TransformerLM(nn.Module):
    """A decoder-only Transformer LM built from a :class:`ModelConfig`; ``seed`` makes the init reproducible."""

    def __init__(self, cfg: ModelConfig, *, seed: int | None = None, device=None, dtype=None,
                 attention_device=None) -> None:
        """``device``/``dtype`` of the parameters; ``attention_device``: the device the model will run on, for
        which ``attention="auto"`` picks its kernel (default: ``device``). Building on the CPU and moving the
        model afterwards keeps the initial weights the same on every device."""
        super().__init__()
        self.config = cfg
        gen = make_generator(seed, device)
        d = cfg.d_model
        vocab_size = cfg.require_vocab_size()
        self.token_embeddings = Embedding(vocab_size, d, device=device, dtype=dtype, generator=gen,
                                          std=tied_embedding_std(d, vocab_size) if cfg.tie_embeddings else 1.0)
        positions = POSITIONS[cfg.position]
        self.position_embeddings = positions.absolute(cfg, device=device, dtype=dtype, generator=gen)
        rotary = positions.rotary(cfg, device=device)
        self.embed_dropout = dropout_or_identity(cfg.residual_pdrop)
        self.layers = nn.ModuleList(build_block(cfg, rotary, device=device, dtype=dtype, generator=gen,
                                                attention_device=attention_device)
                                    for _ in range(cfg.num_layers))
        self.ln_final = NORMS[cfg.norm](d, cfg.norm_eps, device=device, dtype=dtype)
        if cfg.tie_embeddings:
            self.lm_head = TiedLMHead(self.token_embeddings)
        else:
            self.lm_head = Linear(d, vocab_size, device=device, dtype=dtype, generator=gen)
        INITS[cfg.init].apply(self)
        self._moe_ffns = [layer.ffn for layer in self.layers if FFN[cfg.ffn].experts]
        self._absolute_limit = cfg.context_length if POSITION[cfg.position].learned_table else None

    # ------------------------------------------------------------------------------------------ forward

    def forward(self, token_ids: Tensor, cache: KVCache | None = None, positions: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        *lead, T = token_ids.shape
        ids = token_ids.reshape(-1, T)  # (B, T)
        B = ids.shape[0]
        if positions is not None and positions.dim() > 1:
            positions = positions.reshape(-1, T)  # (B, T)
        if attention_mask is not None:
            attention_mask = attention_mask.reshape(B, -1).to(dtype=torch.bool)  # (B, T) or (B, S)
        if cache is None:
            mask = self._uncached_mask(attention_mask, T)
            if positions is None:
                self._check_length(T)
                positions = torch.arange(T, device=ids.device)  # (T,)
        else:
            start = cache.begin(T, B)
            if positions is None:
                self._check_length(start + cache.dropped + T)
                positions = cache.default_positions(T)  # (B, T)
            mask = self._cached_mask(cache.extend_key_mask(attention_mask), T, start)

        x = self.token_embeddings(ids)  # (B, T, d)
        x = self.position_embeddings(x, positions)
        x = self.embed_dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, mask, None if cache is None else cache.layer(i))
        logits = self.lm_head(self.ln_final(x))  # (B, T, V)
        if cache is not None:
            cache.commit(positions)
        return logits.view(*lead, T, logits.shape[-1])

    def _check_length(self, end: int) -> None:
        if self._absolute_limit is not None and end > self._absolute_limit:
            raise UserError(f"sequence of {end} tokens exceeds context_length {self._absolute_limit} of this model "
                            "with learned positions (truncate the input to the last context_length tokens)")

    @staticmethod
    def _uncached_mask(key_mask: Tensor | None, T: int) -> Tensor | None:
        if key_mask is None:
            return None  # plain causal attention
        if key_mask.shape[-1] != T:
            raise UserError(f"attention_mask covers {key_mask.shape[-1]} tokens but the input has {T}")
        return _padded_causal_mask(key_mask, T, 0)

    @staticmethod
    def _cached_mask(key_mask: Tensor | None, T: int, start: int) -> Tensor | None:
        if key_mask is None:
            return None  # causal, aligned so the new tokens see every cached slot
        return _padded_causal_mask(key_mask, T, start)

    # ------------------------------------------------------------------------------------------ extras

    @property
    def aux_loss(self) -> Tensor:
        """MoE load-balancing loss of the last forward times ``moe_aux_loss_coef`` (zero for dense models)."""
        losses = [ffn.aux_loss for ffn in self._moe_ffns if ffn.aux_loss is not None]
        if not losses:
            return torch.zeros((), device=self.token_embeddings.weight.device)
        return self.config.moe_aux_loss_coef * torch.stack(losses).sum()

    def init_cache(self, batch_size: int, max_len: int | None = None, device=None, dtype=None) -> KVCache:
        """An empty KV cache for ``batch_size`` rows and up to ``max_len`` tokens (default: context_length).

        RoPE/NoPE models get a sliding cache (oldest entries dropped when full); models with
        absolute positions get one that refuses to overflow.
        """
        ref = self.token_embeddings.weight
        cfg = self.config
        return KVCache(cfg.num_layers, batch_size, cfg.num_heads, cfg.d_model // cfg.num_heads,
                       max_len or cfg.context_length, device=device or ref.device, dtype=dtype or ref.dtype,
                       sliding=POSITION[cfg.position].relative)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Distinct parameters; optionally without the token/position embedding tables (a tied head goes too)."""
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            for module in self.modules():
                if isinstance(module, Embedding):
                    params.pop(id(module.weight), None)
        return sum(p.numel() for p in params.values())


def _padded_causal_mask(key_mask: Tensor, T: int, start: int) -> Tensor:
    """``(B, 1, T, S)`` may-attend mask: causal over slots, padding keys hidden, each query sees itself.

    ``key_mask`` is ``(B, S)`` with ``S = start + T``. Letting every query see its own
    slot keeps padding queries from having no visible key (their outputs are unused).
    """
    S = key_mask.shape[-1]
    causal = torch.ones(T, S, dtype=torch.bool, device=key_mask.device).tril(diagonal=start)  # (T, S)
    diagonal = torch.zeros(T, S, dtype=torch.bool, device=key_mask.device)
    diagonal[torch.arange(T), torch.arange(start, start + T)] = True
    mask = (causal.unsqueeze(0) & key_mask.unsqueeze(1)) | diagonal  # (B, T, S)
    return mask.unsqueeze(1)  # (B, 1, T, S): broadcast over heads
