"""Position information: learned, sinusoidal, rotary (RoPE) or none (NoPE).

A position *scheme* (one per ``ModelConfig.position`` name, mapped to its class in
:mod:`cs336_basics.model.variant_classes`) hands the model its two parts: an absolute
encoding added at the bottom and a rotation applied inside attention. Two
families, each with an identity member so the model never branches on a flag:

- *absolute* encodings are added to the token embeddings once, at the bottom:
  :class:`LearnedPositionEmbedding` (a trained ``(context_length, d_model)``
  table, GPT-2), :class:`SinusoidalPositionEmbedding` (the fixed table of
  Vaswani et al. 2017) and :class:`NoAbsolutePosition`;
- *relative* encodings rotate queries and keys inside every attention layer:
  :class:`RotaryEmbedding` (Su et al. 2021) and :class:`NoRotation`.

All take explicit integer ``positions`` so a KV cache or a left-padded batch
can place tokens anywhere. RoPE rotates *adjacent* pairs ``(2i, 2i+1)`` by the
angle ``position * theta^(-2i/d)`` (the convention of the CS336 handout and of
the original paper; HF Llama rotates the two halves instead), as one complex
multiplication per pair (the formulation of Meta's Llama code; the real-arithmetic
formula :func:`rotate_pairs` is kept as its test oracle). Its angles are
computed from the positions on the fly rather than read from a table, so RoPE
and NoPE models have no maximum position (needed by sliding-window decoding).

:class:`PairRotaryEmbedding` is the same rotation in real arithmetic, for
compilers: TorchInductor generates no code for complex operators, and the
complex form's check of strides and storage offset (is the complex view legal?)
is a Python branch that splits a traced graph.
:func:`cs336_basics.model.compiled.prepare_for_compile` swaps it in; eager
models keep the complex form, which is faster there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cs336_basics.errors import UserError
from cs336_basics.model import fused_layers
from cs336_basics.model.layers import Embedding


class LearnedPositionEmbedding(Embedding):
    """A trained table of ``context_length`` position vectors; ``forward(x, positions)`` adds them to ``x``.

    It is an :class:`Embedding` (weight ``(context_length, d_model)``) so optimizers treat it as one.
    """

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:  # type: ignore[override]
        return x + super().forward(positions)  # (..., T, d) + (T, d) or (B, T, d)


class _Frequencies(nn.Module):
    """Holds ``inv_freq[i] = base^(-2i/dim)`` as a float32 buffer that follows the module's device.

    ``model.to(torch.bfloat16)`` would round the frequencies (and so every angle at
    large positions); after any such conversion they are recomputed in float32.
    """

    def __init__(self, dim: int, base: float, device=None) -> None:
        super().__init__()
        self._dim, self._base = dim, base
        self.register_buffer("inv_freq", self._compute(device), persistent=False)

    def _compute(self, device) -> Tensor:
        return self._base ** (-torch.arange(0, self._dim, 2, dtype=torch.float32, device=device) / self._dim)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            self.inv_freq = self._compute(self.inv_freq.device)
        return self


class SinusoidalPositionEmbedding(_Frequencies):
    """The fixed encoding ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``, added to ``x``."""

    def __init__(self, d_model: int, base: float = 10000.0) -> None:
        if d_model % 2:
            raise UserError(f"sinusoidal positions need an even d_model, got {d_model} (choose an even width)")
        super().__init__(d_model, base)  # inv_freq: (d/2,)

    def encoding(self, positions: Tensor) -> Tensor:
        angles = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq  # (..., T, d/2)
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (..., T, d) interleaved

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        return x + self.encoding(positions).to(x.dtype)


class NoAbsolutePosition(nn.Module):
    """No absolute encoding (RoPE and NoPE models): returns ``x`` unchanged."""

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        return x


class RotaryEmbedding(_Frequencies):
    """RoPE over the last dimension ``d_head`` of queries or keys.

    ``forward(x (..., T, d_head), positions (..., T))`` where the leading dimensions of
    ``positions`` broadcast against those of ``x`` (e.g. ``(T,)`` for every row, or
    ``(B, 1, T)`` for per-row positions with a head dimension in ``x``).
    ``max_seq_len`` is accepted for API symmetry with the handout and is not a limit.
    """

    def __init__(self, d_head: int, theta: float = 10000.0, max_seq_len: int | None = None, device=None) -> None:
        if d_head % 2:
            raise UserError(f"RoPE needs an even head dimension, got {d_head} (change d_model or num_heads)")
        super().__init__(d_head, theta, device)  # inv_freq: (d/2,)
        self.d_head = d_head
        self.theta = theta
        self.max_seq_len = max_seq_len

    def angles(self, positions: Tensor) -> Tensor:
        """``position * theta^(-2i/d)`` for every position and pair: float32 ``(..., T, d/2)``."""
        return positions.to(torch.float32).unsqueeze(-1) * self.inv_freq

    def cos_sin(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """The angles' cosines and sines (what :func:`rotate_pairs` takes)."""
        angles = self.angles(positions)
        return angles.cos(), angles.sin()

    def rotation(self, positions: Tensor) -> Tensor:
        """``e^{i angle}`` for every position and pair: complex64 ``(..., T, d/2)``."""
        angles = self.angles(positions)
        return torch.polar(torch.ones_like(angles), angles)

    def rotate(self, x: Tensor, rotation: Tensor) -> Tensor:
        """Rotate the pairs of ``x (..., T, d)`` by ``rotation`` (from :meth:`rotation`, broadcastable).

        CPU float32/bf16 queries and keys ``(B, H, T, d)`` with one position per token take the one-pass C
        kernel of :mod:`cs336_basics.model.fused_layers`; anything else runs :meth:`reference_rotate`.
        """
        module = fused_layers.rotation_kernel(x, rotation)
        if module is not None:
            return fused_layers.NativeRotation.apply(x, rotation, module)
        return self.reference_rotate(x, rotation)

    def reference_rotate(self, x: Tensor, rotation: Tensor) -> Tensor:
        """:meth:`rotate` as one complex multiply in PyTorch operations (the kernel's oracle)."""
        # A pair (x_2i, x_2i+1) rotated by angle a is the complex number x_2i + i x_2i+1 times
        # e^{ia}: one complex multiply reads x once and writes once, and its backward is one
        # multiply by the conjugate, where the real-arithmetic form (rotate_pairs) runs four
        # multiplies, an add, a subtraction and a stack, each a pass over memory in eager mode.
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # no complex bf16 type
        if work.stride(-1) != 1 or work.storage_offset() % 2 or any(s % 2 for s in work.stride()[:-1]):
            work = work.contiguous()  # view_as_complex needs whole (re, im) pairs in memory
        pairs = torch.view_as_complex(work.unflatten(-1, (self.d_head // 2, 2)))  # (..., T, d/2) complex
        rotated = torch.view_as_real(pairs * rotation).flatten(-2)  # (..., T, d)
        return rotated if rotated.dtype == x.dtype else rotated.to(x.dtype)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        return self.rotate(x, self.rotation(positions))

    def extra_repr(self) -> str:
        return f"d_head={self.d_head}, theta={self.theta}"


class PairRotaryEmbedding(RotaryEmbedding):
    """RoPE as :class:`RotaryEmbedding` computes it, in real arithmetic: what compiled models use.

    The rotation is the pair ``(cos, sin)`` of the angles instead of ``e^{i angle}``, and
    each pair ``(x_2i, x_2i+1)`` becomes ``(x_2i cos - x_2i+1 sin, x_2i sin + x_2i+1 cos)``
    (:func:`rotate_pairs`): the complex multiply's products and sums, in float32 for bf16
    inputs as there. Results agree to a few ulps, not always bit for bit, for two
    reasons outside this code: ``torch.polar`` and ``torch.cos``/``torch.sin`` may round an
    angle's cosine or sine differently (by one ulp), and PyTorch's broadcasting complex
    multiply fuses a multiply-add; given the same cos and sin, operands of one shape
    give identical bits. It never asks for strides or a storage offset, so a compiler
    traces one graph and fuses it; run eagerly it makes more passes over ``x`` than the
    complex multiply, hence not the eager default.
    Adds no state: :func:`~cs336_basics.model.compiled.prepare_for_compile` turns a
    :class:`RotaryEmbedding` into one in place.
    """

    def rotation(self, positions: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """``(cos, sin)`` of every angle: float32 ``(..., T, d/2)`` each."""
        return self.cos_sin(positions)

    def rotate(self, x: Tensor, rotation: tuple[Tensor, Tensor]) -> Tensor:  # type: ignore[override]
        """Rotate the pairs of ``x (..., T, d)`` by ``rotation`` (from :meth:`rotation`, broadcastable)."""
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # as the complex form computes
        return rotate_pairs(work, *rotation).to(x.dtype)  # (..., T, d)


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE in real arithmetic, the handout's formula: the test oracle for :class:`RotaryEmbedding`
    and the arithmetic of :class:`PairRotaryEmbedding`.

    ``x (..., T, d)``; ``cos``/``sin`` ``(..., T, d/2)``; pair ``(x_2i, x_2i+1)`` becomes
    ``(x_2i cos - x_2i+1 sin, x_2i sin + x_2i+1 cos)``.
    """
    pairs = x.unflatten(-1, (x.shape[-1] // 2, 2))  # (..., T, d/2, 2)
    x_even, x_odd = pairs[..., 0], pairs[..., 1]  # (..., T, d/2) each
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (..., T, d/2, 2)
    return rotated.flatten(-2)  # (..., T, d)


class NoRotation(nn.Module):
    """No relative encoding: queries and keys pass through unchanged (same interface as RoPE)."""

    def rotation(self, positions: Tensor) -> None:
        return None

    def rotate(self, x: Tensor, rotation: None) -> Tensor:
        return x

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        return x


# ----------------------------------------------------------------------------- schemes (registry entries)


class NoPositions:
    """NoPE: neither an absolute encoding nor a rotation; causal masking alone orders the tokens."""

    @staticmethod
    def absolute(cfg, *, device=None, dtype=None, generator=None) -> nn.Module:
        return NoAbsolutePosition()

    @staticmethod
    def rotary(cfg, *, device=None) -> nn.Module:
        return NoRotation()


class LearnedPositions(NoPositions):
    """A trained ``(context_length, d_model)`` table added to the token embeddings (GPT-2)."""

    @staticmethod
    def absolute(cfg, *, device=None, dtype=None, generator=None) -> nn.Module:
        return LearnedPositionEmbedding(cfg.context_length, cfg.d_model, device=device, dtype=dtype,
                                        generator=generator)


class SinusoidalPositions(NoPositions):
    """The fixed sin/cos table of Vaswani et al. (2017), added to the token embeddings."""

    @staticmethod
    def absolute(cfg, *, device=None, dtype=None, generator=None) -> nn.Module:
        return SinusoidalPositionEmbedding(cfg.d_model)


class RotaryPositions(NoPositions):
    """RoPE: queries and keys rotated in every layer; one rotation module shared by all layers."""

    @staticmethod
    def rotary(cfg, *, device=None) -> nn.Module:
        return RotaryEmbedding(cfg.head_size, cfg.rope_theta, cfg.context_length, device=device)
