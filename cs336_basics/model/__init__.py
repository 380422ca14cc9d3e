"""The Transformer language model, its layers and its variants.

Start with :class:`TransformerLM` (built from a :class:`ModelConfig`, see
:mod:`cs336_basics.model.presets` for ``gpt2``/``llama`` and the standard
shapes) and :mod:`cs336_basics.model.accounting` for parameter, memory and
FLOP counts. The layers are importable on their own with explicit shapes, so
external weights can be loaded into any of them with ``load_state_dict``.

Public names are imported on first use (:mod:`cs336_basics.lazy`) so that reading a
config or building the CLI does not pay for importing torch.
"""

from __future__ import annotations

from cs336_basics.lazy import lazy_exports

_EXPORTS = {
    "CopyingReferenceAttention": "attention",
    "MultiHeadSelfAttention": "attention",
    "ReferenceAttention": "attention",
    "SDPAAttention": "attention",
    "causal_mask": "attention",
    "scaled_dot_product_attention": "attention",
    "ParallelBlock": "blocks",
    "PostNormBlock": "blocks",
    "PreNormBlock": "blocks",
    "TransformerBlock": "blocks",
    "build_block": "blocks",
    "compile_model": "compiled",
    "prepare_for_compile": "compiled",
    "ModelConfig": "config",
    "DenseMoEFFN": "ffn",
    "GeluFFN": "ffn",
    "MoEFFN": "ffn",
    "SiLUFFN": "ffn",
    "SwiGLU": "ffn",
    "KVCache": "kv_cache",
    "Embedding": "layers",
    "LayerNorm": "layers",
    "Linear": "layers",
    "NoNorm": "layers",
    "RMSNorm": "layers",
    "gelu": "layers",
    "silu": "layers",
    "softmax": "layers",
    "LearnedPositionEmbedding": "positions",
    "NoAbsolutePosition": "positions",
    "NoRotation": "positions",
    "PairRotaryEmbedding": "positions",
    "RotaryEmbedding": "positions",
    "SinusoidalPositionEmbedding": "positions",
    "PRESETS": "presets",
    "apply_preset": "presets",
    "preset": "presets",
    "TiedLMHead": "transformer",
    "TransformerLM": "transformer",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
