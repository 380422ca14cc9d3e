"""ModelConfig: the shape of the network and which variant of each part to use.

Variants are picked by name (``position="rope"``, ``ffn="swiglu"``, ...); the
allowed names come from the registries in :mod:`cs336_basics.config.variants`,
and :mod:`cs336_basics.model.variant_classes` maps each name to a sibling class, so
``forward`` never branches on flags. ``__post_init__`` validates every field once
(names, ranges, divisibility), so an invalid model config cannot be loaded,
swept, written into a run directory or built. The defaults are the CS336
spring-2025 (Llama-style) TinyStories model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cs336_basics.config.variants import (ATTENTION, BLOCK, FFN, INIT, NORM, POSITION, QK_NORM, REGISTRIES,
                                          default_d_ff)

LIMITS = {"vocab_size": 2**22, "context_length": 2**20, "d_model": 2**16, "num_layers": 2**10, "num_heads": 2**10,
          "d_ff": 2**18, "num_experts": 2**10}
"""Sanity bounds: far above any real model (GPT-3: d_model 12,288, 96 layers), far below a typo's allocation."""

PositionName = POSITION.literal
BlockName = BLOCK.literal
NormName = NORM.literal
FFNName = FFN.literal
AttentionName = ATTENTION.literal
QKNormName = QK_NORM.literal
InitName = INIT.literal


@dataclass
class ModelConfig:
    vocab_size: int | None = None
    """Number of token ids the embedding and the LM head cover; unset: the training tokenizer's size (a run records the resolved value, and a value that differs from the tokenizer's is an error)."""
    context_length: int = 256
    """Longest sequence the model is trained on (and the size of learned position tables)."""
    d_model: int = 512
    """Width of the residual stream."""
    num_layers: int = 4
    """Number of Transformer blocks."""
    num_heads: int = 16
    """Attention heads; d_model must be divisible by it."""
    d_ff: int | None = None
    """Hidden width of the feed-forward network; None picks 4*d_model (gelu, relu2, and silu, which that parameter-matches to swiglu) or 8/3*d_model rounded to the nearest multiple of 64 (swiglu, moe experts)."""
    position: PositionName = "rope"
    """Position information: learned absolute, fixed sinusoidal, rotary (RoPE) or none (NoPE)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    block: BlockName = "prenorm"
    """Block layout: pre-norm, post-norm or parallel attention+FFN (GPT-J/PaLM)."""
    norm: NormName = "rmsnorm"
    """Normalisation layer used inside blocks and before the LM head; none is the no-normalisation ablation."""
    norm_eps: float = 1e-5
    """Epsilon of the normalisation layers."""
    ffn: FFNName = "swiglu"
    """Feed-forward network: W2 GELU(W1 x), SwiGLU, non-gated SiLU, W2 ReLU(W1 x)^2, or a mixture of SwiGLU experts."""
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
    attention: AttentionName = "auto"
    """Attention kernel: our from-scratch reference implementation, PyTorch's fused SDPA (an optional fast path, tested equal), or auto (SDPA on CPU and CUDA, the reference on other devices; chosen when the model is built)."""

    qk_norm: QKNormName = "none"
    """Normalisation of each head's queries and keys before RoPE: none, or RMSNorm (QK-norm)."""
    init: InitName = "handout"
    """Initialisation scheme: the handout's truncated normals, or the same with zeroed attention output and FFN down-projections (zero_out)."""

    def __post_init__(self) -> None:
        for registry in REGISTRIES:
            registry.check(getattr(self, registry.axis))
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            value = getattr(self, name)
            if value is None and name == "vocab_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
            if value > LIMITS[name]:
                raise ValueError(f"model.{name} = {value:,} is beyond any model this toolkit can build "
                                 f"(at most {LIMITS[name]:,}); check the value")
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if POSITION[self.position].rotary and self.head_size % 2:
            raise ValueError(f"RoPE needs an even head size, but d_model/num_heads = {self.head_size}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal positions need an even model.d_model, got {self.d_model}")
        if self.d_ff is not None and not 0 < self.d_ff <= LIMITS["d_ff"]:
            raise ValueError(f"model.d_ff must be positive (at most {LIMITS['d_ff']:,}) or unset, got {self.d_ff}")
        if not 1 <= self.num_experts <= LIMITS["num_experts"]:
            raise ValueError(f"model.num_experts must be between 1 and {LIMITS['num_experts']}, got {self.num_experts}")
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"model.{name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.moe_aux_loss_coef) and self.moe_aux_loss_coef >= 0):
            raise ValueError(f"model.moe_aux_loss_coef must be finite and >= 0, got {self.moe_aux_loss_coef}")
        if FFN[self.ffn].experts and not 1 <= self.moe_top_k <= self.num_experts:
            raise ValueError(f"model.moe_top_k must be between 1 and model.num_experts ({self.num_experts}), "
                             f"got {self.moe_top_k}")
        for name in ("attn_pdrop", "residual_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")

    def with_changes(self, **changes: Any) -> ModelConfig:
        """``dataclasses.replace`` that keeps a derived ``d_ff`` derived.

        When ``d_model`` or ``ffn`` change and ``d_ff`` is not among the changes, a ``d_ff`` equal to the
        default width of the old shape is recomputed for the new one (an explicit, different width is kept):
        ``--set model.d_model=768`` on a config whose d_ff is SwiGLU's default for 256 gives 8/3 x 768.
        """
        shape_changed = any(k in changes and changes[k] != getattr(self, k) for k in ("d_model", "ffn"))
        if shape_changed and "d_ff" not in changes and self.d_ff == default_d_ff(self.ffn, self.d_model):
            changes["d_ff"] = None
        return dataclasses.replace(self, **changes)

    def require_vocab_size(self) -> int:
        """``vocab_size``, or a ValueError saying how to set it (a model cannot be built without one)."""
        if self.vocab_size is None:
            raise ValueError("model.vocab_size is unset: training takes it from the tokenizer; set "
                             "model.vocab_size=N to build or count a model without one")
        return self.vocab_size

    @property
    def head_size(self) -> int:
        return self.d_model // self.num_heads

    @property
    def resolved_d_ff(self) -> int:
        """``d_ff``, or the default width of this FFN when it is unset."""
        return self.d_ff if self.d_ff is not None else default_d_ff(self.ffn, self.d_model)
