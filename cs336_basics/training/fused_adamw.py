"""AdamW's update in one pass over memory: the C kernel ``_adamw_native`` for CPU float32 tensors.

The per-tensor loop of :class:`~cs336_basics.training.optimizer.AdamW` sweeps
each tensor about ten times (one sweep per PyTorch op, plus a temporary); the
kernel reads a parameter, its gradient and both moments once per element, does
every operation of the update on it in registers, and writes the three updated
values back, for all the tensors of a group in one call (split between
``torch.get_num_threads()`` threads, with the GIL released).

**Same results.** The kernel applies the loop's operations in its order with
its float32 roundings, as PyTorch's CPU kernels compute them (``lerp_`` and
``addcmul_`` as fused multiply-adds, the others rounded one by one; see the C
file; the tests check this against the PyTorch installed, so a build that rounds
differently shows up there). The one operation that cannot match bit for bit is the square root:
``torch.sqrt`` on a CPU calls the vector math library its build uses (MKL here),
which is accurate to 1 ulp but not correctly rounded, while the kernel's
``sqrtf`` is (IEEE 754). So:

- given the same gradients, the moments ``exp_avg`` and ``exp_avg_sq`` come out
  bit-identical to the loop's;
- with a correctly rounded ``sqrt`` in the loop, the parameters are bit-identical too;
- against the loop as it runs, a step moves a parameter differently by at most
  :data:`ULPS_OF_UPDATE` ulps of that step's update (the square root's ulp, carried
  through the division) plus :data:`ULPS_OF_PARAMETER` ulps of the parameter (the
  decay's and the addition's roundings of a parameter that already differs), and
  with the same gradients these add up at most linearly over steps.

``tests/training/test_optimizer_fused.py`` checks all three over 100 steps, the last
element by element against the sum of the per-step bounds.

**What it takes.** CPU float32 tensors, dense and contiguous, with a gradient and
both moments of as many elements (:func:`fits`); anything else (bf16 or fp16
parameters, non-contiguous or CUDA tensors) goes to the optimizer's other paths.
Writing through raw addresses bypasses autograd's version counters, so they are
bumped as an in-place PyTorch op would bump them.

The extension is optional (:mod:`cs336_basics.runtime.native`: built at install,
``CS336_NO_NATIVE`` disables it, ``CS336_REQUIRE_NATIVE`` makes its absence an
import error); without it every tensor takes the other paths.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import Tensor

from cs336_basics.runtime import native

EXTENSION = "_adamw_native"
native.require_if_asked((EXTENSION,))  # CS336_REQUIRE_NATIVE=1: a broken C build is an import error

ULPS_OF_UPDATE = 3
"""Per step, the most a parameter's update may differ from the per-tensor loop's (PyTorch's ``sqrt``), in ulps of
the update."""
ULPS_OF_PARAMETER = 2
"""Per step, the most the roundings of the decay and of the addition may add, in ulps of the parameter."""


def kernel() -> ModuleType | None:
    """The compiled module, or None when it is not built or ``CS336_NO_NATIVE`` is set."""
    return native.module(EXTENSION)


def fits(p: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor) -> bool:
    """Whether the kernel can update ``p`` (with its ``grad``) and its two moments in place: all four dense,
    contiguous float32 CPU tensors of as many elements (the kernel pairs them element by element; the cheapest
    checks, as this runs for every tensor at every step)."""
    n = p.numel()
    for t in (p, p.grad, exp_avg, exp_avg_sq):
        if not (t.is_cpu and t.dtype is torch.float32 and t.layout is torch.strided and t.is_contiguous()
                and t.numel() == n):
            return False
    return True


def step_scalars(step: int, lr: float, beta1: float, beta2: float) -> tuple[float, float]:
    """(step size -lr / (1 - beta1^t), sqrt(1 - beta2^t)) for step count ``t``, as the per-tensor loop computes them."""
    return -lr / (1.0 - beta1**step), math.sqrt(1.0 - beta2**step)


def adamw_fused(module: ModuleType, params: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                steps: list[int], *, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float) -> None:
    """One AdamW update of every tensor in the lists by the kernel ``module``, in place.

    Every tensor must pass :func:`fits`; ``steps[i]`` is tensor i's step count after this update.
    """
    scalars: dict[int, tuple[float, float]] = {}  # one entry unless some tensors missed steps
    for t in steps:
        if t not in scalars:
            scalars[t] = step_scalars(t, lr, beta1, beta2)
    decay = 1.0 - lr * weight_decay if weight_decay != 0 else 1.0  # x * 1.0 == x: no decay
    module.step([p.data_ptr() for p in params], [p.grad.data_ptr() for p in params],
                [m.data_ptr() for m in exp_avgs], [v.data_ptr() for v in exp_avg_sqs], [p.numel() for p in params],
                [scalars[t][0] for t in steps], [scalars[t][1] for t in steps], decay, beta1, beta2, eps,
                torch.get_num_threads())
    torch.autograd.graph.increment_version(params + exp_avgs + exp_avg_sqs)
