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

Two implementations of the same update, chosen by ``foreach``:

- **per-tensor** (:meth:`AdamW._step_per_tensor`): the loop above, one
  parameter at a time. Every operation on a tensor runs while it is still in
  the cache, but each costs a Python call (about ten per parameter).
- **multi-tensor** (:func:`adamw_foreach`): the same operations as
  ``torch._foreach_*`` calls, each over a list of tensors, with the per-tensor
  scalars (bias corrections, which depend on each tensor's step) passed as
  lists. On CUDA a call launches a few kernels that each cover many tensors
  (PyTorch's ``multi_tensor_apply``, from NVIDIA Apex) instead of one launch per
  tensor, which is what makes it fast there. On a CPU there is no fused
  kernel (the list is looped over in C++), and one op over the *whole* model
  (hundreds of MB) evicts everything before the next op reads it back, so the
  lists are cut into chunks of about :data:`CPU_CHUNK_BYTES` and all the ops run
  on one chunk before the next (:func:`chunk_indices`): cache locality of the
  per-tensor loop, Python overhead of the multi-tensor one.

A third form, ``compile=True``, runs the multi-tensor update through
``torch.compile`` (:func:`adamw_foreach_tensors`, over each group's whole list):
Inductor fuses every tensor's ops into one pass that reads the parameter, its
gradient and both moments once and writes three of them back, where the eager
ops sweep memory about a dozen times. The per-step values (learning rate, bias
corrections) enter as 0-d tensors so the compiled code is reused at every step.
Compiling costs seconds to minutes at start (it grows with the number of
tensors), so it is opt-in (``optimizer.compile``): worth it for long runs.

A fourth, ``fused``, is the C kernel of :mod:`~cs336_basics.training.fused_adamw`:
one pass over memory per tensor, all of a group's CPU float32 tensors in one call.
It gives the loop's moments bit for bit and its parameters within the ulp bound
stated there (the only difference is a correctly rounded square root).

All four keep exactly the same state (``step``, ``exp_avg``, ``exp_avg_sq`` per
parameter), so a checkpoint written by one path resumes in another; ``foreach``
and ``fused`` are attributes of the optimizer, not group options, so loading a
state dict never changes them. The defaults resolve per device: on a CPU the
fused kernel takes every tensor it can when it is built (:func:`use_fused`), and
``foreach=None`` (:func:`use_foreach`) is on for CUDA and, on a CPU, whatever
``benchmarks/bench_optimizer.py`` measured faster for the tensors left
(:data:`CPU_FOREACH`: no reliable gain was measured, so CPUs keep the loop).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from cs336_basics.model.layers import Embedding
from cs336_basics.training import fused_adamw


CPU_FOREACH = False
"""``foreach=None`` on a CPU: whether the multi-tensor path is the default there. Off: on the development
machines (``benchmarks/bench_optimizer.py``, area ``optimizer`` in BENCHMARKS.md) the chunked path measured
within noise of the per-tensor loop, since the update is bound by memory traffic and the loop's Python calls
are a small part of a step, and the unchunked path clearly slower; with no reliable gain the simpler loop stays."""

CPU_CHUNK_BYTES = 4 * 2**20
"""Parameter bytes per chunk of the multi-tensor path on a CPU: a chunk's parameters, gradients and two moments
(4 x this) stay within a typical L2/L3 cache share while all the ops run over them."""


def use_foreach(foreach: bool | None, device_type: str) -> bool:
    """The path ``foreach`` means on a device type: as set, else on for CUDA and :data:`CPU_FOREACH` on a CPU."""
    if foreach is not None:
        return foreach
    if device_type == "cuda":
        return True
    return CPU_FOREACH if device_type == "cpu" else False


def use_fused(fused: bool | None, foreach: bool | None, compile: bool, device_type: str) -> bool:
    """Whether the C kernel takes the tensors it fits: as ``fused`` says, else on a CPU where it is built, unless
    ``foreach`` or ``compile`` ask for another path."""
    if fused is not None:
        return fused
    return device_type == "cpu" and foreach is None and not compile and fused_adamw.kernel() is not None


def default_chunk_bytes(device_type: str) -> int:
    """Chunk size of the multi-tensor path: 0 (one list per group) on CUDA, where one launch covers every
    tensor, else :data:`CPU_CHUNK_BYTES`."""
    return 0 if device_type == "cuda" else CPU_CHUNK_BYTES


def chunk_indices(nbytes: list[int], max_bytes: int) -> list[list[int]]:
    """Consecutive runs of indices whose sizes add up to at most ``max_bytes`` (0: one run of everything).

    A tensor larger than ``max_bytes`` forms a run of its own; no run is empty.
    """
    if max_bytes <= 0:
        return [list(range(len(nbytes)))] if nbytes else []
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(nbytes):
        if current and total + size > max_bytes:
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        chunks.append(current)
    return chunks


def adamw_foreach(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                  steps: list[int], *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW update of every tensor in the lists, in place, with ``torch._foreach_*`` ops.

    The same operations in the same order as the per-tensor loop (so the results agree to float32
    rounding); ``steps[i]`` is tensor i's step count after this update (its bias corrections differ
    from the others' when it missed steps without a gradient).
    """
    if weight_decay != 0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)  # decoupled decay, from theta_{t-1}
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)  # m = b1 m + (1 - b1) g
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)  # v = b2 v + (1 - b2) g^2
    denom = torch._foreach_sqrt(exp_avg_sqs)  # the only temporaries: one per tensor of this chunk
    torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**t) for t in steps])
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / (1.0 - beta1**t) for t in steps])


def adamw_foreach_tensors(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                          exp_avg_sqs: list[Tensor], decay: Tensor, step_size: Tensor, bias2_sqrt: Tensor, *,
                          beta1: float, beta2: float, eps: float) -> None:
    """:func:`adamw_foreach` for tensors that share one step count, with the per-step values as 0-d tensors.

    ``decay`` = 1 - lr * weight_decay, ``step_size`` = -lr / (1 - beta1^t), ``bias2_sqrt`` = sqrt(1 - beta2^t).
    Written for ``torch.compile`` (see :data:`_compiled_update`): tensors rather than Python floats, so one
    compiled graph serves every step, and an explicit ``update`` list that Inductor fuses away.
    """
    torch._foreach_mul_(params, decay)  # decoupled decay, from theta_{t-1}
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)  # m = b1 m + (1 - b1) g
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)  # v = b2 v + (1 - b2) g^2
    denom = torch._foreach_div(torch._foreach_sqrt(exp_avg_sqs), bias2_sqrt)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avgs, denom)
    torch._foreach_mul_(update, step_size)
    torch._foreach_add_(params, update)


_compiled_update: Callable | None = None
"""``torch.compile(adamw_foreach_tensors)``, made on first use (importing this module compiles nothing)."""


def compiled_update() -> Callable:
    global _compiled_update
    if _compiled_update is None:
        _compiled_update = torch.compile(adamw_foreach_tensors, fullgraph=True)
    return _compiled_update


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay; per-group ``lr``, ``betas``, ``eps``, ``weight_decay``.

    ``foreach``: True for the multi-tensor path, False for the per-tensor loop, None for the device's default
    (:func:`use_foreach`). ``chunk_bytes``: the multi-tensor path's chunk size (None: the device's default,
    :func:`default_chunk_bytes`; 0: one list per group). ``compile``: the multi-tensor update compiled by
    ``torch.compile`` over each group's whole list (implies the multi-tensor path; ``chunk_bytes`` is unused).
    ``fused``: True to update every tensor the C kernel fits with it (the others take the path ``foreach``
    picks; all of them when the kernel is not built), False never to, None for the default (:func:`use_fused`:
    on a CPU where it is built, when ``foreach`` and ``compile`` are left unset).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, *, foreach: bool | None = None, chunk_bytes: int | None = None,
                 compile: bool = False, fused: bool | None = None) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0:
            raise ValueError(f"invalid eps {eps}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        if chunk_bytes is not None and chunk_bytes < 0:
            raise ValueError(f"invalid chunk_bytes {chunk_bytes}: must be >= 0 (0: no chunks)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.foreach = foreach
        self.chunk_bytes = chunk_bytes
        self.compile = compile
        self.fused = fused

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("AdamW does not support sparse gradients")
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            device_type = params[0].device.type
            if use_fused(self.fused, self.foreach, self.compile, device_type):
                params = self._step_fused(group, params)
                if not params:
                    continue
            if self.compile:
                self._step_compiled(group, params)
            elif use_foreach(self.foreach, device_type):
                self._step_foreach(group, params, device_type)
            else:
                self._step_per_tensor(group, params)
        return loss

    def _step_fused(self, group: dict, params: list[Tensor]) -> list[Tensor]:
        """Update the tensors the C kernel fits; return the others (all of them when it is not built)."""
        module = fused_adamw.kernel()
        if module is None:
            return params
        states = [self.state[p] for p in params]
        fit = [fused_adamw.fits(p, s["exp_avg"], s["exp_avg_sq"]) for p, s in zip(params, states)]
        idx = [i for i, ok in enumerate(fit) if ok]
        if idx:
            (beta1, beta2) = group["betas"]
            fused_adamw.adamw_fused(module, [params[i] for i in idx], [states[i]["exp_avg"] for i in idx],
                                    [states[i]["exp_avg_sq"] for i in idx], [states[i]["step"] for i in idx],
                                    lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                                    weight_decay=group["weight_decay"])
        return [p for p, ok in zip(params, fit) if not ok]

    def _step_per_tensor(self, group: dict, params: list[Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in params:
            state = self.state[p]
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            if wd != 0:
                p.mul_(1.0 - lr * wd)
            m.lerp_(p.grad, 1.0 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
            bias1 = 1.0 - beta1**t
            bias2 = 1.0 - beta2**t
            denom = v.sqrt().div_(math.sqrt(bias2)).add_(eps)  # one temporary, updated in place
            p.addcdiv_(m, denom, value=-lr / bias1)

    def _step_foreach(self, group: dict, params: list[Tensor], device_type: str) -> None:
        chunk = self.chunk_bytes if self.chunk_bytes is not None else default_chunk_bytes(device_type)
        states = [self.state[p] for p in params]
        (beta1, beta2) = group["betas"]
        for idx in chunk_indices([p.numel() * p.element_size() for p in params], chunk):
            adamw_foreach([params[i] for i in idx], [params[i].grad for i in idx],
                          [states[i]["exp_avg"] for i in idx], [states[i]["exp_avg_sq"] for i in idx],
                          [states[i]["step"] for i in idx], lr=group["lr"], beta1=beta1, beta2=beta2,
                          eps=group["eps"], weight_decay=group["weight_decay"])

    def _step_compiled(self, group: dict, params: list[Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        by_step: dict[int, list[Tensor]] = {}  # one list unless some tensors missed steps without a gradient
        for p in params:
            by_step.setdefault(self.state[p]["step"], []).append(p)
        for t, ps in by_step.items():
            states = [self.state[p] for p in ps]
            scalars = [torch.tensor(x, dtype=torch.float32, device=ps[0].device)
                       for x in (1.0 - lr * wd, -lr / (1.0 - beta1**t), math.sqrt(1.0 - beta2**t))]
            compiled_update()(ps, [p.grad for p in ps], [s["exp_avg"] for s in states],
                              [s["exp_avg_sq"] for s in states], *scalars, beta1=beta1, beta2=beta2, eps=eps)


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
    """AdamW from an :class:`~cs336_basics.config.training.OptimizerConfig` (lr is set per step by the schedule)."""
    return AdamW(param_groups(model, cfg.weight_decay, cfg.decay_all), lr=cfg.lr_max,
                 betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay, foreach=cfg.foreach,
                 compile=cfg.compile)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
