"""The Transformer language model, its layers and its variants.

Start with :class:`TransformerLM` (built from a :class:`ModelConfig`, see
:mod:`cs336_basics.config.presets` for ``gpt2``/``llama`` and the standard
shapes). The layers are importable on their own with explicit shapes, so
external weights can be loaded into any of them with ``load_state_dict``.

The config side lives in :mod:`cs336_basics.config`, which imports no torch:
:class:`ModelConfig` and the presets (re-exported here for code that builds
models), the variant names (:mod:`cs336_basics.config.variants`; the classes
behind them are :mod:`.variant_classes`), and the parameter, memory and FLOP counts of
a config (:mod:`cs336_basics.config.accounting`).
"""

from __future__ import annotations

from cs336_basics.config import MODEL_PRESETS, ModelConfig, apply_preset, preset
from cs336_basics.model.attention import (CopyingReferenceAttention, MultiHeadSelfAttention, ReferenceAttention,
                                          SDPAAttention, causal_mask, scaled_dot_product_attention)
from cs336_basics.model.blocks import ParallelBlock, PostNormBlock, PreNormBlock, TransformerBlock
from cs336_basics.model.compiled import compile_model, prepare_for_compile
from cs336_basics.model.ffn import DenseMoEFFN, GeluFFN, MoEFFN, SiLUFFN, SwiGLU
from cs336_basics.model.kv_cache import KVCache
from cs336_basics.model.layers import Embedding, LayerNorm, Linear, NoNorm, RMSNorm, gelu, silu, softmax
from cs336_basics.model.positions import (LearnedPositionEmbedding, NoAbsolutePosition, NoRotation,
                                          PairRotaryEmbedding, RotaryEmbedding, SinusoidalPositionEmbedding)
from cs336_basics.model.transformer import TiedLMHead, TransformerLM, build_block

__all__ = [
    "MODEL_PRESETS", "CopyingReferenceAttention", "DenseMoEFFN", "Embedding", "GeluFFN", "KVCache", "LayerNorm",
    "LearnedPositionEmbedding", "Linear", "ModelConfig", "MoEFFN", "MultiHeadSelfAttention", "NoAbsolutePosition",
    "NoNorm", "NoRotation", "PairRotaryEmbedding", "ParallelBlock", "PostNormBlock", "PreNormBlock", "RMSNorm",
    "ReferenceAttention", "RotaryEmbedding", "SDPAAttention", "SiLUFFN", "SinusoidalPositionEmbedding", "SwiGLU",
    "TiedLMHead", "TransformerBlock", "TransformerLM", "apply_preset", "build_block", "causal_mask",
    "compile_model", "gelu", "prepare_for_compile", "preset", "scaled_dot_product_attention", "silu", "softmax",
]
