"""The elementary layers: Linear, Embedding, the normalisations and the activation functions.

Everything is built from tensor operations only (no ``torch.nn.functional``
kernels), so each layer is a few readable lines that the tests compare against
PyTorch's builtins.

Notable choices:

- :class:`Linear` has no bias and stores its weight as ``(d_out, d_in)``, like
  ``nn.Linear``, so ``y = x @ W.T`` and external weights load without transposing.
- :class:`Embedding` looks rows up with ``index_select`` whose backward is an
  ``index_add`` (cheaper on CPU than the scatter of advanced indexing).
- :class:`RMSNorm` and :class:`LayerNorm` compute in float32 and cast back, so
  they are stable under bf16 autocast (the 2025 handout's recipe).
- :func:`softmax` subtracts the row maximum so ``exp`` never overflows.
- On CPU float32 and bf16 tensors, :class:`RMSNorm` and :func:`swiglu_gate` run the
  one-pass C kernels of :mod:`cs336_basics.model.fused_layers` when they are built
  (same maths, closed-form backward); the tensor-operation forms here are their oracles
  and what compilers and other devices run.
- :func:`gelu` is the exact erf form (GPT-2 used the tanh approximation; the
  course uses the exact one).

Initialisation lives in :mod:`cs336_basics.model.init`; the constructors here
call it so a freshly built layer is already initialised as the handout says.

Reference: CS336 Assignment 1 handouts (spring 2024 / 2025); Zhang & Sennrich
2019 (RMSNorm); Ba et al. 2016 (LayerNorm); Hendrycks & Gimpel 2016 (GELU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cs336_basics.model import fused_layers
from cs336_basics.model.init import init_embedding_, init_linear_


class Linear(nn.Module):
    """``y = x W^T`` without bias; ``weight`` is ``(d_out, d_in)``; any number of leading dimensions."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        init_linear_(self.weight, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.t()  # (..., d_in) @ (d_in, d_out) -> (..., d_out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias=False"


class Embedding(nn.Module):
    """Row lookup ``weight[token_ids]``; ``weight`` is ``(num_embeddings, embedding_dim)``.

    Optimizers recognise this class to keep embeddings out of weight decay.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None,
                 generator: torch.Generator | None = None, std: float = 1.0) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        init_embedding_(self.weight, std=std, generator=generator)

    def forward(self, token_ids: Tensor) -> Tensor:
        flat = token_ids.reshape(-1)  # (N,)
        rows = torch.index_select(self.weight, 0, flat)  # (N, d)
        return rows.view(*token_ids.shape, self.embedding_dim)  # (..., d)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension, computed in float32."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        module = fused_layers.rms_norm_kernel(x, self.weight)
        if module is not None:
            return fused_layers.NativeRMSNorm.apply(x, self.weight, self.eps, module)
        return self.reference_forward(x)

    def reference_forward(self, x: Tensor) -> Tensor:
        """The same normalisation in PyTorch operations (compiled models, other devices, the kernel's oracle)."""
        if x.dtype in (torch.bfloat16, torch.float16):  # normalise in float32, hand back the input dtype
            return self.reference_forward(x.float()).to(x.dtype)
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return x * inv_rms * self.weight  # a bf16 weight is promoted to float32 by the product

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNorm(nn.Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last dimension, in float32 (for ablations)."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        in_dtype = x.dtype
        x32 = x.float()
        mean = x32.mean(dim=-1, keepdim=True)  # (..., 1)
        centred = x32 - mean
        var = centred.pow(2).mean(dim=-1, keepdim=True)  # biased variance, as nn.LayerNorm
        out = centred * torch.rsqrt(var + self.eps) * self.weight.float() + self.bias.float()
        return out.to(in_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class NoNorm(nn.Module):
    """The identity, standing in for a normalisation layer in the no-norm ablation."""

    def __init__(self, d_model: int = 0, eps: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax: ``exp(x - max) / sum(exp(x - max))`` along ``dim``."""
    shifted = x - x.amax(dim=dim, keepdim=True)
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def gelu(x: Tensor) -> Tensor:
    """Exact GELU: ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``."""
    return 0.5 * x * (1.0 + torch.erf(x * _INV_SQRT2))


def silu(x: Tensor) -> Tensor:
    """SiLU / swish: ``x * sigmoid(x)``."""
    return x * torch.sigmoid(x)


def swiglu_gate(a: Tensor, b: Tensor) -> Tensor:
    """SwiGLU's gate ``silu(a) * b``; on CPU float32/bf16 tensors the one-pass C kernel computes it."""
    module = fused_layers.gate_kernel(a, b)
    if module is not None:
        return fused_layers.NativeSwiGLUGate.apply(a, b, module)
    return silu(a) * b


def identity(x: Tensor) -> Tensor:
    """Returns ``x``: what a disabled dropout becomes."""
    return x


def dropout_or_identity(p: float):
    """``nn.Dropout(p)``, or the plain function :func:`identity` when ``p == 0``.

    A function rather than ``nn.Identity``: a module call costs a few microseconds of
    Python, which adds up over the ~70 module calls of one KV-cache decoding step.
    """
    return nn.Dropout(p) if p > 0 else identity
