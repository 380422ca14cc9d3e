"""TransformerLM: presets, variants, KV cache, padding, causality, fast path, MoE routing, state dicts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.errors import UserError
from cs336_basics.model import (
    Embedding,
    MoEFFN,
    ModelConfig,
    TransformerLM,
    causal_mask,
    preset,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


# the from-scratch attention by default; test_sdpa_fast_path_equals_reference covers the fused kernel
TINY = dict(vocab_size=64, context_length=24, d_model=32, num_layers=2, num_heads=4, attention="reference")

VARIANTS = {
    "gpt2": preset("gpt2", **TINY, attn_pdrop=0.0, residual_pdrop=0.0),
    "llama": preset("llama", **TINY),
    "sinusoidal": preset("llama", **TINY, position="sinusoidal"),
    "nope": preset("llama", **TINY, position="none"),
    "postnorm": preset("llama", **TINY, block="postnorm"),
    "parallel": preset("llama", **TINY, block="parallel"),
    "nonorm": preset("llama", **TINY, norm="none"),
    "layernorm": preset("llama", **TINY, norm="layernorm"),
    "silu": preset("llama", **TINY, ffn="silu"),
    "moe": preset("llama", **TINY, ffn="moe", num_experts=4, moe_top_k=2),
    "tied": preset("llama", **TINY, tie_embeddings=True),
}


def _model(cfg: ModelConfig, seed: int = 0) -> TransformerLM:
    return TransformerLM(cfg, seed=seed).eval()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forward_shapes_with_extra_batch_dims(name):
    model = _model(VARIANTS[name])
    ids = torch.randint(0, 64, (2, 3, 10))
    logits = model(ids)
    assert logits.shape == (2, 3, 10, 64)
    torch.testing.assert_close(logits[1, 2], model(ids[1, 2]), rtol=1e-5, atol=1e-5)
    assert model.aux_loss.shape == ()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_causal_perturbing_future_tokens_leaves_earlier_logits(name):
    model = _model(VARIANTS[name])
    ids = torch.randint(0, 64, (2, 12))
    other = ids.clone()
    other[:, 7:] = (other[:, 7:] + 1) % 64
    torch.testing.assert_close(model(ids)[:, :7], model(other)[:, :7])
    assert not torch.allclose(model(ids)[:, 7:], model(other)[:, 7:])


def _decode(model, ids, prefill):
    cache = model.init_cache(ids.shape[0], ids.shape[1])
    outs = [model(ids[:, :prefill], cache=cache)]
    for t in range(prefill, ids.shape[1]):
        outs.append(model(ids[:, t:t + 1], cache=cache))
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("name", list(VARIANTS))
def test_kv_cache_prefill_then_decode_matches_full_forward(name):
    model = _model(VARIANTS[name])
    ids = torch.randint(0, 64, (3, 16))
    with torch.no_grad():
        full = model(ids)
        for prefill in (1, 7):
            cached, cache = _decode(model, ids, prefill)
            assert (cached - full).abs().max().item() < 1e-5
            assert len(cache) == 16
            assert cache.next_position.tolist() == [16, 16, 16]


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_left_padded_batch_matches_unpadded_rows(name):
    model = _model(VARIANTS[name])
    torch.manual_seed(1)
    rows = [torch.randint(0, 64, (n,)) for n in (9, 5, 7)]
    width = 9
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.bool)
    positions = torch.zeros(3, width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = row
        mask[r, width - len(row):] = True
        positions[r, width - len(row):] = torch.arange(len(row))
    nxt = torch.randint(0, 64, (3, 2))
    with torch.no_grad():
        padded = model(ids, positions=positions, attention_mask=mask)
        cache = model.init_cache(3, 16)
        model(ids, cache=cache, positions=positions, attention_mask=mask)
        step1 = model(nxt[:, :1], cache=cache)  # positions continue per row, mask extends
        step2 = model(nxt[:, 1:], cache=cache)
        for r, row in enumerate(rows):
            alone = model(torch.cat([row, nxt[r]]).unsqueeze(0))[0]
            n = len(row)
            assert (padded[r, width - n:] - alone[:n]).abs().max().item() < 1e-5
            assert (step1[r, 0] - alone[n]).abs().max().item() < 1e-5
            assert (step2[r, 0] - alone[n + 1]).abs().max().item() < 1e-5
        assert torch.isfinite(padded).all()


def test_sliding_window_cache_equals_banded_attention():
    """A full cache drops its oldest entries: token t then sees exactly tokens t-W+1..t (RoPE keeps offsets)."""
    cfg = VARIANTS["llama"]
    model = _model(cfg)
    W, T = 6, 20
    ids = torch.randint(0, 64, (2, T))
    with torch.no_grad():
        cache = model.init_cache(2, W)
        streamed = torch.cat([model(ids[:, t:t + 1], cache=cache) for t in range(T)], dim=1)
        assert len(cache) == W and cache.dropped == T - W
        band = causal_mask(T, T) & ~causal_mask(T, T).tril(-W)  # (T, T) keys i-W+1..i
        x = model.token_embeddings(ids)
        positions = torch.arange(T)
        for layer in model.layers:
            x = layer(x, positions, band)
        reference = model.lm_head(model.ln_final(x))
    assert (streamed - reference).abs().max().item() < 1e-5


def test_learned_positions_refuse_to_overflow():
    model = _model(VARIANTS["gpt2"])
    with pytest.raises(UserError, match="context_length"):
        model(torch.zeros(1, 25, dtype=torch.long))
    cache = model.init_cache(1, 30)
    model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(UserError, match="context_length"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    small = model.init_cache(1, 4)
    model(torch.zeros(1, 4, dtype=torch.long), cache=small)
    with pytest.raises(UserError, match="full"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=small)


def test_cache_batch_mismatch_is_a_user_error():
    model = _model(VARIANTS["llama"])
    cache = model.init_cache(2, 8)
    with pytest.raises(UserError, match="batch size"):
        model(torch.zeros(3, 2, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("name", ["gpt2", "llama", "moe"])
def test_sdpa_fast_path_equals_reference(name):
    cfg = VARIANTS[name]
    ref = _model(dataclasses.replace(cfg, attention="reference"))
    fast = _model(dataclasses.replace(cfg, attention="sdpa"))
    fast.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 64, (2, 16))
    assert (ref(ids) - fast(ids)).abs().max().item() < 1e-5
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, :5] = False
    assert (ref(ids, attention_mask=mask) - fast(ids, attention_mask=mask)).abs().max().item() < 1e-5
    with torch.no_grad():
        a, _ = _decode(ref, ids, 4)
        b, _ = _decode(fast, ids, 4)
    assert (a - b).abs().max().item() < 1e-5


def test_seed_reproducible_and_state_dict_roundtrip():
    cfg = VARIANTS["gpt2"]
    a, b, c = TransformerLM(cfg, seed=3), TransformerLM(cfg, seed=3), TransformerLM(cfg, seed=4)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    c.load_state_dict(a.state_dict())
    ids = torch.randint(0, 64, (2, 8))
    torch.testing.assert_close(a.eval()(ids), c.eval()(ids))


def test_state_dict_names_follow_the_course():
    keys = set(_model(VARIANTS["llama"]).state_dict())
    for key in ("token_embeddings.weight", "layers.0.attn.qkv_proj.weight", "layers.0.attn.output_proj.weight",
                "layers.1.ln1.weight", "layers.1.ffn.w1.weight", "layers.1.ffn.w2.weight", "layers.1.ffn.w3.weight",
                "layers.1.ln2.weight", "ln_final.weight", "lm_head.weight"):
        assert key in keys
    assert "position_embeddings.weight" in _model(VARIANTS["gpt2"]).state_dict()
    assert _model(VARIANTS["llama"]).state_dict()["layers.0.attn.qkv_proj.weight"].shape == (96, 32)


def test_tied_embeddings_share_one_matrix():
    model = _model(VARIANTS["tied"])
    assert "lm_head.weight" not in model.state_dict()
    assert model.lm_head.weight is model.token_embeddings.weight
    ids = torch.randint(0, 64, (1, 5))
    model(ids).sum().backward()
    assert model.token_embeddings.weight.grad is not None
    embeddings = [m for m in model.modules() if isinstance(m, Embedding)]
    assert len(embeddings) == 1


def _moe_loop(moe: MoEFFN, x: torch.Tensor) -> torch.Tensor:
    """Each token on its own: softmax router, top-k experts, renormalised weights."""
    out = torch.zeros_like(x)
    for i, token in enumerate(x):
        probs = torch.softmax(token @ moe.router.weight.T, dim=-1)
        chosen = sorted(range(moe.num_experts), key=lambda e: -probs[e].item())[: moe.top_k]
        total = sum(probs[e] for e in chosen)
        out[i] = sum(probs[e] / total * moe.experts[e](token) for e in chosen)
    return out


def test_moe_routing_matches_per_token_reference_and_aux_loss():
    torch.manual_seed(0)
    moe = MoEFFN(16, 32, num_experts=5, top_k=2)
    x = torch.randn(40, 16)
    torch.testing.assert_close(moe(x), _moe_loop(moe, x), rtol=1e-5, atol=1e-5)
    probs = torch.softmax(x @ moe.router.weight.T, dim=-1)
    top = probs.topk(2, dim=-1).indices
    fraction = torch.bincount(top.flatten(), minlength=5).float() / top.numel()
    expected = 5 * (fraction * probs.mean(0)).sum()
    torch.testing.assert_close(moe.aux_loss, expected)
    # the model reports the sum over layers times the coefficient
    model = _model(VARIANTS["moe"])
    model(torch.randint(0, 64, (2, 8)))
    per_layer = torch.stack([layer.ffn.aux_loss for layer in model.layers]).sum()
    torch.testing.assert_close(model.aux_loss, VARIANTS["moe"].moe_aux_loss_coef * per_layer)
    assert model.aux_loss.item() > 0


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_overfits_a_tiny_batch(name):
    torch.manual_seed(0)
    model = TransformerLM(VARIANTS[name], seed=0).train()
    ids = torch.randint(0, 64, (4, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1)) + model.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_dropout_only_in_training_mode():
    cfg = preset("gpt2", **TINY)  # attn_pdrop = residual_pdrop = 0.1
    model = TransformerLM(cfg, seed=0)
    ids = torch.randint(0, 64, (2, 8))
    model.train()
    assert not torch.allclose(model(ids), model(ids))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))
    # where the handout puts it: the embedding sum, the attention probabilities, each sub-layer output
    assert isinstance(model.embed_dropout, torch.nn.Dropout) and model.embed_dropout.p == 0.1
    for layer in model.layers:
        assert isinstance(layer.resid_dropout, torch.nn.Dropout) and layer.resid_dropout.p == 0.1
        assert layer.attn.kernel.attn_dropout.p == 0.1
    llama = TransformerLM(preset("llama", **TINY))
    assert not any(isinstance(m, torch.nn.Dropout) for m in llama.modules())


def test_attention_dropout_drops_probabilities_only_in_training():
    from cs336_basics.model import ReferenceAttention

    torch.manual_seed(0)
    kernel = ReferenceAttention(attn_pdrop=0.5).train()
    q, k = torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8)  # uniform attention over visible keys
    v = torch.eye(4).view(1, 1, 4, 4)
    out = kernel(q, k, v, None, True)[0, 0]  # row i = kept (scaled) probabilities of keys 0..i
    assert set(out[3].tolist()) <= {0.0, 0.5}  # 1/4 probabilities, dropped or scaled by 1/(1-p)
    kernel.eval()
    torch.testing.assert_close(kernel(q, k, v, None, True)[0, 0, 3], torch.full((4,), 0.25))


@pytest.mark.parametrize("attention", ["reference", "sdpa", "auto"])
def test_bf16_autocast_runs_and_stays_close(attention):
    model = _model(dataclasses.replace(VARIANTS["llama"], attention=attention))
    ids = torch.randint(0, 64, (2, 12))
    full = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(ids)
        with torch.no_grad():
            cached, _ = _decode(model, ids, 5)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    assert (low.float() - full).abs().max().item() < 0.15
    assert (cached.float() - full).abs().max().item() < 0.15


def test_bad_configs_cannot_be_built_or_loaded():
    """ModelConfig validates itself: a bad one is never constructed, and load_config reports it in one line."""
    from cs336_basics.config import load_config

    for kwargs, fragment in ((dict(num_heads=5), "divisible"), (dict(vocab_size=0), "vocab_size"),
                             (dict(d_model=12, num_heads=4), "even head"), (dict(attn_pdrop=1.5), "attn_pdrop"),
                             (dict(rope_theta=0.0), "rope_theta"), (dict(norm_eps=float("nan")), "norm_eps"),
                             (dict(ffn="moe", num_experts=2, moe_top_k=3), "moe_top_k"),
                             (dict(block="nonorm"), "block")):
        with pytest.raises(ValueError, match=fragment):
            preset("llama", **{**TINY, **kwargs})
        overrides = [f"model.{k}={v}" for k, v in {**TINY, **kwargs}.items()]
        with pytest.raises(UserError, match=fragment):
            load_config(None, overrides)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """Inductor on a tiny model with our attention (its custom autograd softmax included); the SDPA path is
    PyTorch's own. Most of the time is the compiler's one-off start-up."""
    model = _model(VARIANTS["llama"])
    compiled = torch.compile(model)
    ids = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(compiled(ids), model(ids), rtol=1e-4, atol=1e-4)
    model.train()
    loss = F.cross_entropy(compiled(ids).reshape(-1, 64), ids.reshape(-1))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


_HYPO_MODELS: dict[str, TransformerLM] = {}


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(["gpt2", "llama", "nope", "parallel"]),
       chunks=st.lists(st.integers(1, 6), min_size=1, max_size=4))  # at most 24 tokens: the cache never slides
def test_kv_cache_any_chunking_matches_full_forward(name, chunks):
    """Feeding the sequence in arbitrary chunks through the cache gives the full forward's logits."""
    model = _HYPO_MODELS.setdefault(name, _model(VARIANTS[name]))
    total = sum(chunks)
    ids = torch.randint(0, 64, (2, total), generator=torch.Generator().manual_seed(total))
    with torch.no_grad():
        full = model(ids)
        cache = model.init_cache(2, 24)
        outs, start = [], 0
        for size in chunks:
            outs.append(model(ids[:, start:start + size], cache=cache))
            start += size
    assert (torch.cat(outs, dim=1) - full).abs().max().item() < 1e-5


