"""Parameter, memory and FLOP accounting from a ModelConfig alone (no model is built).

Formulas follow the CS336 handouts (``transformer_accounting`` and
``adamwAccounting`` problems), generalised to every variant of the config:

- parameters: embeddings ``V d`` (+ ``context d`` for learned positions),
  attention ``4 d^2`` per layer (fused QKV ``3 d^2`` + output ``d^2``), FFN
  ``2 d d_ff`` (gelu, silu) or ``3 d d_ff`` (swiglu; MoE: ``E`` such experts plus
  a ``d E`` router), norms ``d`` (RMSNorm) or ``2 d`` (LayerNorm) each (QK-norm:
  two gains of ``d_head`` per layer, counted with the norms), LM head
  ``d V`` unless tied. The init scheme changes values, never counts. "Non-embedding" follows the 2024 handout (LM head counted,
  token and position tables excluded); ``non_embedding_no_head`` is the
  Kaplan-style count without the head.
- forward FLOPs per token: ``2 x`` the parameters of every matmul a token goes
  through (MoE: the router and ``top_k`` experts), plus attention scores
  ``QK^T`` and ``AV`` at ``2 T d`` each per layer with ``T = context_length``
  (the full ``T x T`` product, as the handout counts it, not halved for
  causality). Training is ``3 x`` forward (backward = 2 x forward).
- memory (float32 unless ``bytes_per_value`` says otherwise): parameters,
  gradients (same size), AdamW state (two moments), and the activations saved
  for backward for a batch, itemised per the handout: per layer the norms'
  inputs (QK-norm: its query and key inputs), QKV, ``QK^T`` and softmax ``(B, H, T, T)``, the attention output, the
  output projection and the FFN's hidden tensors; then the final norm, the
  logits and the cross-entropy's softmax ``(B, T, V)``.
"""

from __future__ import annotations

from cs336_basics.config.model import ModelConfig
from cs336_basics.config.variants import BLOCK, FFN, NORM, POSITION, QK_NORM


def resolved_d_ff(cfg: ModelConfig) -> int:
    return cfg.resolved_d_ff


def _ffn_matrices(cfg: ModelConfig) -> int:
    """Matrices in one (dense) FFN or one expert: 2 for gelu/silu, 3 for the gated ones."""
    return FFN[cfg.ffn].matrices


def _norm_params(cfg: ModelConfig) -> int:
    return NORM[cfg.norm].params_per_dim * cfg.d_model


def _norms_per_block(cfg: ModelConfig) -> int:
    return BLOCK[cfg.block].norms


def _qk_norm_params(cfg: ModelConfig) -> int:
    """Per layer: one gain of head size for the queries, one for the keys (shared by the heads)."""
    return 2 * QK_NORM[cfg.qk_norm].params_per_dim * cfg.head_size


def count_parameters(cfg: ModelConfig) -> dict[str, int]:
    """Parameters by component, plus ``total``, ``embedding``, ``non_embedding`` and ``non_embedding_no_head``."""
    d, V, L = cfg.d_model, cfg.require_vocab_size(), cfg.num_layers
    d_ff = resolved_d_ff(cfg)
    ffn_dense = _ffn_matrices(cfg) * d * d_ff
    ffn_layer = cfg.num_experts * ffn_dense + d * cfg.num_experts if FFN[cfg.ffn].experts else ffn_dense
    counts = {
        "token_embeddings": V * d,
        "position_embeddings": cfg.context_length * d if POSITION[cfg.position].learned_table else 0,
        "attention": L * 4 * d * d,
        "ffn": L * ffn_layer,
        "norms": (L * _norms_per_block(cfg) + 1) * _norm_params(cfg) + L * _qk_norm_params(cfg),  # + final norm
        "lm_head": 0 if cfg.tie_embeddings else d * V,
    }
    total = sum(counts.values())
    embedding = counts["token_embeddings"] + counts["position_embeddings"]
    counts["total"] = total
    counts["embedding"] = embedding
    counts["non_embedding"] = total - embedding + (d * V if cfg.tie_embeddings else 0)
    counts["non_embedding_no_head"] = total - embedding - counts["lm_head"]
    return counts


def _active_ffn_matmul_params(cfg: ModelConfig) -> int:
    """FFN matmul parameters one token passes through (MoE: router + top_k experts)."""
    dense = _ffn_matrices(cfg) * cfg.d_model * resolved_d_ff(cfg)
    if FFN[cfg.ffn].experts:
        return cfg.moe_top_k * dense + cfg.d_model * cfg.num_experts
    return dense


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters in the matmuls a token goes through, LM head included (``6 N`` FLOPs/token for MFU)."""
    d = cfg.d_model
    return cfg.num_layers * (4 * d * d + _active_ffn_matmul_params(cfg)) + d * cfg.require_vocab_size()


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> dict[str, int]:
    """Forward FLOPs per token by component (``seq_len`` defaults to context_length); ``train`` = 3 x total."""
    d, L = cfg.d_model, cfg.num_layers
    T = seq_len or cfg.context_length
    flops = {
        "attention_projections": L * 2 * 4 * d * d,
        "attention_scores": L * 2 * 2 * T * d,
        "ffn": L * 2 * _active_ffn_matmul_params(cfg),
        "lm_head": 2 * d * cfg.require_vocab_size(),
    }
    flops["total"] = sum(flops.values())
    flops["train"] = 3 * flops["total"]
    return flops


def activation_elements(cfg: ModelConfig, batch_size: int, seq_len: int | None = None) -> dict[str, int]:
    """Activation elements saved for backward, by component, for one batch."""
    d, L, H, V = cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.require_vocab_size()
    T = seq_len or cfg.context_length
    BT = batch_size * T
    d_ff = resolved_d_ff(cfg)
    # hidden tensors per FFN: W1 out + activation (+ W3 out + gated product), then the W2 output
    hidden = FFN[cfg.ffn].hidden_tensors
    ffn = BT * (hidden * d_ff + d)
    if FFN[cfg.ffn].experts:
        ffn = cfg.moe_top_k * ffn + BT * cfg.num_experts
    per_layer = {
        "norms": _norms_per_block(cfg) * BT * d + (2 * BT * d if QK_NORM[cfg.qk_norm].params_per_dim else 0),
        "qkv": 3 * BT * d,
        "scores_and_softmax": 2 * batch_size * H * T * T,
        "attention_output": 2 * BT * d,  # weighted sum of values + output projection
        "ffn": ffn,
    }
    acts = {f"layers.{k}": L * v for k, v in per_layer.items()}
    acts["final_norm"] = BT * d
    acts["logits_and_cross_entropy"] = 2 * BT * V
    acts["total"] = sum(acts.values())
    return acts


def memory_bytes(cfg: ModelConfig, batch_size: int = 1, seq_len: int | None = None,
                 bytes_per_value: int = 4) -> dict[str, int]:
    """Training memory in bytes: parameters, gradients, AdamW state, activations and their total."""
    params = count_parameters(cfg)["total"]
    mem = {
        "parameters": params * bytes_per_value,
        "gradients": params * bytes_per_value,
        "adamw_state": 2 * params * bytes_per_value,
        "activations": activation_elements(cfg, batch_size, seq_len)["total"] * bytes_per_value,
    }
    mem["total"] = sum(mem.values())
    return mem
