"""Attention, RoPE and position encodings against slow references and PyTorch's SDPA (test-only use)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cs336_basics.model import (
    MultiHeadSelfAttention,
    ReferenceAttention,
    RotaryEmbedding,
    SDPAAttention,
    SinusoidalPositionEmbedding,
    causal_mask,
    scaled_dot_product_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


def _attention_loop(Q, K, V, mask=None):
    """Attention one query at a time, in float64, straight from the formula."""
    *lead, tq, d = Q.shape
    out = torch.zeros(*lead, tq, V.shape[-1], dtype=torch.float64)
    Qf, Kf, Vf = Q.double().reshape(-1, tq, d), K.double().reshape(-1, K.shape[-2], d), V.double()
    Vf = Vf.reshape(-1, *V.shape[-2:])
    flat_out = out.reshape(-1, tq, V.shape[-1])
    m = None if mask is None else mask.expand(*lead, tq, K.shape[-2]).reshape(-1, tq, K.shape[-2])
    for b in range(Qf.shape[0]):
        for i in range(tq):
            scores = [(Qf[b, i] @ Kf[b, j]).item() / math.sqrt(d) for j in range(Kf.shape[1])]
            allowed = [j for j in range(Kf.shape[1]) if m is None or m[b, i, j]]
            top = max(scores[j] for j in allowed)
            weights = {j: math.exp(scores[j] - top) for j in allowed}
            total = sum(weights.values())
            flat_out[b, i] = sum(w / total * Vf[b, j] for j, w in weights.items())
    return out


def _rope_loop(x, positions, theta):
    """Rotate each adjacent pair (2i, 2i+1) by position * theta^(-2i/d), one scalar at a time."""
    d = x.shape[-1]
    out = x.clone().double()
    flat, pos = out.reshape(-1, x.shape[-2], d), positions.expand(x.shape[:-1]).reshape(-1, x.shape[-2])
    for b in range(flat.shape[0]):
        for t in range(flat.shape[1]):
            p = pos[b, t].item()
            for i in range(d // 2):
                angle = p * theta ** (-2 * i / d)
                a, c = flat[b, t, 2 * i].item(), flat[b, t, 2 * i + 1].item()
                flat[b, t, 2 * i] = a * math.cos(angle) - c * math.sin(angle)
                flat[b, t, 2 * i + 1] = a * math.sin(angle) + c * math.cos(angle)
    return out


def test_sdpa_matches_loop_reference_and_builtin():
    torch.manual_seed(0)
    Q, K, V = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    mask = torch.rand(5, 7) > 0.4
    mask[:, 0] = True  # every query sees something
    ours = scaled_dot_product_attention(Q, K, V, mask)
    torch.testing.assert_close(ours.double(), _attention_loop(Q, K, V, mask), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scaled_dot_product_attention(Q, K, V),
                               F.scaled_dot_product_attention(Q, K, V), rtol=1e-5, atol=1e-6)


def test_fully_masked_rows_stay_finite():
    Q, K, V = torch.randn(1, 3, 4), torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out = scaled_dot_product_attention(Q, K, V, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, [0, 2]], scaled_dot_product_attention(Q, K, V)[:, [0, 2]])


def test_causal_mask_is_bottom_right_aligned():
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_rope_matches_loop_reference():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8, theta=10000.0, max_seq_len=16)
    x = torch.randn(2, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 3, 9, 15, 2]])
    torch.testing.assert_close(rope(x, positions).double(), _rope_loop(x, positions, 10000.0), rtol=1e-5, atol=1e-5)
    # shared positions (T,) broadcast over every row, and heads via (B, 1, T)
    xh = torch.randn(2, 3, 5, 8)
    torch.testing.assert_close(rope(xh, torch.arange(5)), rope(xh, torch.arange(5).expand(2, 1, 5)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_rope_complex_fast_path_equals_real_formula_forward_and_backward(dtype):
    from cs336_basics.model.positions import rotate_pairs

    torch.manual_seed(0)
    rope = RotaryEmbedding(8, theta=100.0)
    # q and k as strided views of a fused (B, T, 3, H, D) projection, plus an odd-offset slice
    qkv = torch.randn(2, 6, 3, 2, 8, dtype=dtype, requires_grad=True)
    wide = torch.randn(2, 6, 9, dtype=dtype, requires_grad=True)
    positions = torch.tensor([[3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5]]).unsqueeze(1)  # (B, 1, T)
    for x in (qkv[:, :, 1].transpose(1, 2), wide[..., 1:].unsqueeze(1)):
        g = torch.randn_like(x)
        fast = rope(x, positions)
        grad_fast = torch.autograd.grad(fast, x, g)[0]
        cos, sin = rope.cos_sin(positions)
        slow = rotate_pairs(x.float(), cos, sin).to(dtype)
        grad_slow = torch.autograd.grad(slow, x, g)[0]
        assert fast.dtype == dtype and fast.shape == x.shape
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
        torch.testing.assert_close(fast, slow, rtol=tol, atol=tol)
        torch.testing.assert_close(grad_fast, grad_slow, rtol=tol, atol=tol)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, theta=500.0)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    rope.inv_freq = rope.inv_freq.double()

    def score(pq, pk):
        return (rope(q.view(1, 16), torch.tensor([pq])) @ rope(k.view(1, 16), torch.tensor([pk])).T).item()

    assert score(5, 2) == pytest.approx(score(105, 102), rel=1e-9)
    assert score(5, 2) != pytest.approx(score(5, 3), rel=1e-3)


def test_sinusoidal_matches_definition():
    d = 10
    enc = SinusoidalPositionEmbedding(d)
    positions = torch.arange(7)
    table = enc(torch.zeros(7, d), positions)
    for p in range(7):
        for i in range(0, d, 2):
            angle = p / 10000 ** (i / d)
            assert table[p, i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[p, i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def _separate_projection_mha(x, wq, wk, wv, wo, num_heads, rope=None, positions=None):
    """Multi-head attention from separate q/k/v matrices, one head at a time."""
    T, d = x.shape[-2], x.shape[-1]
    dh = d // num_heads
    heads = []
    for h in range(num_heads):
        rows = slice(h * dh, (h + 1) * dh)
        q, k, v = x @ wq[rows].T, x @ wk[rows].T, x @ wv[rows].T  # (..., T, dh)
        if rope is not None:
            q, k = rope(q, positions), rope(k, positions)
        heads.append(_attention_loop(q, k, v, causal_mask(T, T)).float())
    return torch.cat(heads, dim=-1) @ wo.T


@pytest.mark.parametrize("use_rope", [False, True])
def test_fused_qkv_layout_maps_separate_weights_by_concatenation(use_rope):
    torch.manual_seed(0)
    d, H = 12, 3
    wq, wk, wv, wo = (torch.randn(d, d) / 4 for _ in range(4))
    rope = RotaryEmbedding(d // H, theta=100.0) if use_rope else None
    mha = MultiHeadSelfAttention(d, H, rotary=rope)
    mha.load_state_dict({"qkv_proj.weight": torch.cat([wq, wk, wv]), "output_proj.weight": wo})
    x = torch.randn(2, 6, d)
    positions = torch.arange(6)
    expected = _separate_projection_mha(x, wq, wk, wv, wo, H, rope, positions)
    torch.testing.assert_close(mha(x, positions), expected, rtol=1e-4, atol=1e-5)


def test_attention_never_looks_ahead():
    torch.manual_seed(0)
    mha = MultiHeadSelfAttention(16, 4, rotary=RotaryEmbedding(4))
    x = torch.randn(1, 10, 16)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 16)
    torch.testing.assert_close(mha(x)[:, :6], mha(y)[:, :6])
    assert not torch.allclose(mha(x)[:, 6:], mha(y)[:, 6:])


@pytest.mark.parametrize("masked", [False, True])
def test_reference_and_sdpa_kernels_agree_forward_and_backward(masked):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, requires_grad=True) for _ in range(3))
    mask = None
    if masked:
        mask = causal_mask(9, 9) & (torch.rand(2, 1, 1, 9) > 0.3)
        mask = mask | torch.eye(9, dtype=torch.bool)
    outs, grads = [], []
    for kernel in (ReferenceAttention(), SDPAAttention()):
        out = kernel(q, k, v, mask, mask is None)
        outs.append(out)
        grads.append(torch.autograd.grad(out.pow(2).sum(), (q, k, v)))
    assert (outs[0] - outs[1]).abs().max().item() < 1e-5
    for g_ref, g_fast in zip(*grads):
        assert (g_ref - g_fast).abs().max().item() < 1e-5


def test_kernels_agree_on_decoding_shapes():
    """One or a few queries over a longer cached key set: causality aligned bottom-right in both."""
    torch.manual_seed(0)
    for tq in (1, 3):
        q, k, v = torch.randn(2, 4, tq, 8), torch.randn(2, 4, 11, 8), torch.randn(2, 4, 11, 8)
        a = ReferenceAttention()(q, k, v, None, True)
        b = SDPAAttention()(q, k, v, None, True)
        assert (a - b).abs().max().item() < 1e-5


@pytest.mark.parametrize("masked", [False, True])
def test_masked_softmax_gradient_is_exact(masked):
    from cs336_basics.model.attention import MaskedSoftmax
    from cs336_basics.model.layers import softmax

    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(5, 6) > 0.3) | torch.eye(5, 6, dtype=torch.bool) if masked else None
    assert torch.autograd.gradcheck(lambda t: MaskedSoftmax.apply(t.clone(), mask), (x,))
    expected = softmax(x if mask is None else x.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(MaskedSoftmax.apply(x.detach().clone(), mask), expected)
