"""The elementary layers against PyTorch builtins (used here only) and slow, obviously-correct loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.model import Embedding, LayerNorm, Linear, NoNorm, RMSNorm, gelu, silu, softmax
from cs336_basics.model.init import linear_std, make_generator


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


def _rmsnorm_loop(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """One vector at a time, straight from the definition."""
    flat = x.reshape(-1, x.shape[-1]).double()
    out = torch.empty_like(flat)
    for i, row in enumerate(flat):
        rms = math.sqrt(sum(v * v for v in row.tolist()) / len(row) + eps)
        out[i] = row / rms * weight.double()
    return out.reshape(x.shape)


def test_linear_matches_builtin_with_extra_batch_dims():
    torch.manual_seed(0)
    layer = Linear(7, 5)
    assert layer.weight.shape == (5, 7)
    x = torch.randn(2, 3, 4, 7)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight), rtol=1e-6, atol=1e-6)


def test_linear_loads_external_weights():
    w = torch.randn(4, 6)
    layer = Linear(6, 4)
    layer.load_state_dict({"weight": w})
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x @ w.T)


def test_embedding_matches_builtin_and_gradient():
    torch.manual_seed(0)
    emb = Embedding(11, 5)
    ids = torch.randint(0, 11, (2, 3, 4))
    out = emb(ids)
    assert out.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out, F.embedding(ids, emb.weight))
    out.sum().backward()
    expected = torch.zeros(11, 5)
    for i in ids.flatten().tolist():
        expected[i] += 1
    torch.testing.assert_close(emb.weight.grad, expected)


def test_rmsnorm_matches_loop_reference():
    torch.manual_seed(0)
    norm = RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8))
    x = torch.randn(2, 3, 8) * 3
    torch.testing.assert_close(norm(x).double(), _rmsnorm_loop(x, norm.weight, 1e-5), rtol=1e-5, atol=1e-6)


def test_rmsnorm_bf16_computes_in_float32_and_casts_back():
    torch.manual_seed(0)
    norm = RMSNorm(16)
    x = torch.randn(4, 16).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = _rmsnorm_loop(x.float(), norm.weight, 1e-5).to(torch.bfloat16)
    torch.testing.assert_close(out, expected)


def test_layernorm_matches_builtin():
    torch.manual_seed(0)
    ours = LayerNorm(10, eps=1e-5)
    ref = torch.nn.LayerNorm(10, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(10))
        ours.bias.copy_(torch.randn(10))
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    x = torch.randn(3, 5, 10) * 4 + 2
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_nonorm_is_identity():
    x = torch.randn(3, 4)
    assert NoNorm(4)(x) is x
    assert list(NoNorm(4).parameters()) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=12), st.floats(0, 80))
def test_softmax_matches_builtin_even_for_large_inputs(values, offset):
    x = torch.tensor(values, dtype=torch.float64) + offset * 10
    out = softmax(x, dim=-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(x, dim=-1))
    torch.testing.assert_close(out.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_softmax_other_dims():
    x = torch.randn(3, 4, 5) * 50
    for dim in (0, 1, 2, -1):
        torch.testing.assert_close(softmax(x, dim), torch.softmax(x, dim))


def test_gelu_and_silu_match_builtins():
    x = torch.linspace(-8, 8, 1001, dtype=torch.float64).reshape(7, 11, 13)
    torch.testing.assert_close(gelu(x), F.gelu(x))  # exact erf form, not tanh
    torch.testing.assert_close(silu(x), F.silu(x))


def test_gradients_match_builtins():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    for ours, ref in ((gelu, F.gelu), (silu, F.silu), (lambda t: softmax(t, -1), lambda t: torch.softmax(t, -1))):
        g1, = torch.autograd.grad(ours(x).pow(2).sum(), x)
        g2, = torch.autograd.grad(ref(x).pow(2).sum(), x)
        torch.testing.assert_close(g1, g2)


def test_linear_init_is_truncated_normal_with_handout_variance():
    layer = Linear(300, 500, generator=make_generator(0))
    w = layer.weight.detach()
    std = linear_std(300, 500)
    # N(0, s^2) truncated at +-3s has standard deviation 0.9866 s
    assert abs(w.std().item() / std - 0.9866) < 0.02
    assert w.abs().max().item() <= 3 * std + 1e-6


def test_embedding_init_is_truncated_at_three():
    w = Embedding(1000, 64, generator=make_generator(1)).weight.detach()
    assert w.abs().max().item() <= 3.0 + 1e-6
    assert abs(w.std().item() - 0.9866) < 0.02
    assert abs(w.mean().item()) < 0.02


def test_seeded_init_is_reproducible_and_independent_of_global_rng():
    torch.manual_seed(123)
    a = Linear(8, 8, generator=make_generator(5)).weight
    torch.manual_seed(999)
    b = Linear(8, 8, generator=make_generator(5)).weight
    c = Linear(8, 8, generator=make_generator(6)).weight
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("layer_cls", [RMSNorm, LayerNorm])
def test_norm_state_dict_roundtrip(layer_cls):
    a = layer_cls(6)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randn_like(p))
    b = layer_cls(6)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6)
    torch.testing.assert_close(a(x), b(x))
