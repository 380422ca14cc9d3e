"""AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), from scratch.

Algorithm 2 of the paper, with the schedule multiplier folded into the learning
rate as PyTorch does::

    m_t = b1 m_{t-1} + (1 - b1) g_t
    v_t = b2 v_{t-1} + (1 - b2) g_t^2
    theta_t = theta_{t-1} - lr * ( m_t / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)
                                   + wd * theta_{t-1} )

The decay uses theta_{t-1} (it is applied first), exactly like the paper and
``torch.optim.AdamW``, so the two agree to float rounding. ``param_groups``
builds the usual two groups: matrices decay; norms, biases and embedding
tables do not (decaying embeddings shrinks rare tokens' rows towards zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cs336_basics.model.layers import Embedding


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay; per-group ``lr``, ``betas``, ``eps``, ``weight_decay``."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0:
            raise ValueError(f"invalid eps {eps}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if wd != 0:
                    p.mul_(1.0 - lr * wd)
                m.lerp_(grad, 1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                bias1 = 1.0 - beta1**t
                bias2 = 1.0 - beta2**t
                denom = v.sqrt().div_(math.sqrt(bias2)).add_(eps)  # one temporary, updated in place
                p.addcdiv_(m, denom, value=-lr / bias1)
        return loss


def _no_decay_parameter_ids(model: nn.Module) -> set[int]:
    """Parameters that should not decay: anything with ndim < 2 and every embedding table."""
    embedding_types = (Embedding, nn.Embedding)
    ids = {id(p) for p in model.parameters() if p.ndim < 2}
    for module in model.modules():
        if isinstance(module, embedding_types):
            ids.update(id(p) for p in module.parameters(recurse=False))
    return ids


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Two AdamW groups: decayed matrices and undecayed norms/biases/embeddings (shared weights once)."""
    no_decay = set() if decay_all else _no_decay_parameter_ids(model)
    decay, keep = [], []
    seen: set[int] = set()
    for p in model.parameters():  # parameters() already deduplicates tied weights; `seen` guards the rest
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (keep if id(p) in no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg) -> AdamW:
    """AdamW from an :class:`~cs336_basics.training.config.OptimizerConfig` (lr is set per step by the schedule)."""
    return AdamW(param_groups(model, cfg.weight_decay, cfg.decay_all), lr=cfg.lr_max,
                 betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
