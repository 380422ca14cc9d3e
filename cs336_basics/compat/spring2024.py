"""Adapters for the CS336 spring-2024 assignment (GPT-2 style).

Conventions translated here:

- attention masks arrive with **True = masked out**; the library wants True = may attend, so they are inverted;
- ``run_scaled_dot_product_attention`` takes ``K, Q, V`` in that order;
- multi-head attention weights arrive per head (``q_heads.{i}.weight``, ``(d_k, d_model)`` each) or as
  whole ``q_proj``/``k_proj``/``v_proj`` matrices; both are concatenated into the fused ``qkv_proj``;
- the model is pre-norm RMSNorm, GELU FFN, learned absolute positions, untied head, with the given dropouts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from cs336_basics.compat.common import *  # noqa: F401,F403 - the shared adapters
from cs336_basics.compat.common import fuse_qkv, load_exact, model_config
from cs336_basics.model import (
    GeluFFN,
    MultiHeadSelfAttention,
    ReferenceAttention,
    RMSNorm,
    TransformerLM,
    build_block,
    gelu,
    scaled_dot_product_attention,
)
from cs336_basics.model.layers import dropout_or_identity


def _gpt2_config(d_model: int, num_heads: int, d_ff: int, attn_pdrop: float | None, residual_pdrop: float | None,
                 **fields):
    return model_config(d_model=d_model, num_heads=num_heads, d_ff=d_ff, position="learned", ffn="gelu",
                        norm="rmsnorm", block="prenorm", tie_embeddings=False,
                        attn_pdrop=attn_pdrop or 0.0, residual_pdrop=residual_pdrop or 0.0, **fields)


def run_positionwise_feedforward(d_model: int, d_ff: int, weights: Mapping[str, Tensor], in_features: Tensor) -> Tensor:
    return load_exact(GeluFFN(d_model, d_ff), weights)(in_features)


def run_scaled_dot_product_attention(K: Tensor, Q: Tensor, V: Tensor, mask: Tensor | None = None,
                                     pdrop: float | None = None) -> Tensor:
    may_attend = None if mask is None else ~mask.bool()
    return scaled_dot_product_attention(Q, K, V, may_attend, dropout_or_identity(pdrop or 0.0))


def run_multihead_self_attention(d_model: int, num_heads: int, attn_pdrop: float = 0.0,
                                 weights: Mapping[str, Tensor] | None = None,
                                 in_features: Tensor | None = None) -> Tensor:
    per_head = {"q_proj": "q_heads", "k_proj": "k_heads", "v_proj": "v_heads"}
    whole = {}
    for proj, heads in per_head.items():
        if f"{proj}.weight" in weights:
            whole[f"attn.{proj}.weight"] = weights[f"{proj}.weight"]
        else:  # (d_k, d_model) per head, stacked by rows in head order
            whole[f"attn.{proj}.weight"] = torch.cat([weights[f"{heads}.{i}.weight"] for i in range(num_heads)], dim=0)
    whole["attn.output_proj.weight"] = weights["output_proj.weight"]
    attn = MultiHeadSelfAttention(d_model, num_heads, kernel=ReferenceAttention(attn_pdrop or 0.0))
    state = {k.removeprefix("attn."): v for k, v in fuse_qkv(whole).items()}
    return load_exact(attn, state)(in_features)


def run_transformer_block(d_model: int, num_heads: int, d_ff: int, attn_pdrop: float, residual_pdrop: float,
                          weights: Mapping[str, Tensor], in_features: Tensor) -> Tensor:
    block = build_block(_gpt2_config(d_model, num_heads, d_ff, attn_pdrop, residual_pdrop))
    return load_exact(block, fuse_qkv(weights))(in_features)


def run_transformer_lm(vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                       d_ff: int, attn_pdrop: float, residual_pdrop: float, weights: Mapping[str, Tensor],
                       in_indices: Tensor) -> Tensor:
    cfg = _gpt2_config(d_model, num_heads, d_ff, attn_pdrop, residual_pdrop, vocab_size=vocab_size,
                       context_length=context_length, num_layers=num_layers)
    return load_exact(TransformerLM(cfg), fuse_qkv(weights))(in_indices)


def run_rmsnorm(d_model: int, eps: float, weights: Mapping[str, Tensor], in_features: Tensor) -> Tensor:
    return load_exact(RMSNorm(d_model, eps), weights)(in_features)


def run_gelu(in_features: Tensor) -> Tensor:
    return gelu(in_features)


__all__ = [name for name in dir() if name.startswith(("run_", "get_"))]
