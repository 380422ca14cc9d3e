"""Cross-entropy's forward and backward in one pass per row: the C kernel ``_cross_entropy_native``.

The PyTorch form in :mod:`cs336_basics.training.loss` makes a pass over the whole
``(N, V)`` logits for each of its operations (upcast, max, subtract, exp, sum,
gather; in backward upcast, subtract, exp, scale, scatter, downcast), each a
trip through main memory at a language model's vocabulary. The kernel reads a
row of logits once per direction and does every operation on it while it sits
in the cache, in float32 for float32 and bf16 logits alike, split between
``torch.get_num_threads()`` threads with the GIL released. It saves the logits
and two floats per row (the row's maximum and its sum of exponentials) for the
backward, which writes the gradient once, in the logits' dtype.

**Same results, within stated bounds.** The maths is the loss module's:
``loss = mean(max + log(sum exp(z - max)) - z[target])`` and
``grad = (exp(z - max) / sum - onehot) * g / N``. What differs is rounding: the
kernel's ``exp`` (its own, so that the loops vectorise; see the C file) is
accurate to a few ulps where PyTorch's is to about one, and its sums add in a
different order. ``tests/training/test_cross_entropy_fused.py`` bounds the
difference against the PyTorch path and a float64 oracle: :data:`LOSS_RTOL` for
the loss, :data:`GRAD_ATOL` and :data:`GRAD_RTOL` for the gradient, and checks
edge cases (huge logits, ``-inf`` logits, NaN propagation, one-column rows).

**What it takes** (:func:`fits`): 2-D contiguous CPU float32 or bf16 logits and
int64 targets, outside a ``torch.compile`` trace (a compiler cannot trace raw
addresses). Anything else runs the PyTorch form. The extension is optional, as
all of this package's C code (:mod:`cs336_basics.runtime.native`).
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from cs336_basics.runtime import native

EXTENSION = "_cross_entropy_native"
native.require_if_asked((EXTENSION,))  # CS336_REQUIRE_NATIVE=1: a broken C build is an import error

LOSS_RTOL = 1e-6
"""Relative difference allowed between the kernel's loss and the PyTorch form's (float32 logits)."""
GRAD_RTOL = 1e-5
"""Relative difference allowed between the two gradients (float32 logits), element by element."""
GRAD_ATOL = 1e-9
"""Absolute difference allowed between the two gradients, for entries near zero (divided by N: the mean)."""


def kernel() -> ModuleType | None:
    """The compiled module, or None when it is not built or ``CS336_NO_NATIVE`` is set."""
    return native.module(EXTENSION)


def fits(logits: Tensor, targets: Tensor) -> bool:
    """Whether the kernel can compute the loss of ``logits (N, V)`` against ``targets (N,)``."""
    return (logits.is_cpu and logits.dtype in (torch.float32, torch.bfloat16) and logits.dim() == 2
            and logits.layout is torch.strided and logits.is_contiguous() and logits.shape[1] > 0
            and targets.is_cpu and targets.dtype is torch.int64 and targets.is_contiguous()
            and targets.shape == logits.shape[:1])


def kernel_for(logits: Tensor, targets: Tensor) -> ModuleType | None:
    """The kernel when it can compute this loss; None inside a ``torch.compile`` trace (checked first, so a trace
    never reaches the extension's loader)."""
    if torch.compiler.is_compiling():
        return None
    module = kernel()
    return module if module is not None and fits(logits, targets) else None


class NativeCrossEntropy(torch.autograd.Function):
    """``apply(logits (N, V), targets (N,), module)`` -> the mean loss, float32; gradient by the kernel."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, module: ModuleType) -> Tensor:
        n, vocab = logits.shape
        maxes, sums, losses = (torch.empty(n, dtype=torch.float32) for _ in range(3))  # (N,) each
        module.forward(logits.data_ptr(), logits.dtype is torch.bfloat16, n, vocab, targets.data_ptr(),
                       maxes.data_ptr(), sums.data_ptr(), losses.data_ptr(), torch.get_num_threads())
        ctx.save_for_backward(logits, targets, maxes, sums)
        ctx.module = module
        return losses.mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, targets, maxes, sums = ctx.saved_tensors
        n, vocab = logits.shape
        grad = torch.empty_like(logits)  # (N, V), the logits' dtype
        ctx.module.backward(logits.data_ptr(), logits.dtype is torch.bfloat16, n, vocab, targets.data_ptr(),
                            maxes.data_ptr(), sums.data_ptr(), float(grad_out) / max(n, 1), grad.data_ptr(),
                            torch.get_num_threads())
        return grad, None, None
