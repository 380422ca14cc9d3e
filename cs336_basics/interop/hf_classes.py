"""Which transformers class an exported model becomes, with its ``config.json`` and weights in that class's layout.

:func:`choose_class` picks, for a :class:`~cs336_basics.config.model.ModelConfig`,
a built-in transformers class that computes exactly our model when one does,
else our own :class:`CS336ForCausalLM` (``modeling_cs336.py``, shipped in the
folder and loaded with ``trust_remote_code=True``). The built-in classes all
share Llama's skeleton (RoPE, RMSNorm, pre-norm blocks, no biases) and differ in
the MLP and in QK-norm:

=======================  ===========================  =========
class                    ffn                          qk_norm
=======================  ===========================  =========
``LlamaForCausalLM``     swiglu                       none
``Qwen3ForCausalLM``     swiglu                       rmsnorm
``ArceeForCausalLM``     gelu, silu, relu2            none
``ApertusForCausalLM``   gelu, silu, relu2            rmsnorm
``MixtralForCausalLM``   moe                          none
``Qwen3MoeForCausalLM``  moe                          rmsnorm
=======================  ===========================  =========

The non-gated MLP of Arcee and Apertus is ``down(act(up(x)))`` with
``hidden_act`` one of transformers' activation names, which for these three are
ours (``gelu`` is the exact erf form, ``relu2`` is ``relu(x)^2``). Qwen3,
Apertus and Qwen3-MoE normalise each head's queries and keys with one RMSNorm
gain per head dimension before the rotation, as we do. Mixtral and Qwen3-MoE
(with ``norm_topk_prob``) route as our MoE does: a float32 softmax over the
experts, the top k, their probabilities renormalised to sum to 1, SwiGLU
experts. Their experts are written one matrix per expert, the layout both the
4.x and the 5.x releases of transformers read. Tied embeddings are ``tie_word_embeddings``.

Two layout conversions, both exact:

- our attention keeps one fused ``qkv_proj`` weight ``(3*d_model, d_model)``
  (rows: all of q, then k, then v; head h at rows ``h*D:(h+1)*D`` of each);
  the built-in classes have separate ``q_proj``/``k_proj``/``v_proj``;
- our RoPE rotates adjacent pairs ``(2i, 2i+1)`` of each head (the CS336
  handout's layout) while theirs (``rotate_half``) pairs ``(i, i + D/2)`` with
  the same frequency ``theta^(-2i/D)``. Permuting the rows of q and k within
  every head by ``[0, 2, 4, ..., D-2, 1, 3, ..., D-1]`` turns one into the
  other, and since q and k get the same permutation the dot products are
  unchanged. A QK-norm gain is permuted the same way (the RMS over a head does
  not depend on the order of its dimensions).

Our own class keeps our parameter names under ``model.`` and our layouts, so
its weights are our state dict renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REMOTE_CLASS = "CS336ForCausalLM"
REMOTE_FILE = "modeling_cs336.py"
REMOTE_SOURCE = Path(__file__).resolve().parent / REMOTE_FILE
"""Our class's source: a data file of this package, copied into every folder that uses the class."""
AUTO_MAP = {"AutoConfig": "modeling_cs336.CS336Config", "AutoModelForCausalLM": "modeling_cs336.CS336ForCausalLM"}


@dataclass(frozen=True)
class NativeClass:
    """A built-in transformers class with Llama's skeleton: the MLPs and QK-norm it computes."""

    architecture: str
    model_type: str
    ffns: tuple[str, ...]
    qk_norm: str
    norm_names: tuple[str, str]
    """Names of a decoder layer's two norms: before attention, before the MLP."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Config entries of this class beyond the shared ones."""
    mlp: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    """Names of a (gated) MLP's or an expert's matrices: our ``w1``, ``w3``, ``w2``."""
    moe_block: str = "mlp"
    """Name of a decoder layer's mixture of experts (its router is ``gate``, its experts ``experts.<e>``)."""
    moe_keys: tuple[tuple[str, str], ...] = ()
    """Config entries of a mixture of experts: (this class's key, our ModelConfig attribute)."""


