"""Every model variant, one registry per axis: the single place that lists the allowed names.

An axis (position, block, norm, ffn, attention, qk_norm, init) maps each name to a spec: the
class that implements it, as ``"module:Class"`` inside :mod:`cs336_basics.model`,
and the few structural facts that code without torch needs (parameter and FLOP
accounting, which decoder a KV cache can use). :class:`~cs336_basics.model.config.ModelConfig`
takes its allowed values from here and validates against them at load time, so
an invalid name never reaches a sweep, a run directory or a model constructor.

The implementing classes are imported only when a model is built
(:meth:`Registry.load`): reading or validating a config must not pay the
seconds that importing torch takes. Adding a variant = one entry here plus its
class; a test checks that every entry resolves to a class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class PositionSpec:
    impl: str
    doc: str
    learned_table: bool = False
    """A trained ``(context_length, d_model)`` table: parameters, and no position past context_length."""
    relative: bool = False
    """Attention sees only relative offsets (or none): a sliding KV cache decodes exactly."""
    rotary: bool = False
    """Queries and keys are rotated in pairs: the head size must be even."""


@dataclass(frozen=True)
class BlockSpec:
    impl: str
    doc: str
    norms: int = 2
    """Normalisation layers per block."""


@dataclass(frozen=True)
class NormSpec:
    impl: str
    doc: str
    params_per_dim: int = 1
    """Parameters per model dimension (a gain; LayerNorm adds a bias)."""


@dataclass(frozen=True)
class FFNSpec:
    impl: str
    doc: str
    matrices: int = 2
    """Weight matrices of one dense FFN (or one expert)."""
    hidden_tensors: int = 2
    """Hidden ``(tokens, d_ff)`` tensors saved for backward."""
    gated_width: bool = False
    """Default ``d_ff`` of 8/3 d_model (parameter-matched gated FFNs) instead of 4 d_model."""
    experts: bool = False
    """A routed mixture of experts (num_experts, moe_top_k apply)."""


@dataclass(frozen=True)
class InitSpec:
    impl: str
    """A class whose ``apply(model)`` adjusts the weights the layers drew for themselves."""
    doc: str


@dataclass(frozen=True)
class AttentionSpec:
    impl: str
    """The kernel class; empty for ``auto``, which names another entry per device type."""
    doc: str
    by_device: tuple[tuple[str, str], ...] = ()
    """``auto`` only: (device type, kernel name) pairs; other devices get ``reference``."""


class Registry(Generic[S]):
    """The names of one axis, each with its spec; ``load(name)`` imports the implementing class."""

    def __init__(self, axis: str, entries: dict[str, S]) -> None:
        self.axis = axis
        self.entries = entries

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    @property
    def literal(self) -> Any:
        """``Literal[name, ...]``: the config field's type, so loaders list the choices in errors and help."""
        return Literal[self.names]  # type: ignore[valid-type]

    def __getitem__(self, name: str) -> S:
        self.check(name)
        return self.entries[name]

    def check(self, name: str) -> None:
        if name not in self.entries:
            raise ValueError(f"model.{self.axis}: {name!r} is not one of {', '.join(self.names)}")

    def load(self, name: str) -> type:
        """The class implementing ``name`` (imports its module, and so torch)."""
        impl = self[name].impl  # type: ignore[attr-defined]
        if not impl:
            raise ValueError(f"model.{self.axis} {name!r} names no class of its own; resolve it first")
        module, _, cls = impl.partition(":")
        return getattr(importlib.import_module(f"cs336_basics.model.{module}"), cls)


POSITION: Registry[PositionSpec] = Registry("position", {
    "learned": PositionSpec("positions:LearnedPositions", "a trained table added to the embeddings (GPT-2)",
                            learned_table=True),
    "sinusoidal": PositionSpec("positions:SinusoidalPositions", "the fixed sin/cos table (Vaswani et al. 2017)"),
    "rope": PositionSpec("positions:RotaryPositions", "rotary embeddings of queries and keys (Su et al. 2021)",
                         relative=True, rotary=True),
    "none": PositionSpec("positions:NoPositions", "no position information (NoPE)", relative=True),
})

