"""ModelConfig: the shape of the network and which variant of each part to use.

Variants are picked by name (``position="rope"``, ``ffn="swiglu"``, ...); the
model package maps each name to a sibling class, so ``forward`` never branches
on flags. The defaults are the CS336 spring-2025 (Llama-style) TinyStories model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    vocab_size: int = 10000
    """Number of token ids the embedding and the LM head cover."""
    context_length: int = 256
    """Longest sequence the model is trained on (and the size of learned position tables)."""
    d_model: int = 512
    """Width of the residual stream."""
    num_layers: int = 4
    """Number of Transformer blocks."""
    num_heads: int = 16
    """Attention heads; d_model must be divisible by it."""
    d_ff: int | None = None
    """Hidden width of the feed-forward network; None picks 4*d_model (gelu, and silu, which that parameter-matches to swiglu) or 8/3*d_model rounded to the nearest multiple of 64 (swiglu, moe experts)."""
    position: Literal["learned", "sinusoidal", "rope", "none"] = "rope"
    """Position information: learned absolute, fixed sinusoidal, rotary (RoPE) or none (NoPE)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    block: Literal["prenorm", "postnorm", "parallel", "nonorm"] = "prenorm"
    """Block layout: pre-norm, post-norm, parallel attention+FFN (GPT-J/PaLM) or no normalisation."""
    norm: Literal["rmsnorm", "layernorm", "none"] = "rmsnorm"
    """Normalisation layer used inside blocks and before the LM head."""
    norm_eps: float = 1e-5
    """Epsilon of the normalisation layers."""
    ffn: Literal["gelu", "swiglu", "silu", "moe"] = "swiglu"
    """Feed-forward network: W2 GELU(W1 x), SwiGLU, non-gated SiLU, or a mixture of SwiGLU experts."""
    num_experts: int = 8
    """MoE only: number of experts."""
    moe_top_k: int = 2
    """MoE only: experts each token is routed to."""
    moe_aux_loss_coef: float = 0.01
    """MoE only: weight of the load-balancing loss added to the training loss."""
    tie_embeddings: bool = False
    """Share the token embedding matrix with the LM head."""
    attn_pdrop: float = 0.0
    """Dropout on attention probabilities (GPT-2 style)."""
    residual_pdrop: float = 0.0
    """Dropout on the embedding sum and on each sub-layer output before the residual add."""
    attention: Literal["auto", "reference", "sdpa"] = "auto"
    """Attention kernel: our reference implementation, PyTorch's fused SDPA (an optional fast path, tested equal), or auto (SDPA on CUDA and CPU where it is faster, the reference on other devices)."""
