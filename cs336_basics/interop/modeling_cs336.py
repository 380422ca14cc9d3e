"""A cs336_basics Transformer LM as a transformers model: the remote code of an exported folder.

``cs336 export --format hf`` copies this file into the folder it writes and names
its two classes in ``config.json`` (``auto_map``), so that

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

builds :class:`CS336ForCausalLM` for a model that no built-in transformers class
computes exactly. The file depends on torch and transformers only (transformers
loads it as a module of its own, outside any package).

Every variant is chosen by the name the toolkit's ``ModelConfig`` uses:

- ``position``: ``rope`` (adjacent pairs ``(2i, 2i+1)`` of each head rotated by
  ``p * rope_theta^(-2i/D)``), ``learned`` (a trained table added to the token
  embeddings), ``sinusoidal`` (``sin``/``cos`` of ``p / 10000^(2i/d)`` interleaved,
  added) or ``none``;
- ``block``: ``prenorm`` ``x + Attn(ln1(x))`` then ``+ FFN(ln2(.))``; ``postnorm``
  ``ln1(x + Attn(x))`` then ``ln2(. + FFN(.))``; ``parallel`` ``x + Attn(ln1(x)) + FFN(ln1(x))``;
- ``norm``: ``rmsnorm``, ``layernorm`` (with a bias) or ``none``, computed in float32;
- ``ffn``: ``gelu`` (exact erf form), ``silu`` and ``relu2`` ``W2 act(W1 x)``;
  ``swiglu`` ``W2 (SiLU(W1 x) * W3 x)``; ``moe``: a softmax router picks the
  ``moe_top_k`` of ``num_experts`` SwiGLU experts per token, weights renormalised to sum to 1;
- ``qk_norm``: ``rmsnorm`` of each head's queries and keys (one gain per head
  dimension, shared by the heads) before the rotation, or ``none``;
- ``attention``: ``reference`` (scores, mask, float32 softmax, values, written out)
  or ``sdpa``/``auto`` (PyTorch's fused kernel): the same function;
- ``tie_word_embeddings``: logits from the token embedding matrix (no ``lm_head``).

Parameter names are the toolkit's own under ``model.`` (``model.layers.0.attn.qkv_proj.weight``,
rows ``[W_q; W_k; W_v]`` with each head's rows contiguous), so a checkpoint maps over by name.

Generation recomputes the whole sequence at every step (no KV cache): the
model's ``prepare_inputs_for_generation`` always passes the full ids, so
``generate`` is correct with any cache setting. Positions follow the attention
mask (``cumsum - 1``), so left-padded batches place every row's first real token at 0.
The training loss is the next-token cross entropy (the MoE load-balancing term is not added).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast


class CS336Config(PretrainedConfig):
    """The toolkit's ``ModelConfig`` fields by their own names (``hidden_size`` and friends are aliases)."""

    model_type = "cs336"
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "num_layers",
                     "num_attention_heads": "num_heads", "intermediate_size": "d_ff",
                     "max_position_embeddings": "context_length"}

    def __init__(self, vocab_size=256, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344,
                 position="rope", rope_theta=10000.0, block="prenorm", norm="rmsnorm", norm_eps=1e-5,
                 ffn="swiglu", num_experts=8, moe_top_k=2, qk_norm="none", attention="auto", attn_pdrop=0.0,
                 residual_pdrop=0.0, tie_word_embeddings=False, **kwargs):
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.d_model = d_model
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.d_ff = d_ff
        self.position = position
        self.rope_theta = rope_theta
        self.block = block
        self.norm = norm
        self.norm_eps = norm_eps
        self.ffn = ffn
        self.num_experts = num_experts
        self.moe_top_k = moe_top_k
        self.qk_norm = qk_norm
        self.attention = attention
        self.attn_pdrop = attn_pdrop
        self.residual_pdrop = residual_pdrop
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


# ----------------------------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        out = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight.float()
        return out.to(x.dtype)


class LayerNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        out = F.layer_norm(x.float(), x.shape[-1:], self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


def make_norm(name, dim, eps):
    if name == "rmsnorm":
        return RMSNorm(dim, eps)
    if name == "layernorm":
        return LayerNorm(dim, eps)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r} (rmsnorm, layernorm or none)")


ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu, "relu2": lambda h: F.relu(h).square()}


class FeedForward(nn.Module):
    """``W2 act(W1 x)``, or SwiGLU ``W2 (SiLU(W1 x) * W3 x)``."""

    def __init__(self, name, d_model, d_ff):
        super().__init__()
        self.gated = name == "swiglu"
        self.act = F.silu if self.gated else ACTIVATIONS[name]
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)
        if self.gated:
            self.w3 = nn.Linear(d_model, d_ff, bias=False)

    def forward(self, x):
        h = self.act(self.w1(x))
        return self.w2(h * self.w3(x) if self.gated else h)


class MixtureOfExperts(nn.Module):
    """Each token goes through its ``top_k`` most probable SwiGLU experts, mixed by renormalised probabilities."""

    def __init__(self, d_model, d_ff, num_experts, top_k):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward("swiglu", d_model, d_ff) for _ in range(num_experts))

    def forward(self, x):
        tokens = x.reshape(-1, x.shape[-1])  # (N, d)
        probs = self.router(tokens).float().softmax(dim=-1)  # (N, E)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (N, k)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            rows, rank = torch.where(chosen == e)
            if rows.numel():
                out.index_add_(0, rows, expert(tokens[rows]) * weights[rows, rank, None].to(x.dtype))
        return out.view_as(x)


# ----------------------------------------------------------------------------------------------- attention


