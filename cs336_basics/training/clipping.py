"""Global-norm gradient clipping (Pascanu et al. 2013, "On the difficulty of training RNNs").

One norm over all gradients together; when it exceeds ``max_norm`` every
gradient is scaled by ``max_norm / (norm + 1e-6)`` (the CS336 handout's eps).
Parameters without a gradient are skipped. The pre-clip norm is returned as a
float so the caller can log it and detect non-finite gradients with the same
single device sync.
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
def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scale gradients in place so their global L2 norm is at most ``max_norm``; return the pre-clip norm.

    ``max_norm <= 0`` only measures. A non-finite norm leaves the gradients untouched (the caller skips the step).
    """
    params = [p for p in params if p.grad is not None]
    total = float(global_grad_norm(params))
    if max_norm > 0 and total > max_norm and total == total and total != float("inf"):
        scale = max_norm / (total + EPS)
        for p in params:
            p.grad.mul_(scale)
    return total
