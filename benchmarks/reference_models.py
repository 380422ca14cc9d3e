"""The reference model the benchmarks compare ours against: a Llama-style GPT written the usual way with
PyTorch's own building blocks (``nn.Embedding``, ``nn.Linear``, ``nn.RMSNorm``, SwiGLU, RoPE,
``F.scaled_dot_product_attention``).

:class:`StdGPT` is the ``standard`` contender of ``bench_model.py`` and the model of
``bench_train.py``'s standard training loops; :meth:`StdGPT.like` builds it in the shape of one of
our ``ModelConfig``s and checks that it has exactly our parameter count. RoPE comes in two forms
(:data:`ROPE_FORMS`): Meta's complex multiply (``torch.polar`` / ``view_as_complex``, as in the Llama
code) and the same rotation in real arithmetic, which Inductor fuses (it has no complex kernels);
tests/benchmarks/test_benchmark_anchors.py checks that both give the same model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cs336_basics.model import TransformerLM


def rope_frequencies(d_head: int, context: int, theta: float) -> torch.Tensor:
    """Meta's ``precompute_freqs_cis``: e^{i t theta^(-2j/D)} as a complex (T, D/2) table."""
    inv_freq = 1.0 / theta ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (D/2,)
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)  # (T, D/2)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Meta's ``apply_rotary_emb``: rotate adjacent pairs of x (B, T, H, D) by one complex multiply."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, T, H, D/2)
    return torch.view_as_real(pairs * freqs[:, None, :]).flatten(3).type_as(x)


def apply_rope_real(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """The same rotation of adjacent pairs in real arithmetic (Inductor generates code for it; it has no complex
    kernels): (a, b) -> (a cos - b sin, a sin + b cos), with cos and sin read off the complex table."""
    cos, sin = freqs.real[:, None, :], freqs.imag[:, None, :]  # (T, 1, D/2)
    a, b = x.float().reshape(*x.shape[:-1], -1, 2).unbind(-1)  # (B, T, H, D/2) each
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(3).type_as(x)


ROPE_FORMS = {"complex": apply_rope, "real": apply_rope_real}


class StdBlock(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int, eps: float, rope: str = "complex") -> None:
        super().__init__()
        self.heads, self.rope = heads, ROPE_FORMS[rope]
        self.norm1, self.norm2 = nn.RMSNorm(d, eps=eps), nn.RMSNorm(d, eps=eps)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.w1, self.w3 = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d, bias=False)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)  # (B, T, H, D) each
        q, k = self.rope(q, freqs), self.rope(k, freqs)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)  # (B, H, T, D)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        y = self.norm2(x)
        return x + self.w2(F.silu(self.w1(y)) * self.w3(y))


class StdGPT(nn.Module):
    """The Llama-style model written the usual way with PyTorch's own building blocks."""

    def __init__(self, vocab: int, ctx: int, d: int, layers: int, heads: int, d_ff: int, theta: float = 1e4,
                 eps: float = 1e-5, rope: str = "complex") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(StdBlock(d, heads, d_ff, eps, rope) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=eps)
        self.head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("freqs", rope_frequencies(d // heads, ctx, theta), persistent=False)

    @classmethod
    def like(cls, m, rope: str = "complex") -> StdGPT:
        """The standard model of the same shape as our ModelConfig ``m`` (Llama-style settings only)."""
        ours = TransformerLM(m)
        d_ff = ours.layers[0].ffn.w1.weight.shape[0]
        model = cls(m.vocab_size, m.context_length, m.d_model, m.num_layers, m.num_heads, d_ff, m.rope_theta, m.norm_eps,
                    rope)
        assert sum(p.numel() for p in model.parameters()) == ours.num_parameters(), "not the same shape as ours"
        return model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x, self.freqs[: ids.shape[1]])
        return self.head(self.norm(x))