def rotate_adjacent_pairs(x, positions, theta):
    """RoPE on ``x (B, H, T, D)``: pair ``(x_2i, x_2i+1)`` rotated by ``positions (B, T) * theta^(-2i/D)``."""
    d = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)  # (D/2,)
    angles = positions.float()[:, None, :, None] * inv_freq  # (B, 1, T, D/2)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x.float().unflatten(-1, (d // 2, 2)).unbind(-1)  # (B, H, T, D/2) each
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.num_heads = config.num_heads
        self.rope_theta = config.rope_theta if config.position == "rope" else None
        self.kernel = config.attention
        self.attn_pdrop = config.attn_pdrop
        self.qkv_proj = nn.Linear(d, 3 * d, bias=False)
        self.output_proj = nn.Linear(d, d, bias=False)
        if config.qk_norm not in ("rmsnorm", "none"):
            raise ValueError(f"unknown qk_norm {config.qk_norm!r} (rmsnorm or none)")
        self.q_norm = make_norm(config.qk_norm, d // self.num_heads, config.norm_eps)
        self.k_norm = make_norm(config.qk_norm, d // self.num_heads, config.norm_eps)

    def forward(self, x, positions, mask):
        """``x (B, T, d)``, ``positions (B, T)``, ``mask (B, 1, T, T)`` bool, True = may attend."""
        B, T, d = x.shape
        q, k, v = self.qkv_proj(x).view(B, T, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, T, D) each
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_theta is not None:
            q = rotate_adjacent_pairs(q, positions, self.rope_theta)
            k = rotate_adjacent_pairs(k, positions, self.rope_theta)
        dropout = self.attn_pdrop if self.training else 0.0
        if self.kernel == "reference":
            scores = ((q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)).float()  # (B, H, T, T)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = F.dropout(scores.softmax(dim=-1).to(v.dtype), dropout, self.training)
            out = probs @ v
        elif self.kernel in ("sdpa", "auto"):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        else:
            raise ValueError(f"unknown attention {self.kernel!r} (reference, sdpa or auto)")
        return self.output_proj(out.transpose(1, 2).reshape(B, T, d))


# ----------------------------------------------------------------------------------------------- blocks


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layout = config.block
        if self.layout not in ("prenorm", "postnorm", "parallel"):
            raise ValueError(f"unknown block {self.layout!r} (prenorm, postnorm or parallel)")
        self.attn = Attention(config)
        if config.ffn == "moe":
            self.ffn = MixtureOfExperts(config.d_model, config.d_ff, config.num_experts, config.moe_top_k)
        elif config.ffn in ("swiglu", *ACTIVATIONS):
            self.ffn = FeedForward(config.ffn, config.d_model, config.d_ff)
        else:
            raise ValueError(f"unknown ffn {config.ffn!r} (gelu, swiglu, silu, relu2 or moe)")
        self.ln1 = make_norm(config.norm, config.d_model, config.norm_eps)
        if self.layout != "parallel":
            self.ln2 = make_norm(config.norm, config.d_model, config.norm_eps)
        self.dropout = nn.Dropout(config.residual_pdrop)

    def forward(self, x, positions, mask):
        if self.layout == "prenorm":
            x = x + self.dropout(self.attn(self.ln1(x), positions, mask))
            return x + self.dropout(self.ffn(self.ln2(x)))
        if self.layout == "postnorm":
            x = self.ln1(x + self.dropout(self.attn(x, positions, mask)))
            return self.ln2(x + self.dropout(self.ffn(x)))
        h = self.ln1(x)
        return x + self.dropout(self.attn(h, positions, mask)) + self.dropout(self.ffn(h))


# ----------------------------------------------------------------------------------------------- the model


class CS336PreTrainedModel(PreTrainedModel):
    config_class = CS336Config
    base_model_prefix = "model"
    _no_split_modules = ["Block"]


class CS336Model(CS336PreTrainedModel):
    """Embeddings, positions, blocks and the final norm: ``forward`` returns the last hidden states."""

    def __init__(self, config):
        super().__init__(config)
        self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model)
        if config.position == "learned":
            self.position_embeddings = nn.Embedding(config.context_length, config.d_model)
        elif config.position not in ("rope", "sinusoidal", "none"):
            raise ValueError(f"unknown position {config.position!r} (learned, sinusoidal, rope or none)")
        self.dropout = nn.Dropout(config.residual_pdrop)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_final = make_norm(config.norm, config.d_model, config.norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.token_embeddings

    def set_input_embeddings(self, value):
        self.token_embeddings = value

    def add_absolute_positions(self, x, positions):
        if self.config.position == "learned":
            if positions.max() >= self.config.context_length:
                raise ValueError(f"position {int(positions.max())} is past context_length "
                                 f"{self.config.context_length} of a model with learned positions")
            return x + self.position_embeddings(positions)
        if self.config.position == "sinusoidal":
            d = x.shape[-1]
            inv_freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)
            angles = positions.float()[..., None] * inv_freq  # (B, T, d/2)
            return x + torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2).to(x.dtype)
        return x

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        B, T = input_ids.shape
        keys = (torch.ones(B, T, dtype=torch.bool, device=input_ids.device) if attention_mask is None
                else attention_mask.bool())  # (B, T): False = padding
        if position_ids is None:
            position_ids = (keys.long().cumsum(-1) - 1).clamp_min(0)
        causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
        own = torch.eye(T, dtype=torch.bool, device=input_ids.device)  # a padding query still sees itself
        mask = ((causal & keys[:, None, :]) | own)[:, None]  # (B, 1, T, T)
        x = self.add_absolute_positions(self.token_embeddings(input_ids), position_ids)
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, position_ids, mask)
        return self.ln_final(x)


class CS336ForCausalLM(CS336PreTrainedModel, GenerationMixin):
    """:class:`CS336Model` and its LM head (the token embedding matrix itself when the embeddings are tied)."""

    def __init__(self, config):
        super().__init__(config)
        self.model = CS336Model(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.token_embeddings

    def set_input_embeddings(self, value):
        self.model.token_embeddings = value

    def get_output_embeddings(self):
        return None if self.config.tie_word_embeddings else self.lm_head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None, **kwargs):
        h = self.model(input_ids, attention_mask, position_ids)  # (B, T, d)
        if self.config.tie_word_embeddings:
            logits = h @ self.model.token_embeddings.weight.t()  # (B, T, V)
        else:
            logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        """The whole sequence at every step (no KV cache), whatever cache ``generate`` set up."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}
