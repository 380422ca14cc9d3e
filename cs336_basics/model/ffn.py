"""Position-wise feed-forward networks: GELU, SwiGLU, non-gated SiLU, and a mixture of SwiGLU experts.

All map ``(..., d_model) -> (..., d_model)`` through a hidden width ``d_ff``
with bias-free :class:`~cs336_basics.model.layers.Linear` layers named as in
the course (``w1`` in, ``w2`` out, ``w3`` the gate of the gated variants):

- :class:`GeluFFN` ``W2 GELU(W1 x)`` (GPT-2, spring 2024), ``d_ff = 4 d_model``;
- :class:`SwiGLU` ``W2 (SiLU(W1 x) * W3 x)`` (Shazeer 2020; Llama, spring 2025),
  ``d_ff ~ 8/3 d_model`` so it has as many parameters as a 4x GELU FFN;
- :class:`SiLUFFN` ``W2 SiLU(W1 x)``: the gate ablation, parameter-matched to
  SwiGLU by giving it ``d_ff = 4 d_model`` (two matrices of 4d vs three of 8/3 d);
- :class:`ReLU2FFN` ``W2 ReLU(W1 x)^2`` (So et al. 2021, "Primer"; the
  activation of the modded-nanoGPT speed runs): no gate, so ``d_ff = 4 d_model``
  like the other two-matrix FFNs, and about a third cheaper per parameter
  than SwiGLU's three matmuls at equal width;
- :class:`MoEFFN` a router picks the top-k of E SwiGLU experts per token
  (Shazeer et al. 2017; Fedus et al. 2021 for the load-balancing loss);
  :class:`DenseMoEFFN` computes the same mixture without data-dependent
  shapes (every expert on every token), the form compiled models use.

Every FFN has ``aux_loss`` (the MoE load-balancing loss of its last forward,
unscaled); dense FFNs report None so the model only sums real losses. Each is
built from a config by ``from_config`` (the map in
:mod:`cs336_basics.model.variant_classes` maps ``ModelConfig.ffn`` to the class).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cs336_basics.model.layers import Linear, gelu, silu, softmax, swiglu_gate


class DenseFFN(nn.Module):
    """What the dense FFNs share: no auxiliary loss, built from ``(d_model, d_ff)``, ``w2`` the output matrix."""

    aux_loss: Tensor | None = None

    def output_projections(self) -> list[nn.Module]:
        """The layers whose output is added to the residual stream (zeroed by ``model.init=zero_out``)."""
        return [self.w2]

    @classmethod
    def from_config(cls, cfg, *, device=None, dtype=None, generator=None) -> nn.Module:
        return cls(cfg.d_model, cfg.resolved_d_ff, device=device, dtype=dtype, generator=generator)


class GeluFFN(DenseFFN):
    """``W2 GELU(W1 x)``."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None, generator=None) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype, generator=generator)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(gelu(self.w1(x)))


class SiLUFFN(GeluFFN):
    """``W2 SiLU(W1 x)``: SwiGLU without its gate."""

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)))


class ReLU2FFN(GeluFFN):
    """``W2 ReLU(W1 x)^2``."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.w1(x).clamp_min(0.0)  # (..., d_ff)
        return self.w2(h * h)


class SwiGLU(DenseFFN):
    """``W2 (SiLU(W1 x) * W3 x)``."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None, generator=None) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype, generator=generator)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype, generator=generator)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(swiglu_gate(self.w1(x), self.w3(x)))


