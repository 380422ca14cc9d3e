"""The C kernels of RMSNorm and the SwiGLU gate against float64 maths and the PyTorch forms they replace.

Bounds are the module's stated ones (``fused_layers.FLOAT32_RTOL``, ``BF16_ULPS``). The kernels are required
here (CI builds them); the dispatch tests check which path the layers take.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.model import fused_layers as fused
from cs336_basics.model.layers import RMSNorm, silu, swiglu_gate
from cs336_basics.model.positions import RotaryEmbedding, rotate_pairs
from tests.conftest import require_native


@pytest.fixture(autouse=True)
def _kernel():
    require_native(fused.EXTENSION)


def norm_native(x, weight, eps=1e-5):
    return fused.NativeRMSNorm.apply(x, weight, eps, fused.kernel())


def gate_native(a, b):
    return fused.NativeSwiGLUGate.apply(a, b, fused.kernel())


def norm_exact(x, weight, eps=1e-5):
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


def gate_exact(a, b):
    a = a.double()
    return a * torch.sigmoid(a) * b.double()


def run(fn, inputs, grad_out):
    """Output and input gradients of ``fn(*inputs)`` against ``grad_out`` (inputs are cloned leaves)."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad_out.to(out.dtype))
    return [out.detach()] + [leaf.grad for leaf in leaves]


def assert_float32_close(got, exact):
    torch.testing.assert_close(got.double(), exact, rtol=fused.FLOAT32_RTOL, atol=fused.FLOAT32_ATOL)


def assert_within_bf16_ulps(got, exact):
    assert got.dtype == torch.bfloat16
    ulp = exact.float().bfloat16().float().abs().double() * 2**-7 + 1e-30  # one bf16 ulp at the exact value
    assert ((got.double() - exact).abs() <= fused.BF16_ULPS * ulp * 1.0001).all()


def inputs(shape, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale, torch.randn(*shape, generator=g)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 5, 64), (4, 33, 512)])
def test_rms_norm_float32_matches_float64_and_the_torch_form(shape):
    x, grad_y = inputs(shape, sum(shape))
    weight = torch.rand(shape[-1]) + 0.5
    y, gx, gw = run(norm_native, (x, weight), grad_y)
    exact = run(norm_exact, (x.double(), weight.double()), grad_y.double())
    assert_float32_close(y, exact[0])
    assert_float32_close(gx, exact[1])
    assert_weight_grad_close(gw, exact[2], x, grad_y)


def assert_weight_grad_close(got, exact, x, grad_y):
    """The weight's gradient sums a term per row: float32 keeps it to a few roundings of the terms' total size."""
    x64 = x.double().reshape(-1, x.shape[-1])
    terms = grad_y.double().reshape(x64.shape) * x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5)
    mass = terms.abs().sum(0)  # (d,)
    assert ((got.double() - exact).abs() <= fused.FLOAT32_RTOL * mass + fused.FLOAT32_ATOL).all()


def test_rms_norm_layer_uses_the_kernel_and_agrees_with_its_torch_form():
    layer = RMSNorm(96)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
    x, grad_y = inputs((6, 10, 96), 11)
    results = []
    for forward in (layer.forward, layer.reference_forward):
        layer.zero_grad()
        xx = x.clone().requires_grad_()
        forward(xx).backward(grad_y)
        results.append((forward(x).detach(), xx.grad, layer.weight.grad.clone()))
    for got, ref in zip(*results):
        torch.testing.assert_close(got, ref, rtol=fused.FLOAT32_RTOL, atol=fused.FLOAT32_ATOL)


def test_rms_norm_bf16_is_rounded_once():
    x, grad_y = inputs((8, 40, 256), 3)
    x, grad_y = x.bfloat16(), grad_y.bfloat16()
    weight = torch.rand(256) + 0.5
    y, gx, gw = run(norm_native, (x, weight), grad_y)
    exact = run(norm_exact, (x.double(), weight.double()), grad_y.double())
    assert_within_bf16_ulps(y, exact[0])
    assert_within_bf16_ulps(gx, exact[1])
    assert gw.dtype == torch.float32
    assert_weight_grad_close(gw, exact[2], x, grad_y)


@pytest.mark.parametrize("shape", [(1,), (17,), (3, 511), (2, 16, 1344)])
def test_swiglu_gate_float32_matches_float64_and_silu_times_b(shape):
    (a, b), grad_out = inputs(shape, 7), torch.randn(*shape)
    got = run(gate_native, (a, b), grad_out)
    exact = run(gate_exact, (a.double(), b.double()), grad_out.double())
    for g, e in zip(got, exact):
        assert_float32_close(g, e)
    torch_form = run(lambda p, q: silu(p) * q, (a, b), grad_out)
    for g, t in zip(got, torch_form):
        torch.testing.assert_close(g, t, rtol=fused.FLOAT32_RTOL, atol=fused.FLOAT32_ATOL)


def test_swiglu_gate_bf16_is_rounded_once_and_extreme_inputs_stay_finite():
    a, b = inputs((4, 1000), 9, scale=6.0)
    a[0, :4] = torch.tensor([-200.0, -90.0, 90.0, 200.0])  # sigmoid saturates: no overflow, no NaN
    a, b, grad_out = a.bfloat16(), b.bfloat16(), torch.randn(4, 1000).bfloat16()
    got = run(gate_native, (a, b), grad_out)
    exact = run(gate_exact, (a.double(), b.double()), grad_out.double())
    for g, e in zip(got, exact):
        assert torch.isfinite(g).all()
        assert_within_bf16_ulps(g, e)


