"""The course adapters map names, masks and weight layouts onto the library correctly.

Every model adapter is checked against a naive functional oracle written here
from the handouts' equations (explicit per-head loops, a complex-number RoPE,
the mask conventions of each year), fed with the course's weight layouts.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cs336_basics.compat import spring2024 as c24
from cs336_basics.compat import spring2025 as c25
from tests.tokenizer.bpe_reference import train_bpe_reference

torch.manual_seed(0)
ATOL = 1e-5


# ----------------------------------------------------------------------------- naive oracles


def rms(x, w, eps=1e-5):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope_naive(x, positions, theta):
    """Rotate adjacent pairs (2i, 2i+1) by angle p * theta^(-2i/d), using complex numbers."""
    d = x.shape[-1]
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double().unsqueeze(-1) * freqs
    out = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles))
    return out.reshape(x.shape).to(x.dtype)


def mha_naive(x, wq, wk, wv, wo, num_heads, theta=None, positions=None):
    """Per-head loop: project, (rotate), causal softmax(QK^T/sqrt(d)) V, concatenate, project out."""
    T, d = x.shape[-2], x.shape[-1]
    dh = d // num_heads
    if positions is None:
        positions = torch.arange(T)
    heads = []
    for h in range(num_heads):
        rows = slice(h * dh, (h + 1) * dh)
        q, k, v = x @ wq[rows].T, x @ wk[rows].T, x @ wv[rows].T
        if theta is not None:
            q, k = rope_naive(q, positions, theta), rope_naive(k, positions, theta)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ v)
    return torch.cat(heads, dim=-1) @ wo.T


def block_naive(x, w, num_heads, style, theta=None, prefix=""):
    a = lambda name: w[f"{prefix}{name}"]  # noqa: E731
    h = rms(x, a("ln1.weight"))
    x = x + mha_naive(h, a("attn.q_proj.weight"), a("attn.k_proj.weight"), a("attn.v_proj.weight"),
                      a("attn.output_proj.weight"), num_heads, theta)
    h = rms(x, a("ln2.weight"))
    if style == "gpt2":
        ffn = F.gelu(h @ a("ffn.w1.weight").T) @ a("ffn.w2.weight").T
    else:
        ffn = (F.silu(h @ a("ffn.w1.weight").T) * (h @ a("ffn.w3.weight").T)) @ a("ffn.w2.weight").T
    return x + ffn


def lm_naive(ids, w, num_layers, num_heads, style, theta=None):
    x = w["token_embeddings.weight"][ids]
    if style == "gpt2":
        x = x + w["position_embeddings.weight"][: ids.shape[-1]]
    for i in range(num_layers):
        x = block_naive(x, w, num_heads, style, theta, prefix=f"layers.{i}.")
    return rms(x, w["ln_final.weight"]) @ w["lm_head.weight"].T


def block_weights(d, d_ff, style, prefix=""):
    w = {f"{prefix}attn.{n}.weight": torch.randn(d, d) / math.sqrt(d) for n in ("q_proj", "k_proj", "v_proj", "output_proj")}
    w[f"{prefix}ln1.weight"] = 1 + 0.1 * torch.randn(d)
    w[f"{prefix}ln2.weight"] = 1 + 0.1 * torch.randn(d)
    w[f"{prefix}ffn.w1.weight"] = torch.randn(d_ff, d) / math.sqrt(d)
    w[f"{prefix}ffn.w2.weight"] = torch.randn(d, d_ff) / math.sqrt(d_ff)
    if style == "llama":
        w[f"{prefix}ffn.w3.weight"] = torch.randn(d_ff, d) / math.sqrt(d)
    return w


def lm_weights(vocab, ctx, d, d_ff, layers, style):
    w = {"token_embeddings.weight": torch.randn(vocab, d), "ln_final.weight": 1 + 0.1 * torch.randn(d),
         "lm_head.weight": torch.randn(vocab, d) / math.sqrt(d)}
    if style == "gpt2":
        w["position_embeddings.weight"] = torch.randn(ctx, d)
    for i in range(layers):
        w.update(block_weights(d, d_ff, style, prefix=f"layers.{i}."))
    return w


# ----------------------------------------------------------------------------- spring 2024


def test_2024_feedforward():
    x = torch.randn(2, 5, 16)
    w = {"w1.weight": torch.randn(32, 16), "w2.weight": torch.randn(16, 32)}
    expected = F.gelu(x @ w["w1.weight"].T) @ w["w2.weight"].T
    torch.testing.assert_close(c24.run_positionwise_feedforward(16, 32, w, x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("lead", [(3,), (2, 4)])
def test_2024_sdpa_takes_k_q_v_and_true_means_masked(lead):
    Q, K, V = torch.randn(*lead, 5, 8), torch.randn(*lead, 5, 8), torch.randn(*lead, 5, 6)
    masked_out = torch.rand(5, 5) > 0.6
    masked_out.fill_diagonal_(False)
    expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=~masked_out)
    out = c24.run_scaled_dot_product_attention(K=K, Q=Q, V=V, mask=masked_out, pdrop=0.0)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    # positional call in the course's order
    torch.testing.assert_close(c24.run_scaled_dot_product_attention(K, Q, V, masked_out), expected, atol=ATOL, rtol=0)


def test_2024_multihead_attention_from_per_head_weights():
    d, h = 16, 4
    x = torch.randn(2, 7, d)
    w = {}
    for name in ("q", "k", "v"):
        for i in range(h):
            w[f"{name}_heads.{i}.weight"] = torch.randn(d // h, d) / math.sqrt(d)
    w["output_proj.weight"] = torch.randn(d, d) / math.sqrt(d)
    cat = lambda n: torch.cat([w[f"{n}_heads.{i}.weight"] for i in range(h)])  # noqa: E731
    expected = mha_naive(x, cat("q"), cat("k"), cat("v"), w["output_proj.weight"], h)
    # the course's test calls it without attn_pdrop
    out = c24.run_multihead_self_attention(d_model=d, num_heads=h, weights=w, in_features=x)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


def test_2024_block_and_lm_match_the_naive_gpt2():
    d, h, d_ff = 16, 2, 64
    w = block_weights(d, d_ff, "gpt2")
    x = torch.randn(2, 6, d)
    out = c24.run_transformer_block(d, h, d_ff, 0.0, 0.0, w, x)
    torch.testing.assert_close(out, block_naive(x, w, h, "gpt2"), atol=ATOL, rtol=0)

    vocab, ctx, layers = 50, 12, 2
    lw = lm_weights(vocab, ctx, d, d_ff, layers, "gpt2")
    for T in (ctx, 5):  # full and truncated input
        ids = torch.randint(0, vocab, (3, T))
        out = c24.run_transformer_lm(vocab, ctx, d, layers, h, d_ff, 0.0, 0.0, lw, ids)
        assert out.shape == (3, T, vocab)
        torch.testing.assert_close(out, lm_naive(ids, lw, layers, h, "gpt2"), atol=1e-4, rtol=0)


def test_2024_rmsnorm_and_gelu():
    x = torch.randn(3, 4, 8)
    w = torch.rand(8)
    torch.testing.assert_close(c24.run_rmsnorm(8, 1e-5, {"weight": w}, x), rms(x, w), atol=1e-6, rtol=0)
    x = torch.tensor([[0.2352, 0.9259, -0.5189], [3.0, -3.0, 0.0]])
    torch.testing.assert_close(c24.run_gelu(x), F.gelu(x), atol=1e-6, rtol=0)
    assert abs(float(c24.run_gelu(torch.tensor(0.2352))) - 0.13946731) < 1e-6  # value from the handout's test


# ----------------------------------------------------------------------------- spring 2025


def test_2025_linear_embedding_swiglu_silu():
    x = torch.randn(2, 3, 8)
    w = torch.randn(5, 8)
    torch.testing.assert_close(c25.run_linear(8, 5, w, x), x @ w.T, atol=ATOL, rtol=0)
    table = torch.randn(10, 4)
    ids = torch.tensor([[1, 9, 0], [3, 3, 7]])
    assert torch.equal(c25.run_embedding(10, 4, table, ids), table[ids])
    w1, w2, w3 = torch.randn(12, 8), torch.randn(8, 12), torch.randn(12, 8)
    expected = (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(c25.run_swiglu(8, 12, w1, w2, w3, x), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(c25.run_silu(x), F.silu(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("lead", [(3,), (2, 4)])
def test_2025_sdpa_true_means_attend(lead):
    Q, K, V = torch.randn(*lead, 5, 8), torch.randn(*lead, 7, 8), torch.randn(*lead, 7, 6)
    attend = torch.rand(*lead, 5, 7) > 0.4
    attend[..., 0] = True
    expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=attend)
    torch.testing.assert_close(c25.run_scaled_dot_product_attention(Q, K, V, attend), expected, atol=ATOL, rtol=0)


def test_2025_multihead_attention_with_and_without_rope():
    d, h, T = 16, 4, 9
    x = torch.randn(2, T, d)
    wq, wk, wv, wo = (torch.randn(d, d) / 4 for _ in range(4))
    torch.testing.assert_close(c25.run_multihead_self_attention(d, h, wq, wk, wv, wo, x),
                               mha_naive(x, wq, wk, wv, wo, h), atol=ATOL, rtol=0)
    positions = torch.arange(T) + 5
    out = c25.run_multihead_self_attention_with_rope(d, h, 64, 10000.0, wq, wk, wv, wo, x, positions)
    torch.testing.assert_close(out, mha_naive(x, wq, wk, wv, wo, h, 10000.0, positions), atol=ATOL, rtol=0)
    out = c25.run_multihead_self_attention_with_rope(d, h, 64, 10000.0, wq, wk, wv, wo, x, positions.expand(2, T))
    torch.testing.assert_close(out, mha_naive(x, wq, wk, wv, wo, h, 10000.0, positions), atol=ATOL, rtol=0)


def test_2025_rope_rotates_adjacent_pairs():
    x = torch.randn(2, 6, 8)
    positions = torch.tensor([0, 1, 2, 10, 11, 40])
    torch.testing.assert_close(c25.run_rope(8, 10000.0, 64, x, positions), rope_naive(x, positions, 10000.0),
                               atol=ATOL, rtol=0)
    # position 0 is the identity; the first pair at position 1 turns by exactly 1 radian
    e = torch.zeros(1, 2, 4)
    e[..., 0] = 1.0
    out = c25.run_rope(4, 10000.0, 8, e, torch.tensor([0, 1]))
    torch.testing.assert_close(out[0, 0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(out[0, 1, :2], torch.tensor([math.cos(1.0), math.sin(1.0)]))


def test_2025_block_and_lm_match_the_naive_llama():
    d, h, d_ff, theta = 16, 2, 48, 10000.0
    w = block_weights(d, d_ff, "llama")
    x = torch.randn(2, 6, d)
    out = c25.run_transformer_block(d, h, d_ff, 32, theta, w, x)
    torch.testing.assert_close(out, block_naive(x, w, h, "llama", theta), atol=ATOL, rtol=0)

    vocab, ctx, layers = 50, 12, 2
    lw = lm_weights(vocab, ctx, d, d_ff, layers, "llama")
    for T in (ctx, 4):
        ids = torch.randint(0, vocab, (2, T))
        out = c25.run_transformer_lm(vocab, ctx, d, layers, h, d_ff, theta, lw, ids)
        torch.testing.assert_close(out, lm_naive(ids, lw, layers, h, "llama", theta), atol=1e-4, rtol=0)


def test_2025_rmsnorm_takes_a_bare_tensor():
    x = torch.randn(4, 8)
    w = torch.rand(8)
    torch.testing.assert_close(c25.run_rmsnorm(8, 1e-5, w, x), rms(x, w), atol=1e-6, rtol=0)


def test_weights_are_used_as_given_not_reinitialised():
    torch.manual_seed(1)
    a = c25.run_linear(4, 3, torch.ones(3, 4), torch.ones(1, 4))
    torch.manual_seed(2)
    b = c25.run_linear(4, 3, torch.ones(3, 4), torch.ones(1, 4))
    assert torch.equal(a, b) and torch.equal(a, torch.full((1, 3), 4.0))


def test_wrong_weight_names_fail_loudly():
    with pytest.raises(Exception):
        c24.run_positionwise_feedforward(4, 8, {"w1.weight": torch.zeros(8, 4)}, torch.zeros(1, 4))


# ----------------------------------------------------------------------------- shared adapters


@pytest.mark.parametrize("mod", [c24, c25])
def test_shared_math(mod):
    x = torch.randn(4, 7) * 50
    torch.testing.assert_close(mod.run_softmax(x, dim=-1), torch.softmax(x, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(mod.run_softmax(x, dim=0), torch.softmax(x, 0), atol=1e-6, rtol=0)
    targets = torch.randint(0, 7, (4,))
    torch.testing.assert_close(mod.run_cross_entropy(x, targets), F.cross_entropy(x, targets), atol=1e-5, rtol=0)
    # the cosine schedule at hand-computed points (Tw=2, Tc=6, max 1, min 0.1)
    lr = lambda t: mod.run_get_lr_cosine_schedule(t, 1.0, 0.1, 2, 6)  # noqa: E731
    assert lr(0) == 0.0 and lr(1) == pytest.approx(0.5) and lr(2) == pytest.approx(1.0)
    assert lr(4) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi / 2)) * 0.9)
    assert lr(6) == pytest.approx(0.1) and lr(100) == pytest.approx(0.1)


@pytest.mark.parametrize("mod", [c24, c25])
def test_shared_gradient_clipping_matches_torch(mod):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 5) * 3) for _ in range(3)]
    frozen = torch.nn.Parameter(torch.randn(3), requires_grad=False)
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for group in (params, ref):
        (sum((p ** 2).sum() for p in group)).backward()
    mod.run_gradient_clipping(params + [frozen], 1.0)
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.grad, r.grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mod", [c24, c25])
def test_shared_adamw_matches_torch(mod):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    ref = torch.nn.Linear(4, 3)
    ref.load_state_dict(model.state_dict())
    kwargs = dict(lr=1e-2, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    opt, ref_opt = mod.get_adamw_cls()(model.parameters(), **kwargs), torch.optim.AdamW(ref.parameters(), **kwargs)
    x = torch.randn(8, 4)
    for _ in range(20):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            (m(x) ** 2).mean().backward()
            o.step()
    for p, r in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, r, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mod", [c24, c25])
def test_shared_get_batch(mod):
    data = np.arange(100)
    starts = set()
    for _ in range(200):
        x, y = mod.run_get_batch(data, 8, 7, "cpu")
        assert x.shape == y.shape == (8, 7) and x.dtype == torch.long
        assert torch.equal(y, x + 1)
        starts.update(x[:, 0].tolist())
    assert starts <= set(range(100 - 7)) and len(starts) > 80  # uniform over every valid window
    with pytest.raises((RuntimeError, AssertionError)):
        mod.run_get_batch(data, 2, 7, "cuda:99")


@pytest.mark.parametrize("mod", [c24, c25])
def test_shared_checkpoint_round_trip(mod, tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = mod.get_adamw_cls()(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    for out in (tmp_path / "ckpt.pt", io.BytesIO()):
        mod.run_save_checkpoint(model, opt, 42, out)
        if isinstance(out, io.BytesIO):
            out.seek(0)
        fresh = torch.nn.Linear(3, 2)
        fresh_opt = mod.get_adamw_cls()(fresh.parameters(), lr=1e-3)
        assert mod.run_load_checkpoint(out, fresh, fresh_opt) == 42
        for p, q in zip(model.parameters(), fresh.parameters()):
            assert torch.equal(p, q)
        assert fresh_opt.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


@pytest.mark.parametrize("mod", [c24, c25])
def test_shared_tokenizer_and_bpe(mod, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("low low low low low lower lower widest widest widest newest newest newest newest newest newest"
                      "<|endoftext|>low lower")
    vocab, merges = mod.run_train_bpe(corpus, 256 + 1 + 6, ["<|endoftext|>"])
    assert len(vocab) == 263 and len(merges) == 6
    assert b"<|endoftext|>" in vocab.values()
    assert (vocab, merges) == train_bpe_reference(corpus.read_bytes(), 263, ["<|endoftext|>"])
    tok = mod.get_tokenizer(vocab, merges, ["<|endoftext|>"])
    text = "the newest<|endoftext|>lowest"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    eot = next(i for i, b in vocab.items() if b == b"<|endoftext|>")
    assert ids.count(eot) == 1  # the special token is one id, never split