class MoEFFN(nn.Module):
    """Top-k routing over ``num_experts`` SwiGLU experts with a Switch-style load-balancing loss.

    Each token's router probabilities ``p = softmax(W_r x)`` select its ``top_k``
    experts; their outputs are mixed with the selected probabilities renormalised
    to sum to 1 (Mixtral). Only the routed tokens go through each expert (gathered,
    computed, scattered back with ``index_add``), so the compute is ``top_k`` dense
    FFNs, not ``num_experts``.

    ``aux_loss = E * sum_e f_e * P_e`` where ``f_e`` is the fraction of routing slots
    (tokens x top_k) that chose expert e and ``P_e`` the mean router probability of
    e; it is 1 for perfectly uniform routing and grows as routing collapses.
    """

    def __init__(self, d_model: int, d_ff: int, num_experts: int, top_k: int, device=None, dtype=None,
                 generator=None) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"moe_top_k must be between 1 and num_experts ({num_experts}), got {top_k}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = Linear(d_model, num_experts, device=device, dtype=dtype, generator=generator)
        self.experts = nn.ModuleList(SwiGLU(d_model, d_ff, device=device, dtype=dtype, generator=generator)
                                     for _ in range(num_experts))
        self.aux_loss: Tensor | None = None

    @classmethod
    def from_config(cls, cfg, *, device=None, dtype=None, generator=None) -> nn.Module:
        return cls(cfg.d_model, cfg.resolved_d_ff, cfg.num_experts, cfg.moe_top_k, device=device, dtype=dtype,
                   generator=generator)

    def route(self, x_flat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Router for ``(N, d)`` tokens: (probs ``(N, E)``, top-k weights ``(N, k)``, top-k experts ``(N, k)``)."""
        probs = softmax(self.router(x_flat).float(), dim=-1)  # (N, E)
        top_p, top_e = probs.topk(self.top_k, dim=-1)  # (N, k)
        weights = top_p / top_p.sum(dim=-1, keepdim=True)
        return probs, weights, top_e

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x_flat = x.reshape(-1, shape[-1])  # (N, d)
        probs, weights, top_e = self.route(x_flat)
        out = torch.zeros_like(x_flat)
        for e, expert in enumerate(self.experts):
            token_idx, slot = (top_e == e).nonzero(as_tuple=True)  # tokens routed to e, and at which rank
            if token_idx.numel() == 0:
                continue
            y = expert(x_flat[token_idx]) * weights[token_idx, slot].unsqueeze(-1).to(x.dtype)  # (n_e, d)
            out = out.index_add(0, token_idx, y.to(out.dtype))
        self.aux_loss = self.balance_loss(probs, top_e)
        return out.view(shape)

    def balance_loss(self, probs: Tensor, top_e: Tensor) -> Tensor:
        """``E * sum_e f_e * P_e`` from the router's ``probs (N, E)`` and choices ``top_e (N, k)``."""
        counts = torch.zeros(self.num_experts, device=probs.device, dtype=torch.float32)
        counts = counts.index_add(0, top_e.reshape(-1), torch.ones(top_e.numel(), device=probs.device))
        fraction = counts / top_e.numel()  # (E,)
        return self.num_experts * (fraction * probs.mean(dim=0)).sum()


class DenseMoEFFN(MoEFFN):
    """The mixture of :class:`MoEFFN` computed densely: every expert on every token, times its gate.

    A token's gate for expert ``e`` is its renormalised router weight when ``e`` is among
    its top-k, else 0, so the output is the same mixture. The shapes do not depend on
    the routing (no ``nonzero``, no skipped experts), so a compiler traces one static
    graph; the price is ``num_experts / top_k`` times the expert FLOPs, which is why
    eager models keep :class:`MoEFFN`. Adds no state:
    :func:`~cs336_basics.model.compiled.prepare_for_compile` turns a :class:`MoEFFN` into one in place.
    """

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x_flat = x.reshape(-1, shape[-1])  # (N, d)
        probs, weights, top_e = self.route(x_flat)
        gates = torch.zeros_like(probs).scatter(-1, top_e, weights).to(x.dtype)  # (N, E), 0 where not routed
        out = torch.zeros_like(x_flat)
        for e, expert in enumerate(self.experts):
            out = out + expert(x_flat) * gates[:, e:e + 1]  # (N, d) * (N, 1)
        self.aux_loss = self.balance_loss(probs, top_e)
        return out.view(shape)