NATIVE_CLASSES = (
    NativeClass("LlamaForCausalLM", "llama", ("swiglu",), "none", ("input_layernorm", "post_attention_layernorm")),
    NativeClass("Qwen3ForCausalLM", "qwen3", ("swiglu",), "rmsnorm", ("input_layernorm", "post_attention_layernorm"),
                extra=(("use_sliding_window", False), ("sliding_window", None))),
    NativeClass("ArceeForCausalLM", "arcee", ("gelu", "silu", "relu2"), "none",
                ("input_layernorm", "post_attention_layernorm")),
    NativeClass("ApertusForCausalLM", "apertus", ("gelu", "silu", "relu2"), "rmsnorm",
                ("attention_layernorm", "feedforward_layernorm")),
    NativeClass("MixtralForCausalLM", "mixtral", ("moe",), "none", ("input_layernorm", "post_attention_layernorm"),
                extra=(("sliding_window", None), ("router_jitter_noise", 0.0), ("output_router_logits", False)),
                mlp=("w1", "w3", "w2"), moe_block="block_sparse_moe",
                moe_keys=(("num_local_experts", "num_experts"), ("num_experts_per_tok", "moe_top_k"),
                          ("router_aux_loss_coef", "moe_aux_loss_coef"))),
    NativeClass("Qwen3MoeForCausalLM", "qwen3_moe", ("moe",), "rmsnorm",
                ("input_layernorm", "post_attention_layernorm"),
                extra=(("use_sliding_window", False), ("sliding_window", None), ("norm_topk_prob", True),
                       ("decoder_sparse_step", 1), ("mlp_only_layers", ()), ("output_router_logits", False)),
                moe_keys=(("num_experts", "num_experts"), ("num_experts_per_tok", "moe_top_k"),
                          ("moe_intermediate_size", "resolved_d_ff"), ("router_aux_loss_coef", "moe_aux_loss_coef"))),
)

SKELETON = {"position": "rope", "norm": "rmsnorm", "block": "prenorm"}
"""What every built-in class above has: rotary positions, RMSNorm, pre-norm blocks."""


@dataclass(frozen=True)
class Choice:
    """The class an export uses, and why (one line for the user)."""

    architecture: str
    reason: str
    native: NativeClass | None = None

    @property
    def remote_code(self) -> bool:
        return self.native is None


def choose_class(cfg, *, remote_code: bool = False) -> Choice:
    """The built-in class that computes ``cfg``'s model exactly, else ours (always ours with ``remote_code``)."""
    if remote_code:
        return Choice(REMOTE_CLASS, "asked for with --remote-code")
    for key, wanted in SKELETON.items():
        if getattr(cfg, key) != wanted:
            return Choice(REMOTE_CLASS, f"{key}={getattr(cfg, key)}: no built-in transformers class computes this "
                                        f"model exactly (the ones that come close have {key}={wanted})")
    for native in NATIVE_CLASSES:
        if cfg.ffn in native.ffns and cfg.qk_norm == native.qk_norm:
            features = f"rope, rmsnorm, prenorm, ffn={cfg.ffn}, qk_norm={cfg.qk_norm}"
            return Choice(native.architecture, f"a built-in class that computes exactly this model ({features})",
                          native)
    return Choice(REMOTE_CLASS, f"ffn={cfg.ffn} with qk_norm={cfg.qk_norm}: no built-in class computes it")


# ------------------------------------------------------------------------------------------- config.json


def hf_config(cfg, choice: Choice, d_ff: int, *, eos_id: int | None, dtype: torch.dtype) -> dict[str, Any]:
    """``config.json`` for ``choice``: the model's shape, its token ids and the weights' dtype."""
    common = {
        "architectures": [choice.architecture],
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": bool(cfg.tie_embeddings),
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if choice.native is None:
        return {**common, "model_type": "cs336", "auto_map": dict(AUTO_MAP), "use_cache": False,
                "context_length": cfg.context_length, "d_model": cfg.d_model, "num_layers": cfg.num_layers,
                "num_heads": cfg.num_heads, "d_ff": d_ff, "position": cfg.position, "rope_theta": cfg.rope_theta,
                "block": cfg.block, "norm": cfg.norm, "norm_eps": cfg.norm_eps, "ffn": cfg.ffn,
                "num_experts": cfg.num_experts, "moe_top_k": cfg.moe_top_k, "qk_norm": cfg.qk_norm,
                "attention": cfg.attention, "attn_pdrop": cfg.attn_pdrop, "residual_pdrop": cfg.residual_pdrop}
    native = choice.native
    return {
        **common,
        "model_type": native.model_type,
        "hidden_size": cfg.d_model,
        "intermediate_size": d_ff,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_heads,
        "head_dim": cfg.head_size,
        "hidden_act": "silu" if cfg.ffn in ("swiglu", "moe") else cfg.ffn,  # SwiGLU experts gate with SiLU
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "attention_dropout": cfg.attn_pdrop,  # residual dropout has no counterpart in these classes
        "mlp_bias": False,
        "initializer_range": 0.02,
        "use_cache": True,
        **dict(native.extra),
        **{key: getattr(cfg, ours) for key, ours in native.moe_keys},
    }


# ------------------------------------------------------------------------------------------- weights


def rope_permutation(d_head: int) -> torch.Tensor:
    """Order that turns adjacent-pair RoPE (2i, 2i+1) into rotate-half RoPE (i, i + D/2)."""
    return torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])


