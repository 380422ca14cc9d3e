"""Transformer blocks: where the normalisations and residual connections go.

Sibling classes picked by ``ModelConfig.block``:

- :class:`PreNormBlock` ``x += Attn(N1(x)); x += FFN(N2(x))`` (GPT-2 and Llama;
  the residual stream is never normalised, which keeps gradients healthy);
- :class:`PostNormBlock` ``x = N1(x + Attn(x)); x = N2(x + FFN(x))`` (the
  original Transformer of Vaswani et al. 2017);
- :class:`ParallelBlock` ``x += Attn(N1(x)) + FFN(N1(x))`` (GPT-J, PaLM: one
  norm, both sub-layers read the same input, so they can run concurrently);
- :class:`NoNormBlock` ``x += Attn(x); x += FFN(x)`` (the no-normalisation ablation).

Sub-layer outputs pass through residual dropout before the add (GPT-2). Every
block has the same constructor and ``forward(x, positions, mask, cache)``; the
module names (``attn``, ``ffn``, ``ln1``, ``ln2``) follow the course so weights
map across trivially.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cs336_basics.model.attention import MultiHeadSelfAttention
from cs336_basics.model.kv_cache import LayerCache
from cs336_basics.model.layers import NoNorm, dropout_or_identity


class PreNormBlock(nn.Module):
    """Pre-norm block: ``x + Attn(ln1(x))``, then ``+ FFN(ln2(.))``."""

    def __init__(self, attn: MultiHeadSelfAttention, ffn: nn.Module, ln1: nn.Module, ln2: nn.Module,
                 residual_pdrop: float = 0.0) -> None:
        super().__init__()
        self.attn = attn
        self.ln1 = ln1
        self.ffn = ffn
        self.ln2 = ln2
        self.resid_dropout = dropout_or_identity(residual_pdrop)

    def forward(self, x: Tensor, positions: Tensor | None = None, mask: Tensor | None = None,
                cache: LayerCache | None = None) -> Tensor:
        x = x + self.resid_dropout(self.attn(self.ln1(x), positions, mask, cache))
        return x + self.resid_dropout(self.ffn(self.ln2(x)))


class PostNormBlock(PreNormBlock):
    """Post-norm block: ``ln1(x + Attn(x))``, then ``ln2(. + FFN(.))``."""

    def forward(self, x: Tensor, positions: Tensor | None = None, mask: Tensor | None = None,
                cache: LayerCache | None = None) -> Tensor:
        x = self.ln1(x + self.resid_dropout(self.attn(x, positions, mask, cache)))
        return self.ln2(x + self.resid_dropout(self.ffn(x)))


class ParallelBlock(PreNormBlock):
    """Parallel block: ``x + Attn(ln1(x)) + FFN(ln1(x))``; ``ln2`` is not used (kept as an identity)."""

    def __init__(self, attn: MultiHeadSelfAttention, ffn: nn.Module, ln1: nn.Module, ln2: nn.Module,
                 residual_pdrop: float = 0.0) -> None:
        super().__init__(attn, ffn, ln1, NoNorm(), residual_pdrop)

    def forward(self, x: Tensor, positions: Tensor | None = None, mask: Tensor | None = None,
                cache: LayerCache | None = None) -> Tensor:
        h = self.ln1(x)
        return x + self.resid_dropout(self.attn(h, positions, mask, cache)) + self.resid_dropout(self.ffn(h))


class NoNormBlock(PreNormBlock):
    """Pre-norm layout without normalisation: ``x + Attn(x)``, ``+ FFN(.)``."""

    def __init__(self, attn: MultiHeadSelfAttention, ffn: nn.Module, ln1: nn.Module, ln2: nn.Module,
                 residual_pdrop: float = 0.0) -> None:
        super().__init__(attn, ffn, NoNorm(), NoNorm(), residual_pdrop)


BLOCKS: dict[str, type[PreNormBlock]] = {
    "prenorm": PreNormBlock,
    "postnorm": PostNormBlock,
    "parallel": ParallelBlock,
    "nonorm": NoNormBlock,
}

TransformerBlock = PreNormBlock
"""The block of both reference architectures."""


def build_block(cfg, rotary: nn.Module | None = None, *, device=None, dtype=None,
                generator: torch.Generator | None = None) -> PreNormBlock:
    """One block as ``cfg`` (a :class:`~cs336_basics.model.config.ModelConfig`) describes it.

    ``rotary`` is the (shared) position rotation for its attention; the model passes
    one :class:`~cs336_basics.model.positions.RotaryEmbedding` to every layer.
    """
    from cs336_basics.errors import UserError
    from cs336_basics.model.attention import ATTENTION_KERNELS
    from cs336_basics.model.ffn import build_ffn, default_d_ff
    from cs336_basics.model.layers import NORMS

    if cfg.block not in BLOCKS:
        raise UserError(f"unknown block {cfg.block!r} (choose {', '.join(BLOCKS)})")
    if cfg.norm not in NORMS:
        raise UserError(f"unknown norm {cfg.norm!r} (choose {', '.join(NORMS)})")
    if cfg.attention not in ATTENTION_KERNELS:
        raise UserError(f"unknown attention {cfg.attention!r} (choose {', '.join(ATTENTION_KERNELS)})")
    d_ff = cfg.d_ff if cfg.d_ff is not None else default_d_ff(cfg.ffn, cfg.d_model)
    kernel = ATTENTION_KERNELS[cfg.attention](cfg.attn_pdrop)
    attn = MultiHeadSelfAttention(cfg.d_model, cfg.num_heads, rotary=rotary, kernel=kernel, device=device,
                                  dtype=dtype, generator=generator)
    ffn = build_ffn(cfg.ffn, cfg.d_model, d_ff, num_experts=cfg.num_experts, top_k=cfg.moe_top_k, device=device,
                    dtype=dtype, generator=generator)
    norm = NORMS[cfg.norm]
    ln1 = norm(cfg.d_model, cfg.norm_eps, device=device, dtype=dtype)
    ln2 = norm(cfg.d_model, cfg.norm_eps, device=device, dtype=dtype)
    return BLOCKS[cfg.block](attn, ffn, ln1, ln2, cfg.residual_pdrop)
