"""The classes behind every model variant name: one plain map per axis.

The names, with their documentation and the structural facts that code without
torch needs, are the registries of :mod:`cs336_basics.config.variants`; this module
maps each of them to the sibling class that implements it, so building a model
is a dictionary look-up and ``forward`` never branches on flags. ``auto``
attention names no class of its own: :func:`~cs336_basics.config.variants.attention_kernel`
resolves it to one of the kernels below first. ``tests/model/test_model_variants.py``
checks that each map holds exactly the names its registry implements.

The interfaces each axis' classes share:

- positions: ``absolute(cfg, ...)`` (the module added to the embeddings) and
  ``rotary(cfg, ...)`` (the rotation given to every attention layer);
- blocks: ``Block(attn, ffn, ln1, ln2, residual_pdrop)``;
- norms and QK norms: ``Norm(dim, eps, device=, dtype=)``;
- FFNs: ``FFN.from_config(cfg, device=, dtype=, generator=)``;
- attention kernels: ``Kernel(attn_pdrop)``;
- initialisations: ``Init.apply(model)``, after the layers drew their own weights.
"""

from __future__ import annotations

from cs336_basics.model.attention import ReferenceAttention, SDPAAttention
from cs336_basics.model.blocks import ParallelBlock, PostNormBlock, PreNormBlock
from cs336_basics.model.ffn import GeluFFN, MoEFFN, ReLU2FFN, SiLUFFN, SwiGLU
from cs336_basics.model.init import HandoutInit, ZeroOutInit
from cs336_basics.model.layers import LayerNorm, NoNorm, RMSNorm
from cs336_basics.model.positions import LearnedPositions, NoPositions, RotaryPositions, SinusoidalPositions

POSITIONS: dict[str, type] = {
    "learned": LearnedPositions,
    "sinusoidal": SinusoidalPositions,
    "rope": RotaryPositions,
    "none": NoPositions,
}

BLOCKS: dict[str, type] = {
    "prenorm": PreNormBlock,
    "postnorm": PostNormBlock,
    "parallel": ParallelBlock,
}

NORMS: dict[str, type] = {
    "rmsnorm": RMSNorm,
    "layernorm": LayerNorm,
    "none": NoNorm,
}

FFNS: dict[str, type] = {
    "gelu": GeluFFN,
    "swiglu": SwiGLU,
    "silu": SiLUFFN,
    "relu2": ReLU2FFN,
    "moe": MoEFFN,
}

ATTENTION_KERNELS: dict[str, type] = {
    "reference": ReferenceAttention,
    "sdpa": SDPAAttention,
}

QK_NORMS: dict[str, type] = {
    "none": NoNorm,
    "rmsnorm": RMSNorm,
}

INITS: dict[str, type] = {
    "handout": HandoutInit,
    "zero_out": ZeroOutInit,
}

CLASSES: dict[str, dict[str, type]] = {
    "position": POSITIONS,
    "block": BLOCKS,
    "norm": NORMS,
    "ffn": FFNS,
    "attention": ATTENTION_KERNELS,
    "qk_norm": QK_NORMS,
    "init": INITS,
}
"""Every map above, by the ``ModelConfig`` field (the registry's ``axis``) that picks from it."""
