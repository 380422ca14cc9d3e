"""Global-norm gradient clipping (Pascanu et al. 2013, "On the difficulty of training RNNs").

One norm over all gradients together; when it exceeds ``max_norm`` every
gradient is scaled by ``max_norm / (norm + 1e-6)`` (the CS336 handout's eps).
Parameters without a gradient are skipped.

Two entry points over one implementation: :func:`clip_grad_norm` returns the
pre-clip norm as a float (the handout's API); :func:`clip_grad_norm_tensor`
returns it as a 0-dim tensor without a device sync, which lets the training
loop fetch loss and norm from the GPU in a single transfer. The scale factor is
computed on the device (``min(1, max_norm / (norm + eps))``), so a non-finite
norm turns the gradients non-finite too; the loop skips such steps anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

EPS = 1e-6


@torch.no_grad()
def global_grad_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """The L2 norm of all gradients concatenated, as a 0-dim float32 tensor (no device sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    # per-tensor norms first: never materialise the concatenation
    norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads])  # (P,)
    return torch.linalg.vector_norm(norms)


@torch.no_grad()
def clip_grad_norm_tensor(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip in place (``max_norm <= 0`` only measures); return the pre-clip norm as a 0-dim tensor."""
    params = [p for p in params if p.grad is not None]
    norm = global_grad_norm(params)
    if max_norm > 0 and params:
        scale = torch.clamp(max_norm / (norm + EPS), max=1.0).to(params[0].grad.device)
        for p in params:
            p.grad.mul_(scale.to(p.grad.dtype))
    return norm


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scale gradients in place so their global L2 norm is at most ``max_norm``; return the pre-clip norm."""
    return float(clip_grad_norm_tensor(params, max_norm))
