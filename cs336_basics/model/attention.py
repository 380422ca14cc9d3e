"""Scaled dot-product attention and causal multi-head self-attention with one fused QKV projection.

Mask convention (the only one inside the library): a boolean tensor broadcastable
to ``(..., queries, keys)`` where **True means "may attend"**. The course's 2024
adapters (True = masked out) are translated in :mod:`cs336_basics.compat`.

Masked scores are set to the most negative finite value of their dtype rather
than ``-inf``: a row with at least one visible key gets exactly the same
probabilities (``exp`` underflows to 0), and a row with none (a padding query)
gets finite garbage instead of NaNs that would leak into other rows through
the values of later layers.

Attention kernels are sibling modules picked by name (``ModelConfig.attention``):

- :class:`ReferenceAttention`: ours, written out (QK^T, mask, stable softmax, V);
- :class:`SDPAAttention`: ``torch.nn.functional.scaled_dot_product_attention``,
  PyTorch's fused kernel, used only as an optional fast path;
- ``auto`` (the default) is not a kernel of its own: when the model is built it
  becomes SDPA on CPU and CUDA, where PyTorch's fused kernels are faster (the
  model benchmark measures both in a whole training step), and the reference on
  other devices (:func:`cs336_basics.config.variants.attention_kernel`).

Both are tested equal. The kernel receives ``mask=None, is_causal=True`` for
plain causal attention so SDPA can use its causal fast path; causality is
aligned bottom-right (the last query sees every key), which is what decoding
with a KV cache needs.

:class:`MultiHeadSelfAttention` keeps one ``qkv_proj`` Linear of shape
``(3*d_model, d_model)`` whose rows are ``[W_q; W_k; W_v]``, each with heads
contiguous (head ``h`` = rows ``h*d_head:(h+1)*d_head``), so separate q/k/v
weights map onto it by concatenation. Reference: Vaswani et al. 2017.

QK-norm (``ModelConfig.qk_norm``, Dehghani et al. 2023; Wortsman et al. 2023)
is a normalisation module applied to each head's queries and keys before the
rotation: RMSNorm bounds the attention logits, which otherwise grow with the
weights and saturate the softmax at high learning rates; ``none`` is
:class:`~cs336_basics.model.layers.NoNorm`, so ``forward`` has one path. It
runs before RoPE because a rotation keeps the norm anyway and RoPE must see
the final vectors, and before the KV cache so cached keys are already normed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cs336_basics.model.kv_cache import LayerCache
from cs336_basics.model.layers import Linear, NoNorm, dropout_or_identity
from cs336_basics.model.positions import NoRotation


def causal_mask(num_queries: int, num_keys: int, device=None) -> Tensor:
    """``(num_queries, num_keys)`` bool, True where query ``i`` may see key ``j`` (bottom-right aligned)."""
    ones = torch.ones(num_queries, num_keys, dtype=torch.bool, device=device)
    return ones.tril(diagonal=num_keys - num_queries)


def masked_softmax_(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last dimension of ``scores``, in place, with masked entries (mask False) set to 0.

    Max-subtracted like :func:`~cs336_basics.model.layers.softmax`; masked scores become the most
    negative finite value first, so ``exp`` makes them exactly 0. Returns ``scores``, now the probabilities.
    """
    if mask is not None:
        scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
    scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
    return scores.div_(scores.sum(dim=-1, keepdim=True))


class MaskedSoftmax(torch.autograd.Function):
    """Softmax over the last dimension of attention scores, with an optional may-attend mask, in one node.

    Same maths as :func:`~cs336_basics.model.layers.softmax` (max-subtracted), but
    autograd keeps only the output ``y`` and the backward is the closed form
    ``dx = y * (g - sum(g * y))``: a masked entry has ``y = 0`` and so gets no
    gradient without a separate masking step. Saves several ``(B, H, T, T)``
    passes and buffers per layer compared with differentiating the primitive ops.
    It overwrites its input (a fresh score matrix), so never pass a tensor you still need.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, mask: Tensor | None) -> Tensor:
        masked_softmax_(scores, mask)  # in place: a fresh matmul output that nothing else keeps
        ctx.mark_dirty(scores)
        ctx.save_for_backward(scores)
        return scores  # the dirty input itself, as mark_dirty requires (and as compilers check)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        inner = (grad * y).sum(dim=-1, keepdim=True)  # (..., Tq, 1)
        return (grad - inner).mul_(y), None


class CopyingMaskedSoftmax(MaskedSoftmax):
    """:class:`MaskedSoftmax` computed on a copy of the scores: the same values and closed-form backward.

    Overwriting an input needs ``ctx.mark_dirty``, whose backward a compiler's autograd
    (AOTAutograd) cannot replay; with a copy nothing is overwritten. Under a compiler the
    copy costs nothing (the graph is rewritten without in-place ops anyway), eagerly it
    costs one ``(..., Tq, Tk)`` buffer, hence only compiled models use it.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, mask: Tensor | None) -> Tensor:
        y = masked_softmax_(scores.clone(), mask)
        ctx.save_for_backward(y)
        return y


@torch.compiler.disable
def in_place_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """``MaskedSoftmax.apply``, always run eagerly, even inside a compiled model.

    A compiler's autograd cannot replay the backward of an overwritten input (``mark_dirty``), so a
    model compiled without :func:`~cs336_basics.model.compiled.prepare_for_compile` breaks its graph
    here instead of failing in backward; prepared models use :class:`CopyingMaskedSoftmax` and no break.
    """
    return MaskedSoftmax.apply(scores, mask)


def scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None,
                                 dropout: nn.Module | None = None,
                                 softmax: Callable[[Tensor, Tensor | None], Tensor] = in_place_softmax) -> Tensor:
    """``softmax(Q K^T / sqrt(d_k)) V`` with an optional may-attend mask.

    Shapes: Q ``(..., Tq, d_k)``, K ``(..., Tk, d_k)``, V ``(..., Tk, d_v)``, mask
    broadcastable to ``(..., Tq, Tk)``; returns ``(..., Tq, d_v)``. The softmax runs
    in float32 even when the inputs are bf16; ``softmax(scores, mask)`` is the
    differentiable softmax used when gradients are recorded.
    """
    scale = 1.0 / math.sqrt(Q.shape[-1])
    scores = (Q * scale) @ K.transpose(-2, -1)  # (..., Tq, Tk)
    scores = scores.float()
    # without gradients (inference, decoding) no autograd node is needed, so plain in-place ops: less
    # overhead, and traceable by compilers, which accept mark_dirty only while recording a backward
    probs = (softmax if scores.requires_grad else masked_softmax_)(scores, mask).to(V.dtype)  # (..., Tq, Tk)
    if dropout is not None:
        probs = dropout(probs)
    return probs @ V  # (..., Tq, d_v)


class ReferenceAttention(nn.Module):
    """Our attention: :func:`scaled_dot_product_attention` with dropout on the probabilities."""

    softmax = staticmethod(in_place_softmax)

    def __init__(self, attn_pdrop: float = 0.0) -> None:
        super().__init__()
        self.attn_dropout = dropout_or_identity(attn_pdrop)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        if is_causal and q.shape[-2] > 1:
            mask = causal_mask(q.shape[-2], k.shape[-2], q.device)
        return scaled_dot_product_attention(q, k, v, mask, self.attn_dropout, self.softmax)


class CopyingReferenceAttention(ReferenceAttention):
    """:class:`ReferenceAttention` with :class:`CopyingMaskedSoftmax`: the form compiled models use."""

    softmax = staticmethod(CopyingMaskedSoftmax.apply)


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool,
                    dropout_p: float = 0.0) -> Tensor:
    """PyTorch's fused ``scaled_dot_product_attention`` with our mask convention and bottom-right causality."""
    if k.dtype != q.dtype:  # a float32 cache under bf16 autocast
        k, v = k.to(q.dtype), v.to(q.dtype)
    tq, tk = q.shape[-2], k.shape[-2]
    if is_causal and tq != tk:
        # SDPA's is_causal is top-left aligned; decoding needs bottom-right (tq == 1 needs no mask)
        mask = causal_mask(tq, tk, q.device) if tq > 1 else None
        is_causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class SDPAAttention(nn.Module):
    """PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient kernels): the fast path."""

    def __init__(self, attn_pdrop: float = 0.0) -> None:
        super().__init__()
        self.attn_pdrop = attn_pdrop

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        return fused_attention(q, k, v, mask, is_causal, self.attn_pdrop if self.training else 0.0)


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention over ``x (..., T, d_model)``.

    ``forward(x, positions=None, mask=None, cache=None)``:

    - ``positions`` ``(T,)`` or ``(..., T)`` integer positions for the rotary
      encoding (default ``0..T-1``);
    - ``mask`` a may-attend mask broadcastable to ``(..., 1, T, S)``; None means
      plain causal attention;
    - ``cache`` a :class:`~cs336_basics.model.kv_cache.LayerCache`: the new keys
      and values are appended and the queries attend over everything cached.
    """

    def __init__(self, d_model: int, num_heads: int, rotary: nn.Module | None = None,
                 kernel: nn.Module | None = None, device=None, dtype=None,
                 generator: torch.Generator | None = None, q_norm: nn.Module | None = None,
                 k_norm: nn.Module | None = None) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads} (choose a divisor)")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.qkv_proj = Linear(d_model, 3 * d_model, device=device, dtype=dtype, generator=generator)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype, generator=generator)
        self.rotary = rotary if rotary is not None else NoRotation()
        self.kernel = kernel if kernel is not None else ReferenceAttention()
        self.q_norm = q_norm if q_norm is not None else NoNorm()
        self.k_norm = k_norm if k_norm is not None else NoNorm()

    def output_projections(self) -> list[nn.Module]:
        """The layers whose output is added to the residual stream (zeroed by ``model.init=zero_out``)."""
        return [self.output_proj]

    def forward(self, x: Tensor, positions: Tensor | None = None, mask: Tensor | None = None,
                cache: LayerCache | None = None) -> Tensor:
        *lead, T, _ = x.shape
        qkv = self.qkv_proj(x).view(*lead, T, 3, self.num_heads, self.d_head)  # (..., T, 3, H, D)
        qkv = qkv.movedim(-4, -2)  # (..., 3, H, T, D)
        q, k, v = qkv.unbind(dim=-4)  # (..., H, T, D) each
        q, k = self.q_norm(q), self.k_norm(k)  # over D, per head
        if positions is None:
            positions = torch.arange(T, device=x.device)  # (T,)
        elif positions.dim() > 1:
            positions = positions.unsqueeze(-2)  # (..., 1, T): broadcast over heads
        rotation = self.rotary.rotation(positions)  # computed once for queries and keys
        q = self.rotary.rotate(q, rotation)
        k = self.rotary.rotate(k, rotation)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, S, D)
        out = self.kernel(q, k, v, mask, mask is None)  # (..., H, T, D)
        out = out.transpose(-3, -2).reshape(*lead, T, self.d_model)  # (..., T, H*D)
        return self.output_proj(out)