def _permute_heads(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    d_out, d_in = weight.shape
    d_head = d_out // num_heads
    per_head = weight.view(num_heads, d_head, d_in)  # (H, D, d_model)
    return per_head[:, rope_permutation(d_head), :].reshape(d_out, d_in)  # (H*D, d_model)


def _mlp(state: dict[str, torch.Tensor], ours: str, theirs: str, names: tuple[str, str, str],
         gated: bool) -> dict[str, torch.Tensor]:
    """One FFN or expert: ``w1`` the gate (gated) or the up-projection, ``w3`` the up-projection, ``w2`` down."""
    gate, up, down = names
    if not gated:
        return {f"{theirs}up_proj.weight": state[ours + "w1.weight"],
                f"{theirs}down_proj.weight": state[ours + "w2.weight"]}
    return {f"{theirs}{gate}.weight": state[ours + "w1.weight"], f"{theirs}{up}.weight": state[ours + "w3.weight"],
            f"{theirs}{down}.weight": state[ours + "w2.weight"]}


def _native_weights(state: dict[str, torch.Tensor], cfg, native: NativeClass) -> dict[str, torch.Tensor]:
    d, H = cfg.d_model, cfg.num_heads
    attn_norm, mlp_norm = native.norm_names
    out = {"model.embed_tokens.weight": state["token_embeddings.weight"]}
    for i in range(cfg.num_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        qkv = state[ours + "attn.qkv_proj.weight"]  # (3d, d): q rows, then k rows, then v rows
        out[theirs + "self_attn.q_proj.weight"] = _permute_heads(qkv[:d], H)
        out[theirs + "self_attn.k_proj.weight"] = _permute_heads(qkv[d:2 * d], H)
        out[theirs + "self_attn.v_proj.weight"] = qkv[2 * d:]
        out[theirs + "self_attn.o_proj.weight"] = state[ours + "attn.output_proj.weight"]
        if native.qk_norm != "none":
            perm = rope_permutation(cfg.head_size)
            out[theirs + "self_attn.q_norm.weight"] = state[ours + "attn.q_norm.weight"][perm]
            out[theirs + "self_attn.k_norm.weight"] = state[ours + "attn.k_norm.weight"][perm]
        if cfg.ffn == "moe":
            block = f"{theirs}{native.moe_block}."
            out[block + "gate.weight"] = state[ours + "ffn.router.weight"]
            for e in range(cfg.num_experts):
                out.update(_mlp(state, f"{ours}ffn.experts.{e}.", f"{block}experts.{e}.", native.mlp, gated=True))
        else:
            out.update(_mlp(state, ours + "ffn.", theirs + "mlp.", native.mlp, gated=cfg.ffn == "swiglu"))
        out[theirs + f"{attn_norm}.weight"] = state[ours + "ln1.weight"]
        out[theirs + f"{mlp_norm}.weight"] = state[ours + "ln2.weight"]
    out["model.norm.weight"] = state["ln_final.weight"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out


def hf_state_dict(state: dict[str, torch.Tensor], cfg, choice: Choice | None = None) -> dict[str, torch.Tensor]:
    """Our TransformerLM state dict -> ``choice``'s names and layouts (default: :func:`choose_class`'s pick),
    as fresh contiguous CPU tensors."""
    choice = choice or choose_class(cfg)
    if choice.native is None:
        out = {(k if k == "lm_head.weight" else "model." + k): v for k, v in state.items()}
    else:
        out = _native_weights(state, cfg, choice.native)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}