def test_nan_propagates_through_both_kernels():
    x = torch.randn(3, 8)
    x[1, 2] = float("nan")
    y = norm_native(x, torch.ones(8))
    assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2]]).all()
    out = gate_native(x, torch.ones(3, 8))
    assert torch.isnan(out[1, 2]) and torch.isfinite(out[0]).all()


def test_gate_results_do_not_depend_on_the_thread_count():
    a, b = inputs((64, 4096), 13)
    grad_out = torch.randn(64, 4096)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(gate_native, (a, b), grad_out)
        torch.set_num_threads(2)
        two = run(gate_native, (a, b), grad_out)
    finally:
        torch.set_num_threads(before)
    for x, y in zip(one, two):
        assert torch.equal(x, y)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 9), dim=st.integers(1, 80), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_property_rms_norm_matches_float64(rows, dim, scale, seed):
    x, grad_y = inputs((rows, dim), seed, scale)
    weight = torch.rand(dim, generator=torch.Generator().manual_seed(seed)) + 0.5
    y, gx, gw = run(norm_native, (x, weight), grad_y)
    exact = run(norm_exact, (x.double(), weight.double()), grad_y.double())
    assert_float32_close(y, exact[0])
    # dx = r (h - x r^2 mean(h x)): the difference cancels, so its error scales with the larger of the two terms
    h = grad_y.double() * weight.double()
    r = torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5)
    size = r * (h.abs() + x.double().abs() * r * r * (h * x.double()).abs().mean(-1, keepdim=True))
    assert ((gx.double() - exact[1]).abs() <= fused.FLOAT32_RTOL * size + fused.FLOAT32_ATOL).all()
    assert_weight_grad_close(gw, exact[2], x, grad_y)


def test_layers_take_the_kernel_only_where_it_fits(monkeypatch):
    calls = []
    for cls in (fused.NativeRMSNorm, fused.NativeSwiGLUGate):
        original = cls.apply
        monkeypatch.setattr(cls, "apply", lambda *args, _o=original, _c=cls: calls.append(_c.__name__) or _o(*args))
    layer = RMSNorm(8)
    x = torch.randn(4, 8)
    layer(x)
    swiglu_gate(x, x)
    assert calls == ["NativeRMSNorm", "NativeSwiGLUGate"]
    layer(x.double())  # float64: the torch form
    layer(torch.randn(8, 4).t())  # not contiguous
    swiglu_gate(x, x.bfloat16())  # mixed dtypes
    assert len(calls) == 2
    monkeypatch.setenv("CS336_NO_NATIVE", "1")
    layer(x)
    swiglu_gate(x, x)
    assert len(calls) == 2


def rope_inputs(dtype, seed=0, batch=2, heads=3, tokens=11, dim=8):
    """Queries as attention slices them out of the fused qkv projection: a strided (B, H, T, D) view."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, tokens, 3, heads, dim, generator=g).to(dtype)
    q = qkv.movedim(-4, -2)[:, 0]  # (B, H, T, D), not contiguous
    rope = RotaryEmbedding(dim, theta=100.0)
    return q, rope, rope.rotation(torch.arange(5, 5 + tokens))


def test_rope_float32_matches_float64_and_the_complex_multiply():
    q, rope, rotation = rope_inputs(torch.float32)
    grad_out = torch.randn(q.shape)
    got = run(lambda x: rope.rotate(x, rotation), (q,), grad_out)
    ref = run(lambda x: rope.reference_rotate(x, rotation), (q,), grad_out)
    cos, sin = torch.view_as_real(rotation).double().unbind(-1)
    exact = run(lambda x: rotate_pairs(x, cos, sin), (q.double(),), grad_out.double())
    assert got[0].is_contiguous()  # as attention wants it
    for g, r, e in zip(got, ref, exact):
        torch.testing.assert_close(g, r, rtol=fused.FLOAT32_RTOL, atol=fused.FLOAT32_ATOL)
        assert_float32_close(g, e)


def test_rope_bf16_is_rounded_once():
    q, rope, rotation = rope_inputs(torch.bfloat16, seed=1, dim=64, tokens=40)
    grad_out = torch.randn(q.shape).bfloat16()
    got = run(lambda x: rope.rotate(x, rotation), (q,), grad_out)
    cos, sin = torch.view_as_real(rotation).double().unbind(-1)
    exact = run(lambda x: rotate_pairs(x, cos, sin), (q.double(),), grad_out.double())
    for g, e in zip(got, exact):
        assert_within_bf16_ulps(g, e)


def test_rope_takes_the_kernel_only_for_shared_positions():
    q, rope, rotation = rope_inputs(torch.float32)
    assert fused.rotation_kernel(q, rotation) is not None
    per_row = rope.rotation(torch.arange(11).expand(2, 1, 11))  # (B, 1, T, D/2): per-row positions
    assert fused.rotation_kernel(q, per_row) is None
    assert fused.rotation_kernel(q.double(), rotation) is None
    assert fused.rotation_kernel(q[..., :4], rotation) is None  # the angles are for 8 dimensions
    torch.testing.assert_close(rope.rotate(q, per_row), rope.reference_rotate(q, per_row))
