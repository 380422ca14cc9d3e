"""Cross-entropy over logits with any leading batch dimensions, written from scratch.

``loss = mean over positions of (logsumexp(logits) - logits[target])``, with the
row maximum subtracted before exponentiating so logits of +-1e4 stay finite.

Notable choice: a hand-written ``torch.autograd.Function`` instead of a chain of
differentiable ops. The backward is the closed form ``(softmax(z) - onehot(y)) / N``,
computed in place in one (N, V) buffer, so autograd keeps one (N, V) tensor
alive between forward and backward instead of three (logits, shifted logits,
exponentials). For float32 logits that tensor is the exponentials
``exp(z - max)`` (the backward is then a single in-place scale; the caller
should drop its own reference to the logits before ``backward``); for bf16
logits it is the logits themselves, half the size, and the softmax is
recomputed. At the assignment's shape (16 x 256 positions, vocab 10,000) each
(N, V) float32 buffer is 160 MB. The loss is computed in float32 even when the
logits are bf16 (autocast).

On the CPU, float32 and bf16 logits take the C kernel of
:mod:`cs336_basics.training.fused_cross_entropy` when it is built: the same maths
in one pass per row; :func:`cross_entropy_torch_ops` always runs the form here.

Reference: the softmax/cross-entropy gradient, e.g. Goodfellow et al., *Deep
Learning* (2016), section 6.2.2.3.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cs336_basics.training import fused_cross_entropy


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        # logits: (N, V), targets: (N,)
        from_exps = logits.dtype == torch.float32  # then z below is logits itself, not a copy
        z = logits.float()
        row_max = z.amax(dim=-1, keepdim=True)  # (N, 1)
        exps = (z - row_max).exp_()  # (N, V): a fresh buffer, exp(z - max)
        sums = exps.sum(dim=-1, keepdim=True)  # (N, 1)
        lse = sums.log().add_(row_max)  # (N, 1)
        picked = z.gather(-1, targets.unsqueeze(-1))  # (N, 1)
        if from_exps:
            # float32 logits: keep the exponentials instead of the logits (same size), so the
            # backward is one in-place scale instead of recomputing the softmax
            ctx.save_for_backward(exps, targets, sums)
        else:
            # bf16/fp16 logits: keep the smaller logits and recompute the softmax in float32
            ctx.save_for_backward(logits, targets, lse)
        ctx.from_exps = from_exps
        return (lse - picked).mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        saved, targets, row_stat = ctx.saved_tensors
        n = saved.shape[0]
        if ctx.from_exps:
            # in place: no fresh (N, V) allocation per step (160 MB at the assignment's shape); a
            # second backward through a retained graph is refused by autograd's version check
            grad = saved.mul_((grad_out / n) / row_stat)  # (N, V) softmax / N
        else:
            grad = (saved.float() - row_stat).exp_().mul_(grad_out / n)  # (N, V) softmax / N
        grad.scatter_add_(-1, targets.unsqueeze(-1), (-grad_out / n).expand(n, 1).to(grad.dtype))
        return grad.to(saved.dtype), None


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` (...,) under ``logits`` (..., V)."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"cross_entropy: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                         "must agree on every dimension but the last")
    vocab = logits.shape[-1]
    flat, flat_targets = logits.reshape(-1, vocab), targets.reshape(-1).long()  # (N, V), (N,)
    module = fused_cross_entropy.kernel_for(flat, flat_targets)
    if module is not None:
        return fused_cross_entropy.NativeCrossEntropy.apply(flat, flat_targets, module)
    return _CrossEntropy.apply(flat, flat_targets)


def cross_entropy_torch_ops(logits: Tensor, targets: Tensor) -> Tensor:
    """:func:`cross_entropy` always in PyTorch operations: the oracle of the C kernel's fast path."""
    vocab = logits.shape[-1]
    return _CrossEntropy.apply(logits.reshape(-1, vocab), targets.reshape(-1).long())  # (N, V), (N,)
