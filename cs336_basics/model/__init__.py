"""The Transformer language model, its layers and its variants.

Start with :class:`TransformerLM` (built from a :class:`ModelConfig`, see
:mod:`cs336_basics.model.presets` for ``gpt2``/``llama`` and the standard
shapes) and :mod:`cs336_basics.model.accounting` for parameter, memory and
FLOP counts. The layers are importable on their own with explicit shapes, so
external weights can be loaded into any of them with ``load_state_dict``.
"""

from cs336_basics.model.attention import (
    ATTENTION_KERNELS,
    AutoAttention,
    MultiHeadSelfAttention,
    ReferenceAttention,
    SDPAAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from cs336_basics.model.blocks import (
    BLOCKS,
    NoNormBlock,
    ParallelBlock,
    PostNormBlock,
    PreNormBlock,
    TransformerBlock,
    build_block,
)
from cs336_basics.model.config import ModelConfig
from cs336_basics.model.ffn import GeluFFN, MoEFFN, SiLUFFN, SwiGLU, build_ffn, default_d_ff
from cs336_basics.model.kv_cache import KVCache
from cs336_basics.model.layers import (
    NORMS,
    Embedding,
    LayerNorm,
    Linear,
    NoNorm,
    RMSNorm,
    gelu,
    silu,
    softmax,
)
from cs336_basics.model.positions import (
    LearnedPositionEmbedding,
    NoAbsolutePosition,
    NoRotation,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
)
from cs336_basics.model.presets import PRESETS, apply_preset, preset
from cs336_basics.model.transformer import TiedLMHead, TransformerLM

__all__ = [
    "ATTENTION_KERNELS", "AutoAttention", "BLOCKS", "Embedding", "GeluFFN", "KVCache", "LayerNorm",
    "LearnedPositionEmbedding", "Linear", "MoEFFN", "ModelConfig", "MultiHeadSelfAttention", "NORMS",
    "NoAbsolutePosition", "NoNorm", "NoNormBlock", "NoRotation", "PRESETS", "ParallelBlock", "PostNormBlock",
    "PreNormBlock", "RMSNorm", "ReferenceAttention", "RotaryEmbedding", "SDPAAttention", "SiLUFFN",
    "SinusoidalPositionEmbedding", "SwiGLU", "TiedLMHead", "TransformerBlock", "TransformerLM", "apply_preset",
    "build_block", "build_ffn", "causal_mask", "default_d_ff", "gelu", "preset", "scaled_dot_product_attention",
    "silu", "softmax",
]