BLOCK: Registry[BlockSpec] = Registry("block", {
    "prenorm": BlockSpec("blocks:PreNormBlock", "x + Attn(N(x)), then + FFN(N(.)) (GPT-2, Llama)"),
    "postnorm": BlockSpec("blocks:PostNormBlock", "N(x + Attn(x)), then N(. + FFN(.)) (Vaswani et al. 2017)"),
    "parallel": BlockSpec("blocks:ParallelBlock", "x + Attn(N(x)) + FFN(N(x)) (GPT-J, PaLM)", norms=1),
})

NORM: Registry[NormSpec] = Registry("norm", {
    "rmsnorm": NormSpec("layers:RMSNorm", "RMSNorm (Zhang & Sennrich 2019)"),
    "layernorm": NormSpec("layers:LayerNorm", "LayerNorm with a bias (Ba et al. 2016)", params_per_dim=2),
    "none": NormSpec("layers:NoNorm", "no normalisation (the ablation)", params_per_dim=0),
})

FFN: Registry[FFNSpec] = Registry("ffn", {
    "gelu": FFNSpec("ffn:GeluFFN", "W2 GELU(W1 x)"),
    "swiglu": FFNSpec("ffn:SwiGLU", "W2 (SiLU(W1 x) * W3 x) (Shazeer 2020)", matrices=3, hidden_tensors=4,
                      gated_width=True),
    "silu": FFNSpec("ffn:SiLUFFN", "W2 SiLU(W1 x): SwiGLU without its gate"),
    "relu2": FFNSpec("ffn:ReLU2FFN", "W2 ReLU(W1 x)^2 (So et al. 2021, Primer)"),
    "moe": FFNSpec("ffn:MoEFFN", "top-k routed SwiGLU experts", matrices=3, hidden_tensors=4, gated_width=True,
                   experts=True),
})

ATTENTION: Registry[AttentionSpec] = Registry("attention", {
    "auto": AttentionSpec("", "PyTorch's fused SDPA on CPU and CUDA, the reference elsewhere (chosen once, when "
                              "the model is built)", by_device=(("cpu", "sdpa"), ("cuda", "sdpa"))),
    "reference": AttentionSpec("attention:ReferenceAttention", "the from-scratch kernel: QK^T, mask, softmax, V"),
    "sdpa": AttentionSpec("attention:SDPAAttention", "torch.nn.functional.scaled_dot_product_attention"),
})

QK_NORM: Registry[NormSpec] = Registry("qk_norm", {
    "none": NormSpec("layers:NoNorm", "queries and keys as projected", params_per_dim=0),
    "rmsnorm": NormSpec("layers:RMSNorm", "RMSNorm of each head's query and key before RoPE, one gain per head "
                                          "dimension shared by the heads (Dehghani et al. 2023; Wortsman et al. 2023)"),
})

INIT: Registry[InitSpec] = Registry("init", {
    "handout": InitSpec("init:HandoutInit", "every matrix drawn as the handout says (truncated normal)"),
    "zero_out": InitSpec("init:ZeroOutInit", "the handout's draw, then the attention output projection and the FFN "
                                            "down-projection of every block set to zero: each block starts as the "
                                            "identity on the residual stream"),
})

REGISTRIES = (POSITION, BLOCK, NORM, FFN, ATTENTION, QK_NORM, INIT)


def attention_kernel(name: str, device_type: str) -> str:
    """The concrete kernel for ``model.attention=name`` on a device type (``auto`` resolved, others unchanged)."""
    spec = ATTENTION[name]
    if spec.impl:
        return name
    return dict(spec.by_device).get(device_type, "reference")


def default_d_ff(ffn: str, d_model: int) -> int:
    """The handouts' widths: ``4 d_model``, or ``8/3 d_model`` to the nearest multiple of 64 for gated FFNs."""
    if FFN[ffn].gated_width:
        return max(64, 64 * round(8 * d_model / 3 / 64))
    return 4 * d_model