def test_attention_module_handles_extra_batch_dims():
    from cs336_basics.model import MultiHeadSelfAttention, RotaryEmbedding

    mha = MultiHeadSelfAttention(16, 4, rotary=RotaryEmbedding(4))
    x = torch.randn(2, 3, 7, 16)
    out = mha(x)
    assert out.shape == (2, 3, 7, 16)
    torch.testing.assert_close(out[1, 2], mha(x[1, 2]))


def test_converting_the_model_keeps_position_frequencies_in_float32():
    for name in ("llama", "sinusoidal"):
        model = TransformerLM(VARIANTS[name], seed=0).to(torch.bfloat16)
        buffers = [b for n, b in model.named_buffers() if n.endswith("inv_freq")]
        assert buffers and all(b.dtype == torch.float32 for b in buffers)
        assert model.token_embeddings.weight.dtype == torch.bfloat16
        ids = torch.randint(0, 64, (1, 8))
        assert model(ids).dtype == torch.bfloat16
        ref = TransformerLM(VARIANTS[name], seed=0)
        assert (model(ids).float() - ref(ids)).abs().max().item() < 0.5


def _functional_reference(sd: dict, cfg: ModelConfig, ids: torch.Tensor) -> torch.Tensor:
    """The published architectures written with PyTorch builtins straight from a state dict (test-only)."""
    d, H = cfg.d_model, cfg.num_heads
    dh = d // H
    T = ids.shape[-1]
    x = F.embedding(ids, sd["token_embeddings.weight"])
    if cfg.position == "learned":
        x = x + sd["position_embeddings.weight"][:T]
    inv = cfg.rope_theta ** (-torch.arange(0, dh, 2).double() / dh)
    ang = torch.arange(T).double()[:, None] * inv  # (T, dh/2)
    cos, sin = ang.cos().float(), ang.sin().float()

    def rope(t):  # (B, H, T, dh), pairs (2i, 2i+1)
        t1, t2 = t[..., 0::2], t[..., 1::2]
        return torch.stack((t1 * cos - t2 * sin, t1 * sin + t2 * cos), -1).flatten(-2)

    def rms(t, w):
        return F.rms_norm(t, (d,), w, eps=cfg.norm_eps)

    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        h = rms(x, sd[p + "ln1.weight"])
        wq, wk, wv = sd[p + "attn.qkv_proj.weight"].split(d)
        q, k, v = (F.linear(h, w).view(*h.shape[:-1], H, dh).transpose(1, 2) for w in (wq, wk, wv))
        if cfg.position == "rope":
            q, k = rope(q), rope(k)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(h.shape)
        x = x + F.linear(a, sd[p + "attn.output_proj.weight"])
        h = rms(x, sd[p + "ln2.weight"])
        if cfg.ffn == "gelu":
            f = F.linear(F.gelu(F.linear(h, sd[p + "ffn.w1.weight"])), sd[p + "ffn.w2.weight"])
        else:
            gate = F.silu(F.linear(h, sd[p + "ffn.w1.weight"])) * F.linear(h, sd[p + "ffn.w3.weight"])
            f = F.linear(gate, sd[p + "ffn.w2.weight"])
        x = x + f
    return F.linear(rms(x, sd["ln_final.weight"]), sd["lm_head.weight"])


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_reference_architectures_match_a_builtin_implementation(name):
    cfg = dataclasses.replace(preset(name, **TINY), attn_pdrop=0.0, residual_pdrop=0.0)
    model = _model(cfg)
    if name == "gpt2":
        assert cfg.ffn == "gelu" and cfg.position == "learned" and model.layers[0].ffn.w1.weight.shape == (128, 32)
    else:
        assert cfg.ffn == "swiglu" and cfg.position == "rope" and model.layers[0].ffn.w1.weight.shape == (64, 32)
    ids = torch.randint(0, 64, (3, 20))
    expected = _functional_reference(model.state_dict(), cfg, ids)
    assert (model(ids) - expected).abs().max().item() < 1e-5
