"""Every model variant's name, one registry per axis: the single place that lists the allowed names.

An axis (position, block, norm, ffn, attention, qk_norm, init) maps each name to a spec: a
line of documentation and the few structural facts that code without torch needs (parameter
and FLOP accounting, which decoder a KV cache can use, which config fields apply).
:class:`~cs336_basics.config.model.ModelConfig` takes its allowed values from here and
validates against them at load time, so an invalid name never reaches a sweep, a run
directory or a model constructor.

The classes that implement the names live in :mod:`cs336_basics.model.variant_classes`, a plain
map per axis; this module imports nothing of the model, so reading or validating a config
never imports torch. Adding a variant = one entry here, its class, and one entry in that
map; a test checks that both list the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class PositionSpec:
    doc: str
    """What the variant computes, with its reference."""
    learned_table: bool = False
    """A trained ``(context_length, d_model)`` table: parameters, and no position past context_length."""
    relative: bool = False
    """Attention sees only relative offsets (or none): a sliding KV cache decodes exactly."""
    rotary: bool = False
    """Queries and keys are rotated in pairs: the head size must be even."""


@dataclass(frozen=True)
class BlockSpec:
    doc: str
    """What the variant computes, with its reference."""
    norms: int = 2
    """Normalisation layers per block."""


@dataclass(frozen=True)
class NormSpec:
    doc: str
    """What the variant computes, with its reference."""
    params_per_dim: int = 1
    """Parameters per model dimension (a gain; LayerNorm adds a bias)."""


@dataclass(frozen=True)
class FFNSpec:
    doc: str
    """What the variant computes, with its reference."""
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
    doc: str
    """What the variant computes, with its reference."""


@dataclass(frozen=True)
class AttentionSpec:
    doc: str
    """What the variant computes, with its reference."""
    by_device: tuple[tuple[str, str], ...] = ()
    """``auto`` only: (device type, kernel name) pairs; other devices get ``reference``."""


class Registry(Generic[S]):
    """The names of one axis, each with its spec."""

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

    @property
    def implemented(self) -> tuple[str, ...]:
        """The names a class of their own implements: all but those that resolve to another entry (``auto``)."""
        return tuple(name for name, spec in self.entries.items() if not getattr(spec, "by_device", ()))

    def check(self, name: str) -> None:
        if name not in self.entries:
            raise ValueError(f"model.{self.axis}: {name!r} is not one of {', '.join(self.names)}")


POSITION: Registry[PositionSpec] = Registry("position", {
    "learned": PositionSpec("a trained table added to the embeddings (GPT-2)", learned_table=True),
    "sinusoidal": PositionSpec("the fixed sin/cos table (Vaswani et al. 2017)"),
    "rope": PositionSpec("rotary embeddings of queries and keys (Su et al. 2021)", relative=True, rotary=True),
    "none": PositionSpec("no position information (NoPE)", relative=True),
})

BLOCK: Registry[BlockSpec] = Registry("block", {
    "prenorm": BlockSpec("x + Attn(N(x)), then + FFN(N(.)) (GPT-2, Llama)"),
    "postnorm": BlockSpec("N(x + Attn(x)), then N(. + FFN(.)) (Vaswani et al. 2017)"),
    "parallel": BlockSpec("x + Attn(N(x)) + FFN(N(x)) (GPT-J, PaLM)", norms=1),
})

NORM: Registry[NormSpec] = Registry("norm", {
    "rmsnorm": NormSpec("RMSNorm (Zhang & Sennrich 2019)"),
    "layernorm": NormSpec("LayerNorm with a bias (Ba et al. 2016)", params_per_dim=2),
    "none": NormSpec("no normalisation (the ablation)", params_per_dim=0),
})

FFN: Registry[FFNSpec] = Registry("ffn", {
    "gelu": FFNSpec("W2 GELU(W1 x)"),
    "swiglu": FFNSpec("W2 (SiLU(W1 x) * W3 x) (Shazeer 2020)", matrices=3, hidden_tensors=4, gated_width=True),
    "silu": FFNSpec("W2 SiLU(W1 x): SwiGLU without its gate"),
    "relu2": FFNSpec("W2 ReLU(W1 x)^2 (So et al. 2021, Primer)"),
    "moe": FFNSpec("top-k routed SwiGLU experts", matrices=3, hidden_tensors=4, gated_width=True, experts=True),
})

ATTENTION: Registry[AttentionSpec] = Registry("attention", {
    "auto": AttentionSpec("PyTorch's fused SDPA on CPU and CUDA, the reference elsewhere (chosen once, when the "
                          "model is built)", by_device=(("cpu", "sdpa"), ("cuda", "sdpa"))),
    "reference": AttentionSpec("the from-scratch kernel: QK^T, mask, softmax, V"),
    "sdpa": AttentionSpec("torch.nn.functional.scaled_dot_product_attention"),
})

QK_NORM: Registry[NormSpec] = Registry("qk_norm", {
    "none": NormSpec("queries and keys as projected", params_per_dim=0),
    "rmsnorm": NormSpec("RMSNorm of each head's query and key before RoPE, one gain per head dimension shared by "
                        "the heads (Dehghani et al. 2023; Wortsman et al. 2023)"),
})

INIT: Registry[InitSpec] = Registry("init", {
    "handout": InitSpec("every matrix drawn as the handout says (truncated normal)"),
    "zero_out": InitSpec("the handout's draw, then the attention output projection and the FFN down-projection of "
                         "every block set to zero: each block starts as the identity on the residual stream"),
})

REGISTRIES = (POSITION, BLOCK, NORM, FFN, ATTENTION, QK_NORM, INIT)


def attention_kernel(name: str, device_type: str) -> str:
    """The concrete kernel for ``model.attention=name`` on a device type (``auto`` resolved, others unchanged)."""
    spec = ATTENTION[name]
    if not spec.by_device:
        return name
    return dict(spec.by_device).get(device_type, "reference")


def default_d_ff(ffn: str, d_model: int) -> int:
    """The handouts' widths: ``4 d_model``, or ``8/3 d_model`` to the nearest multiple of 64 for gated FFNs."""
    if FFN[ffn].gated_width:
        return max(64, 64 * round(8 * d_model / 3 / 64))
    return 4 * d_model
