"""Muon (MomentUm Orthogonalized by Newton-Schulz) for hidden matrices, AdamW for every other parameter.

Muon (Keller Jordan, "Muon: An optimizer for hidden layers in neural networks",
blog post, 2024; Bernstein & Newhouse 2024 for the steepest-descent view) keeps
an SGD momentum per matrix and replaces each update by the nearest
semi-orthogonal matrix ``U V^T`` of its SVD ``U S V^T``: every direction the
gradient moves the weight along moves at the same rate, so rare directions are
not drowned by the dominant ones. The SVD is too slow to run every step, so the
orthogonalisation is a few Newton-Schulz iterations of the odd quintic
``X <- a X + b (X X^T) X + c (X X^T)^2 X`` with ``(a, b, c) = (3.4445, -4.7750,
2.0315)``, started from ``G / ||G||_F`` (all singular values in (0, 1]). Each
iteration maps every singular value ``s`` to ``p(s) = a s + b s^3 + c s^5`` and
keeps the singular vectors; these coefficients trade exactness for speed: after
five steps the singular values land in a band around 1 (about 0.7 to 1.2 for
those not much smaller than the largest), not on 1, which the method
tolerates. We iterate in float32 (the speed runs use bf16 on GPUs; this
toolkit's CPUs have no fast bf16).

Per matrix ``W`` of shape ``(rows, cols)`` and step::

    m  <- mu m + (1 - mu) g                       (momentum, as an EMA)
    u  <- (1 - mu) g + mu m   if nesterov, else m  (Nesterov look-ahead)
    W  <- W (1 - lr wd) - lr sqrt(max(1, rows/cols)) NS(u)

The ``sqrt(max(1, rows/cols))`` factor keeps the per-entry size of the update of
a tall matrix (a fused QKV projection, an FFN up-projection stored as
``(d_ff, d_model)``) in line with a square one.

Which parameters: Muon is for the 2-D weights inside the blocks. Embedding
tables (a lookup: one row moves per token, not a linear map of the input), the
LM head (its output is a probability distribution, which the speed runs found
trains better with Adam) and every vector (norm gains, biases) get AdamW, with
AdamW's usual decay groups. Both share the schedule: the learning rate set on a
group is the schedule's value for ``optimizer.lr_max``, and a Muon group scales
it by ``lr_ratio = muon_lr / lr_max``, so warmup and decay shape both parts alike.

:class:`Muon` is one ``torch.optim.Optimizer`` over both kinds of group, so its
``state_dict`` has the standard layout (checkpoints, resume and the finiteness
checks work unchanged); the AdamW groups are stepped by
:class:`~cs336_basics.training.optimizer.AdamW` itself, sharing this optimizer's
state and group dicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from cs336_basics.model.layers import Embedding
from cs336_basics.training.optimizer import AdamW, param_groups

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""The quintic's (a, b, c): a large slope at 0 so small singular values grow fast."""


def newton_schulz(g: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """An approximate ``U V^T`` of the ``(..., rows, cols)`` matrix ``g``, computed in float32."""
    a, b, c = NS_COEFFICIENTS
    x = g.float()
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT  # (..., cols, rows): X X^T is then the smaller Gram matrix
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)  # singular values in (0, 1]
    for _ in range(steps):
        gram = x @ x.mT  # (..., n, n), n = min(rows, cols)
        poly = b * gram + c * (gram @ gram)
        x = a * x + poly @ x
    return x.mT if tall else x


def muon_scale(shape: torch.Size) -> float:
    """``sqrt(max(1, rows/cols))`` for a ``(rows, cols)`` weight."""
    return math.sqrt(max(1.0, shape[-2] / shape[-1]))


class Muon(torch.optim.Optimizer):
    """Muon for groups with ``muon=True`` (keys ``lr``, ``lr_ratio``, ``momentum``, ``nesterov``, ``ns_steps``,
    ``weight_decay``); AdamW for groups with ``muon=False`` (keys ``lr``, ``betas``, ``eps``, ``weight_decay``;
    ``foreach`` and ``compile`` pick AdamW's path as in :class:`~cs336_basics.training.optimizer.AdamW`)."""

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], *, lr: float, lr_ratio: float,
                 momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, foreach: bool | None = None,
                 compile: bool = False) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid Muon momentum {momentum}: must be in [0, 1)")
        if ns_steps < 1:
            raise ValueError(f"invalid Muon ns_steps {ns_steps}: must be >= 1")
        for group in muon_groups:
            if any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon groups take 2-D matrices only; vectors and tables belong in AdamW groups")
        groups = [{**g, "muon": True} for g in muon_groups] + [{**g, "muon": False} for g in adamw_groups]
        defaults = dict(lr=lr, lr_ratio=lr_ratio, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        weight_decay=weight_decay, betas=tuple(betas), eps=eps)
        super().__init__(groups, defaults)
        self._adamw = AdamW([p for g in adamw_groups for p in g["params"]] or [torch.zeros(0)], lr=lr,
                            betas=betas, eps=eps, foreach=foreach, compile=compile)
        self._link()

    def _link(self) -> None:
        """Point the inner AdamW at this optimizer's AdamW groups and state (again after a load)."""
        self._adamw.param_groups = [g for g in self.param_groups if not g["muon"]]
        self._adamw.state = self.state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._link()  # loading replaces the group dicts and the state mapping

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if not group["muon"]:
                continue
            lr = group["lr"] * group["lr_ratio"]
            mu, wd = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1.0 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                ortho = newton_schulz(update, group["ns_steps"]).to(p.dtype)
                if wd != 0:
                    p.mul_(1.0 - lr * wd)
                p.add_(ortho, alpha=-lr * muon_scale(p.shape))
        self._adamw.step()
        return loss


def hidden_matrix_ids(model: nn.Module) -> set[int]:
    """The parameters Muon takes: 2-D weights that are neither an embedding table nor the LM head."""
    excluded = {id(p) for p in getattr(model, "lm_head", nn.Identity()).parameters()}
    for module in model.modules():
        if isinstance(module, (Embedding, nn.Embedding)):
            excluded.update(id(p) for p in module.parameters(recurse=False))
    return {id(p) for p in model.parameters() if p.ndim == 2 and p.requires_grad and id(p) not in excluded}


def build_muon(model: nn.Module, cfg) -> Muon:
    """Muon + AdamW from an :class:`~cs336_basics.config.training.OptimizerConfig` (``name = "muon"``)."""
    hidden = hidden_matrix_ids(model)
    adamw_groups = []
    for group in param_groups(model, cfg.weight_decay, cfg.decay_all):
        rest = [p for p in group["params"] if id(p) not in hidden]
        if rest:
            adamw_groups.append({**group, "params": rest})
    matrices = [p for p in model.parameters() if id(p) in hidden]
    return Muon([{"params": matrices}] if matrices else [], adamw_groups, lr=cfg.lr_max,
                lr_ratio=cfg.muon_lr / cfg.lr_max, momentum=cfg.muon_momentum, nesterov=cfg.muon_nesterov,
                ns_steps=cfg.muon_ns_steps, weight_decay=cfg.muon_weight_decay, betas=(cfg.beta1, cfg.beta2),
                eps=cfg.eps, foreach=cfg.foreach, compile=cfg.compile)
