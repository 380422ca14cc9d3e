"""Named model presets: the two reference architectures and the standard shapes.

Two kinds, both plain dicts of :class:`~cs336_basics.model.config.ModelConfig` fields:

- *styles* set only architecture choices and keep the shape:
  ``gpt2`` (CS336 spring 2024: learned absolute positions, GELU FFN with
  ``d_ff = 4 d_model``, dropout 0.1 on attention probabilities, embeddings and
  sub-layer outputs, pre-norm RMSNorm, untied head) and ``llama`` (spring 2025:
  RoPE with theta 10000, SwiGLU with ``d_ff ~ 8/3 d_model``, no dropout,
  pre-norm RMSNorm, untied head);
- *shapes* set a style plus sizes: ``gpt2-small/medium/large/xl`` (Radford et al.
  2019, vocab 50257, context 1024), ``tinystories`` (the spring-2024 handout's
  model: vocab 10000, context 256, d_model 512, 4 layers, 16 heads, d_ff 2048,
  gpt2 style) and ``tinystories-llama`` (the spring-2025 one: the same with
  SwiGLU d_ff 1344 and RoPE, i.e. the ModelConfig defaults).

``apply_preset(cfg, name)`` returns ``cfg`` with the preset's fields replaced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.model.config import ModelConfig

GPT2_STYLE: dict[str, Any] = dict(position="learned", block="prenorm", norm="rmsnorm", ffn="gelu", d_ff=None,
                                  tie_embeddings=False, attn_pdrop=0.1, residual_pdrop=0.1)
LLAMA_STYLE: dict[str, Any] = dict(position="rope", rope_theta=10000.0, block="prenorm", norm="rmsnorm",
                                   ffn="swiglu", d_ff=None, tie_embeddings=False, attn_pdrop=0.0, residual_pdrop=0.0)


def _gpt2_shape(d_model: int, num_layers: int, num_heads: int) -> dict[str, Any]:
    return dict(GPT2_STYLE, vocab_size=50257, context_length=1024, d_model=d_model, num_layers=num_layers,
                num_heads=num_heads, d_ff=4 * d_model)


PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": GPT2_STYLE,
    "llama": LLAMA_STYLE,
    "gpt2-small": _gpt2_shape(768, 12, 12),
    "gpt2-medium": _gpt2_shape(1024, 24, 16),
    "gpt2-large": _gpt2_shape(1280, 36, 20),
    "gpt2-xl": _gpt2_shape(1600, 48, 25),
    "tinystories": dict(GPT2_STYLE, vocab_size=10000, context_length=256, d_model=512, num_layers=4, num_heads=16,
                        d_ff=2048),
    "tinystories-llama": dict(LLAMA_STYLE, vocab_size=10000, context_length=256, d_model=512, num_layers=4,
                              num_heads=16, d_ff=1344),
}


def apply_preset(cfg: ModelConfig, name: str) -> ModelConfig:
    """``cfg`` with the fields of preset ``name`` replaced."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r} (choose one of: {', '.join(PRESETS)})")
    return dataclasses.replace(cfg, **PRESETS[name])


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A fresh ModelConfig from preset ``name`` (on top of the defaults), then ``overrides``."""
    return dataclasses.replace(apply_preset(ModelConfig(), name), **overrides)
