"""Adapters for the CS336 spring-2025 assignment (Llama style).

The 2025 conventions are the library's own (masks with True = may attend, RoPE
on adjacent pairs, SwiGLU), so these adapters only map argument and weight
names: whole ``q_proj``/``k_proj``/``v_proj`` matrices are concatenated into the
fused ``qkv_proj``; ``run_rmsnorm`` receives a bare weight tensor.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from cs336_basics.compat.common import *  # noqa: F401,F403 - the shared adapters
from cs336_basics.compat.common import fuse_qkv, load_exact, model_config
from cs336_basics.model import (
    Embedding,
    Linear,
    MultiHeadSelfAttention,
    ReferenceAttention,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    TransformerLM,
    build_block,
    scaled_dot_product_attention,
    silu,
)


def _llama_config(d_model: int, num_heads: int, d_ff: int, theta: float, **fields):
    return model_config(d_model=d_model, num_heads=num_heads, d_ff=d_ff, position="rope", rope_theta=theta,
                        ffn="swiglu", norm="rmsnorm", block="prenorm", tie_embeddings=False, **fields)


def _attention(d_model: int, num_heads: int, q: Tensor, k: Tensor, v: Tensor, o: Tensor,
               rotary: RotaryEmbedding | None = None) -> MultiHeadSelfAttention:
    attn = MultiHeadSelfAttention(d_model, num_heads, rotary=rotary, kernel=ReferenceAttention())
    state = fuse_qkv({"attn.q_proj.weight": q, "attn.k_proj.weight": k, "attn.v_proj.weight": v,
                      "attn.output_proj.weight": o})
    return load_exact(attn, {key.removeprefix("attn."): value for key, value in state.items()})


def run_linear(d_in: int, d_out: int, weights: Tensor, in_features: Tensor) -> Tensor:
    return load_exact(Linear(d_in, d_out), {"weight": weights})(in_features)


def run_embedding(vocab_size: int, d_model: int, weights: Tensor, token_ids: Tensor) -> Tensor:
    return load_exact(Embedding(vocab_size, d_model), {"weight": weights})(token_ids)


def run_swiglu(d_model: int, d_ff: int, w1_weight: Tensor, w2_weight: Tensor, w3_weight: Tensor,
               in_features: Tensor) -> Tensor:
    ffn = SwiGLU(d_model, d_ff)
    return load_exact(ffn, {"w1.weight": w1_weight, "w2.weight": w2_weight, "w3.weight": w3_weight})(in_features)


def run_scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    return scaled_dot_product_attention(Q, K, V, None if mask is None else mask.bool())


def run_multihead_self_attention(d_model: int, num_heads: int, q_proj_weight: Tensor, k_proj_weight: Tensor,
                                 v_proj_weight: Tensor, o_proj_weight: Tensor, in_features: Tensor) -> Tensor:
    return _attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight)(in_features)


def run_multihead_self_attention_with_rope(d_model: int, num_heads: int, max_seq_len: int, theta: float,
                                           q_proj_weight: Tensor, k_proj_weight: Tensor, v_proj_weight: Tensor,
                                           o_proj_weight: Tensor, in_features: Tensor,
                                           token_positions: Tensor | None = None) -> Tensor:
    rotary = RotaryEmbedding(d_model // num_heads, theta, max_seq_len)
    attn = _attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, rotary)
    return attn(in_features, positions=token_positions)


def run_rope(d_k: int, theta: float, max_seq_len: int, in_query_or_key: Tensor, token_positions: Tensor) -> Tensor:
    return RotaryEmbedding(d_k, theta, max_seq_len)(in_query_or_key, token_positions)


def run_transformer_block(d_model: int, num_heads: int, d_ff: int, max_seq_len: int, theta: float,
                          weights: Mapping[str, Tensor], in_features: Tensor) -> Tensor:
    cfg = _llama_config(d_model, num_heads, d_ff, theta, context_length=max_seq_len)
    rotary = RotaryEmbedding(d_model // num_heads, theta, max_seq_len)
    return load_exact(build_block(cfg, rotary), fuse_qkv(weights))(in_features)


def run_transformer_lm(vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                       d_ff: int, rope_theta: float, weights: Mapping[str, Tensor], in_indices: Tensor) -> Tensor:
    cfg = _llama_config(d_model, num_heads, d_ff, rope_theta, vocab_size=vocab_size, context_length=context_length,
                        num_layers=num_layers)
    return load_exact(TransformerLM(cfg), fuse_qkv(weights))(in_indices)


def run_rmsnorm(d_model: int, eps: float, weights: Tensor, in_features: Tensor) -> Tensor:
    return load_exact(RMSNorm(d_model, eps), {"weight": weights})(in_features)


def run_silu(in_features: Tensor) -> Tensor:
    return silu(in_features)


__all__ = [name for name in dir() if name.startswith(("run_", "get_"))]
