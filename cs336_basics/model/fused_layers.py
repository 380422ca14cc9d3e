"""RMSNorm, the SwiGLU gate and RoPE in one pass over memory each way: the C kernel ``_layers_native``.

As PyTorch operations, RMSNorm's forward is six passes over the activations
(square, mean, add, rsqrt, two products) and its backward about ten, and the
SwiGLU gate ``silu(a) * b`` three and seven; autograd also keeps each
intermediate tensor alive until the backward. The kernel reads a row (or an
element) once per direction and computes every step of the formula on it in
float32, with the closed-form gradients:

- RMSNorm, ``y = x r w`` with ``r = 1 / sqrt(mean(x^2) + eps)``:
  ``dx = r h - x r^3 mean(h x)`` where ``h = dy w``, and ``dw = sum over rows of dy x r``;
  saved for the backward: ``x`` and one float per row (``r``).
- SwiGLU gate, ``out = a s b`` with ``s = sigmoid(a)``:
  ``db = dout a s`` and ``da = dout b s (1 + a (1 - s))``; saved: ``a`` and ``b``.
- RoPE, each pair ``(x_2i, x_2i+1)`` rotated by its angle: the backward rotates the
  gradient back by the opposite angle; saved: the angles' cosines and sines. The
  kernel reads the queries and keys straight from their strided view of the fused
  ``qkv`` projection and writes them contiguous, as attention wants them, where the
  complex multiply upcasts, copies, multiplies and rounds back in four passes.

**Same results, within stated bounds.** The PyTorch forms in
:mod:`cs336_basics.model.layers` (``RMSNorm.reference_forward``, :func:`~cs336_basics.model.layers.silu`)
and :meth:`~cs336_basics.model.positions.RotaryEmbedding.reference_rotate` stay the test oracles. For float32 the two differ by float32 rounding in a
different order (and the kernel's own ``exp``, accurate to a few ulps, in the
sigmoid); for bf16 the kernel rounds once, at the end, where the PyTorch form
rounds after every operation, so the kernel is closer to the exact value.
``tests/model/test_fused_layers.py`` checks both against float64 oracles with
the tolerances below.

**What it takes** (:func:`fits`): contiguous CPU float32 or bf16 tensors of one
dtype (RMSNorm: a float32 weight), outside a ``torch.compile`` trace (compilers
fuse the PyTorch form themselves and cannot trace raw addresses). Anything else
runs the PyTorch form. The extension is optional, as all of this package's C
code (:mod:`cs336_basics.runtime.native`).
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from cs336_basics.runtime import native

EXTENSION = "_layers_native"
native.require_if_asked((EXTENSION,))  # CS336_REQUIRE_NATIVE=1: a broken C build is an import error

FLOAT32_RTOL = 1e-5
"""Relative difference allowed between the kernel and float64 maths for float32 tensors (outputs and gradients)."""
FLOAT32_ATOL = 1e-6
"""Absolute difference allowed for float32 entries near zero."""
BF16_ULPS = 1
"""bf16 outputs and gradients are within this many bf16 ulps of the float64 maths on the same bf16 inputs."""
MAX_DIM = 1 << 16
"""The longest RMSNorm row the kernel takes (it keeps two rows on a thread's stack)."""

_DTYPES = (torch.float32, torch.bfloat16)


def kernel() -> ModuleType | None:
    """The compiled module, or None when it is not built or ``CS336_NO_NATIVE`` is set."""
    return native.module(EXTENSION)


def _dense_cpu(t: Tensor) -> bool:
    return t.is_cpu and t.layout is torch.strided and t.is_contiguous()


def fits(*tensors: Tensor) -> bool:
    """Whether the kernel takes ``tensors``: dense contiguous CPU tensors of one shape and dtype, float32 or bf16."""
    first = tensors[0]
    return first.dtype in _DTYPES and all(_dense_cpu(t) and t.dtype is first.dtype and t.shape == first.shape
                                          for t in tensors)


def rms_norm_fits(x: Tensor, weight: Tensor) -> bool:
    """Whether the kernel can normalise ``x (..., d)`` with a float32 ``weight (d,)``."""
    return (fits(x) and x.dim() >= 1 and 0 < x.shape[-1] <= MAX_DIM and _dense_cpu(weight)
            and weight.dtype is torch.float32 and weight.shape == x.shape[-1:])


def _kernel_if(fits_now) -> ModuleType | None:
    """The kernel when it is loaded and ``fits_now()`` holds; None inside a ``torch.compile`` trace (checked first,
    so a trace never reaches the extension's loader)."""
    if torch.compiler.is_compiling():
        return None
    module = kernel()
    return module if module is not None and fits_now() else None


def gate_kernel(a: Tensor, b: Tensor) -> ModuleType | None:
    """The kernel when it can compute ``silu(a) * b``; None inside a ``torch.compile`` trace."""
    return _kernel_if(lambda: fits(a, b))


def rotation_fits(x: Tensor, rotation: Tensor) -> bool:
    """Whether the kernel can rotate ``x (B, H, T, D)`` by ``rotation`` (complex ``(T, D/2)``: the same positions
    for every row)."""
    return (x.dtype in _DTYPES and x.is_cpu and x.layout is torch.strided and x.dim() == 4 and x.stride(-1) == 1
            and 2 <= x.shape[-1] <= MAX_DIM and x.shape[-1] % 2 == 0 and rotation.dtype is torch.complex64
            and rotation.is_cpu and tuple(rotation.shape) == (x.shape[-2], x.shape[-1] // 2))


def rotation_kernel(x: Tensor, rotation: Tensor) -> ModuleType | None:
    """The kernel when it can rotate ``x`` by ``rotation``; None inside a ``torch.compile`` trace."""
    return _kernel_if(lambda: rotation_fits(x, rotation))


def _rotate(module: ModuleType, x: Tensor, cos_sin: Tensor, sign: float) -> Tensor:
    """``x (B, H, T, D)`` rotated by the angles of ``cos_sin (T, D/2, 2)`` (``sign`` -1: by their opposites)."""
    out = torch.empty(x.shape, dtype=x.dtype)  # (B, H, T, D), contiguous
    module.rope(x.data_ptr(), *x.shape, *x.stride()[:3], cos_sin.data_ptr(), out.data_ptr(), sign,
                x.dtype is torch.bfloat16, torch.get_num_threads())
    return out


class NativeRotation(torch.autograd.Function):
    """``apply(x (B, H, T, D), rotation (T, D/2) complex, module)`` -> ``x`` with RoPE applied, contiguous."""

    @staticmethod
    def forward(ctx, x: Tensor, rotation: Tensor, module: ModuleType) -> Tensor:
        cos_sin = torch.view_as_real(rotation).contiguous()  # (T, D/2, 2) float32: cos, sin
        ctx.save_for_backward(cos_sin)
        ctx.module = module
        return _rotate(module, x, cos_sin, 1.0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (cos_sin,) = ctx.saved_tensors
        if grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        return _rotate(ctx.module, grad_out, cos_sin, -1.0), None, None


def rms_norm_kernel(x: Tensor, weight: Tensor) -> ModuleType | None:
    """The kernel when it can normalise ``x`` with ``weight``; None inside a ``torch.compile`` trace."""
    return _kernel_if(lambda: rms_norm_fits(x, weight))


class NativeRMSNorm(torch.autograd.Function):
    """``apply(x (..., d), weight (d,), eps, module)`` -> ``x / rms(x) * weight`` in ``x``'s dtype."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float, module: ModuleType) -> Tensor:
        dim = x.shape[-1]
        rows = x.numel() // dim
        y = torch.empty_like(x)
        inv_rms = torch.empty(rows, dtype=torch.float32)  # (rows,)
        module.rms_norm_forward(x.data_ptr(), weight.data_ptr(), y.data_ptr(), inv_rms.data_ptr(), rows, dim, eps,
                                x.dtype is torch.bfloat16, torch.get_num_threads())
        ctx.save_for_backward(x, weight, inv_rms)
        ctx.module = module
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, weight, inv_rms = ctx.saved_tensors
        grad_y = grad_y.to(x.dtype).contiguous()
        dim = x.shape[-1]
        rows = x.numel() // dim
        threads = torch.get_num_threads()
        grad_x = torch.empty_like(x)
        parts = torch.zeros(threads, dim, dtype=torch.float32)  # (threads, d): one row per range of rows
        ctx.module.rms_norm_backward(x.data_ptr(), weight.data_ptr(), inv_rms.data_ptr(), grad_y.data_ptr(),
                                     grad_x.data_ptr(), parts.data_ptr(), rows, dim, x.dtype is torch.bfloat16,
                                     threads)
        return grad_x, parts.sum(dim=0), None, None


class NativeSwiGLUGate(torch.autograd.Function):
    """``apply(a, b, module)`` -> ``silu(a) * b`` elementwise, in the inputs' dtype."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, module: ModuleType) -> Tensor:
        out = torch.empty_like(a)
        module.swiglu_forward(a.data_ptr(), b.data_ptr(), out.data_ptr(), a.numel(), a.dtype is torch.bfloat16,
                              torch.get_num_threads())
        ctx.save_for_backward(a, b)
        ctx.module = module
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        a, b = ctx.saved_tensors
        grad_out = grad_out.to(a.dtype).contiguous()
        grad_a, grad_b = torch.empty_like(a), torch.empty_like(b)
        ctx.module.swiglu_backward(a.data_ptr(), b.data_ptr(), grad_out.data_ptr(), grad_a.data_ptr(),
                                   grad_b.data_ptr(), a.numel(), a.dtype is torch.bfloat16, torch.get_num_threads())
        return grad_a, grad_b, None
