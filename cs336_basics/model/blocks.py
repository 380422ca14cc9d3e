"""Transformer blocks: where the normalisations and residual connections go.

Sibling classes picked by ``ModelConfig.block`` (the map in
:mod:`cs336_basics.model.variant_classes`; :func:`~cs336_basics.model.transformer.build_block`
assembles one block from a config):

- :class:`PreNormBlock` ``x += Attn(N1(x)); x += FFN(N2(x))`` (GPT-2 and Llama;
  the residual stream is never normalised, which keeps gradients healthy);
- :class:`PostNormBlock` ``x = N1(x + Attn(x)); x = N2(x + FFN(x))`` (the
  original Transformer of Vaswani et al. 2017);
- :class:`ParallelBlock` ``x += Attn(N1(x)) + FFN(N1(x))`` (GPT-J, PaLM: one
  norm, both sub-layers read the same input, so they can run concurrently).

The no-normalisation ablation is ``norm="none"`` with any layout (the norms
become identities).

Sub-layer outputs pass through residual dropout before the add (GPT-2). Every
block has the same constructor and ``forward(x, positions, mask, cache)``; the
module names (``attn``, ``ffn``, ``ln1``, ``ln2``) follow the course so weights
map across trivially.
"""

from __future__ import annotations

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


TransformerBlock = PreNormBlock
"""The block of both reference architectures."""
