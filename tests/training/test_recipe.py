"""The modern-recipe options against slow references: Muon and its Newton-Schulz step, QK-norm, ReLU^2, zero_out.

Newton-Schulz is checked against the SVD: each iteration maps every singular
value ``s`` through the quintic and keeps the singular vectors, so the result
must equal ``U diag(p^k(s / ||G||_F)) V^T`` (an exact identity, up to float32
rounding) and its singular values must fall in the quintic's known band around
1. The Muon optimizer is checked against a per-tensor loop written here with
the SVD form, and AdamW's half against ``torch.optim.AdamW``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cs336_basics.config import OptimizerConfig, RunConfig, apply_overrides
from cs336_basics.config.training import OPTIMIZER_NAMES, OPTIMIZERS
from cs336_basics.errors import ConfigError
from cs336_basics.model import TransformerLM, preset
from cs336_basics.model.layers import RMSNorm
from cs336_basics.training.muon import NS_COEFFICIENTS, Muon, build_muon, hidden_matrix_ids, newton_schulz
from cs336_basics.training.optimizer import set_lr
from cs336_basics.training.step import OPTIMIZER_BUILDERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4)


def _quintic_iterated(s: torch.Tensor, steps: int) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def _ns_by_svd(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """What Newton-Schulz computes, via the SVD: the quintic applied to the normalised singular values."""
    u, s, vh = torch.linalg.svd(g.double(), full_matrices=False)
    return (u * _quintic_iterated(s / s.norm(), steps)) @ vh


def _conditioned(rows: int, cols: int, smallest: float, seed: int) -> torch.Tensor:
    """A random matrix whose singular values span [smallest, 1] (relative to the largest)."""
    gen = torch.Generator().manual_seed(seed)
    n = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, n, generator=gen, dtype=torch.float64))
    s = torch.logspace(0, float(np.log10(smallest)), n, dtype=torch.float64)
    return (u * s) @ v.T


# ----------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(48, 48), (96, 24), (24, 96), (3, 40, 20)])
def test_newton_schulz_is_the_quintic_on_the_singular_values(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    x = newton_schulz(g)
    assert x.dtype == torch.float32 and x.shape == g.shape
    expected = torch.stack([_ns_by_svd(m) for m in g.reshape(-1, *shape[-2:])]).reshape(shape)
    torch.testing.assert_close(x.double(), expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("rows, cols", [(64, 64), (128, 32), (32, 128)])
def test_newton_schulz_approximates_the_svd_orthogonalisation_within_its_band(rows, cols):
    g = _conditioned(rows, cols, smallest=0.05, seed=rows + cols)
    x = newton_schulz(g).double()
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    # singular values: not 1 (the coefficients trade exactness for speed) but inside the quintic's band
    s_x = torch.linalg.svdvals(x)
    assert s_x.min() > 0.68 and s_x.max() < 1.21
    assert (s_x - 1).abs().max() > 0.05  # genuinely approximate: an exact U V^T would not pass this
    # singular vectors: X V = U diag(s') column by column, so X is U V^T up to the band
    xv = x @ vh.T  # (rows, n)
    cosines = (xv * u).sum(0) / xv.norm(dim=0)
    assert cosines.min() > 1 - 1e-4
    err = torch.linalg.matrix_norm(x - u @ vh, ord=2)
    assert err <= (s_x - 1).abs().max() + 1e-4


def test_newton_schulz_band_holds_over_the_relative_singular_value_range():
    s = torch.logspace(-2, 0, 2001, dtype=torch.float64)
    out = _quintic_iterated(s, 5)
    assert out.min() > 0.68 and out.max() < 1.21
    assert _quintic_iterated(torch.tensor([1e-4], dtype=torch.float64), 5).item() < 0.2  # tiny ones stay small


# ----------------------------------------------------------------------------- Muon


def _reference_muon_step(p, grad, buf, lr, momentum, nesterov, wd):
    """One Muon update of one matrix, written per tensor in float64 with the SVD form of Newton-Schulz."""
    buf = momentum * buf + (1 - momentum) * grad
    update = (1 - momentum) * grad + momentum * buf if nesterov else buf
    scale = max(1.0, p.shape[0] / p.shape[1]) ** 0.5
    return p * (1 - lr * wd) - lr * scale * _ns_by_svd(update), buf


def _random_grads(model, step):
    gen = torch.Generator().manual_seed(100 + step)
    return {name: torch.randn(p.shape, generator=gen) for name, p in model.named_parameters()}


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_matches_a_per_tensor_reference_and_adamw_matches_torch(nesterov):
    cfg = OptimizerConfig(name="muon", lr_max=1e-2, muon_lr=0.05, muon_momentum=0.9, muon_nesterov=nesterov,
                          muon_weight_decay=0.1, weight_decay=0.1, beta1=0.9, beta2=0.95)
    model = TransformerLM(preset("llama", **TINY), seed=0)
    hidden = hidden_matrix_ids(model)
    names = {id(p): n for n, p in model.named_parameters()}
    ref = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    bufs = {n: torch.zeros_like(t) for n, t in ref.items()}
    adam_twin = TransformerLM(preset("llama", **TINY), seed=0)
    twin_params = dict(adam_twin.named_parameters())
    decayed = [twin_params[names[id(p)]] for p in model.parameters() if id(p) not in hidden and p.ndim == 2
               and "embeddings" not in names[id(p)]]
    kept = [twin_params[names[id(p)]] for p in model.parameters() if id(p) not in hidden and p.ndim < 2
            or "embeddings" in names[id(p)]]
    torch_adam = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1}, {"params": kept, "weight_decay": 0.0}],
                                   lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    opt = build_muon(model, cfg)
    for step in range(3):
        grads = _random_grads(model, step)
        lr = cfg.lr_max * (0.5 if step == 2 else 1.0)  # a schedule step: both parts must follow it
        set_lr(opt, lr)
        for g_ in torch_adam.param_groups:
            g_["lr"] = lr
        for name, p in model.named_parameters():
            p.grad = grads[name].clone()
            twin_params[name].grad = grads[name].clone()
        opt.step()
        torch_adam.step()
        for p in model.parameters():
            if id(p) in hidden:
                name = names[id(p)]
                ref[name], bufs[name] = _reference_muon_step(ref[name], grads[name].double(), bufs[name],
                                                             lr * cfg.muon_lr / cfg.lr_max, 0.9, nesterov, 0.1)
    for name, p in model.named_parameters():
        if id(p) in hidden:
            torch.testing.assert_close(p.detach().double(), ref[name], atol=2e-5, rtol=0, msg=name)
        else:
            torch.testing.assert_close(p.detach(), twin_params[name].detach(), atol=1e-6, rtol=1e-5, msg=name)


def test_muon_takes_the_blocks_matrices_and_leaves_embeddings_head_and_gains_to_adamw():
    model = TransformerLM(preset("llama", **TINY, qk_norm="rmsnorm"), seed=0)
    hidden = hidden_matrix_ids(model)
    muon_names = {n for n, p in model.named_parameters() if id(p) in hidden}
    assert muon_names == {f"layers.{i}.{m}.weight" for i in range(2)
                          for m in ("attn.qkv_proj", "attn.output_proj", "ffn.w1", "ffn.w2", "ffn.w3")}
    opt = build_muon(model, OptimizerConfig(name="muon"))
    groups = {g["muon"]: {id(p) for p in g["params"]} for g in opt.param_groups if g["muon"]}
    assert groups[True] == hidden
    adam_ids = {id(p) for g in opt.param_groups if not g["muon"] for p in g["params"]}
    assert adam_ids == {id(p) for p in model.parameters()} - hidden
    tied = TransformerLM(preset("llama", **TINY, tie_embeddings=True), seed=0)
    assert id(tied.token_embeddings.weight) not in hidden_matrix_ids(tied)
    with pytest.raises(ValueError, match="2-D"):
        Muon([{"params": [torch.nn.Parameter(torch.ones(3))]}], [], lr=1.0, lr_ratio=1.0)


def test_muon_state_dict_resumes_exactly():
    cfg = OptimizerConfig(name="muon", lr_max=1e-2, muon_lr=0.05)

    def run(model, opt, steps):
        for step in steps:
            grads = _random_grads(model, step)
            for name, p in model.named_parameters():
                p.grad = grads[name]
            opt.step()

    straight = TransformerLM(preset("llama", **TINY), seed=0)
    run(straight, build_muon(straight, cfg), range(5))
    first = TransformerLM(preset("llama", **TINY), seed=0)
    first_opt = build_muon(first, cfg)
    run(first, first_opt, range(3))
    saved_model = {k: v.clone() for k, v in first.state_dict().items()}
    saved_opt = first_opt.state_dict()
    assert {"momentum_buffer", "exp_avg"} <= {k for entry in saved_opt["state"].values() for k in entry}
    resumed = TransformerLM(preset("llama", **TINY), seed=1)
    resumed.load_state_dict(saved_model)
    resumed_opt = build_muon(resumed, cfg)
    resumed_opt.load_state_dict(saved_opt)
    run(resumed, resumed_opt, range(3, 5))
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_optimizer_names_are_checked_and_each_has_a_builder():
    assert set(OPTIMIZER_BUILDERS) == set(OPTIMIZER_NAMES)
    with pytest.raises(ConfigError, match="adamw.*muon"):
        apply_overrides(RunConfig(), ["optimizer.name=sgd"])
    with pytest.raises(ValueError, match="adamw, muon"):
        OptimizerConfig(name="sgd")
    with pytest.raises(ValueError, match="muon_momentum"):
        OptimizerConfig(name="muon", muon_momentum=1.0)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_each_optimizer_builder_reads_the_fields_its_entry_lists(name):
    class Recording:
        """An OptimizerConfig that notes every field read from it."""

        def __init__(self, cfg: OptimizerConfig) -> None:
            self.cfg, self.read = cfg, set()

        def __getattr__(self, field: str):
            self.read.add(field)
            return getattr(self.cfg, field)

    cfg = Recording(OptimizerConfig(name=name))
    OPTIMIZER_BUILDERS[name](TransformerLM(preset("llama", **TINY), seed=0), cfg)
    assert cfg.read == set(OPTIMIZERS[name].reads)
    assert OPTIMIZERS[name].doc and set(OPTIMIZERS[name].reads) <= {f.name for f in dataclasses.fields(OptimizerConfig)}


def test_training_with_muon_resumes_exactly_through_the_loop(tmp_path):
    from cs336_basics.training.loop import train
    from tests.training_fixtures import make_byte_dataset, tiny_config, train_losses

    data = make_byte_dataset(tmp_path / "data", train_chars=20_000, valid_chars=3_000)
    extra = ("optimizer.name=muon", "optimizer.muon_lr=0.02", "optimizer.schedule=wsd")
    straight = train(tiny_config(data, tmp_path, "train.run_name=straight", *extra))
    train(tiny_config(data, tmp_path, "train.run_name=split", "train.stop_at_step=10", *extra))
    second = train(tiny_config(data, tmp_path, "train.run_name=split", *extra), resume="auto")
    assert train_losses(second.run_dir) == train_losses(straight.run_dir)
    losses = train_losses(straight.run_dir)
    assert losses[20] < losses[1] - 0.5  # it learns


# ----------------------------------------------------------------------------- model options


def test_qk_norm_normalises_each_heads_queries_and_keys_before_attention():
    cfg = preset("llama", **TINY, qk_norm="rmsnorm", position="none", attention="reference")
    model = TransformerLM(cfg, seed=0)
    attn = model.layers[0].attn
    seen = {}
    real_kernel = attn.kernel.forward

    def spy(q, k, v, mask, is_causal):
        seen["q"], seen["k"] = q, k
        return real_kernel(q, k, v, mask, is_causal)

    attn.kernel.forward = spy
    with torch.no_grad():
        attn.q_norm.weight.copy_(torch.linspace(0.5, 2.0, cfg.head_size))
        x = torch.randn(2, 8, cfg.d_model)
        attn(x)
        raw = attn.qkv_proj(x).view(2, 8, 3, cfg.num_heads, cfg.head_size).movedim(-4, -2)  # (B, 3, H, T, D)
    q_raw, k_raw = raw[:, 0], raw[:, 1]
    q_ref = q_raw / q_raw.pow(2).mean(-1, keepdim=True).add(cfg.norm_eps).sqrt() * torch.linspace(0.5, 2.0, 8)
    k_ref = k_raw / k_raw.pow(2).mean(-1, keepdim=True).add(cfg.norm_eps).sqrt()
    torch.testing.assert_close(seen["q"], q_ref)
    torch.testing.assert_close(seen["k"], k_ref)
    assert isinstance(attn.k_norm, RMSNorm) and attn.k_norm.weight.shape == (cfg.head_size,)
    plain = TransformerLM(dataclasses.replace(cfg, qk_norm="none"), seed=0)
    assert not any("q_norm" in n for n, _ in plain.named_parameters())


def test_qk_norm_model_decodes_with_a_cache_like_a_full_forward():
    model = TransformerLM(preset("llama", **TINY, qk_norm="rmsnorm"), seed=0).eval()
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        cache = model.init_cache(2)
        steps = [model(ids[:, :8], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(8, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_relu2_ffn_is_w2_relu_squared_with_the_non_gated_width():
    from cs336_basics.model.ffn import ReLU2FFN

    cfg = preset("llama", **TINY, ffn="relu2")
    assert cfg.resolved_d_ff == 4 * cfg.d_model
    model = TransformerLM(cfg, seed=0)
    ffn = model.layers[0].ffn
    assert isinstance(ffn, ReLU2FFN) and ffn.w1.weight.shape == (4 * cfg.d_model, cfg.d_model)
    x = torch.randn(3, 5, cfg.d_model)
    h = x @ ffn.w1.weight.T
    expected = (torch.where(h > 0, h, torch.zeros_like(h)) ** 2) @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected)


@pytest.mark.parametrize("ffn", ["swiglu", "moe"])
def test_zero_out_init_zeroes_residual_writes_and_keeps_every_other_weight(ffn):
    cfg = preset("llama", **TINY, ffn=ffn, num_experts=2, moe_top_k=1)
    handout = TransformerLM(cfg, seed=3)
    zero = TransformerLM(dataclasses.replace(cfg, init="zero_out"), seed=3)
    zeroed = set()
    for (name, a), b in zip(handout.named_parameters(), zero.parameters()):
        if name.endswith(("attn.output_proj.weight", "w2.weight")):
            assert not b.any() and a.any(), name
            zeroed.add(name)
        else:
            assert torch.equal(a, b), name  # the same random draw everywhere else
    assert len(zeroed) == cfg.num_layers * (2 if ffn == "swiglu" else 1 + cfg.num_experts)
    # every block starts as the identity: the logits come from the embeddings alone
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    logits = zero(ids)
    torch.testing.assert_close(logits, zero.lm_head(zero.ln_final(zero.token_embeddings(ids))))
    # and the zeroed matrices still learn
    logits.logsumexp(-1).mean().backward()
    assert zero.layers[0].attn.output_proj.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- WSD


def _wsd_by_hand(t, peak, floor, warmup, total, fraction):
    """Warmup-stable-decay written out: ramp, flat top, straight line down over the last fraction of the run."""
    if t < warmup:
        return peak * t / warmup
    decay_len = max(1, round(fraction * total))
    start = total - decay_len
    if t <= start:
        return peak
    return peak - (peak - floor) * min(t - start, decay_len) / decay_len


@pytest.mark.parametrize("warmup, total, fraction", [(10, 100, 0.2), (0, 37, 0.5), (5, 1000, 0.1), (3, 12, 1.0)])
def test_wsd_schedule_matches_a_hand_written_reference(warmup, total, fraction):
    from cs336_basics.training.schedule import build_schedule

    cfg = OptimizerConfig(lr_max=3e-3, lr_min=3e-4, warmup_iters=warmup, schedule="wsd", wsd_decay_fraction=fraction)
    schedule = build_schedule(cfg, total)
    for t in range(total + 5):
        assert schedule(t) == pytest.approx(_wsd_by_hand(t, 3e-3, 3e-4, warmup, total, fraction), abs=1e-15), t


def test_wsd_under_replanning_stays_flat_until_the_last_plan_decays():
    """The budget re-plans the total; WSD's stable phase does not move with it, unlike the cosine's value."""
    from cs336_basics.training.schedule import build_schedule

    wsd = OptimizerConfig(lr_max=1.0, lr_min=0.1, warmup_iters=10, schedule="wsd", wsd_decay_fraction=0.2)
    cosine = dataclasses.replace(wsd, schedule="cosine")
    plans = [(0, 1000), (100, 600), (200, 800), (300, 500)]  # (from step, planned total)
    for cfg, stays_flat in ((wsd, True), (cosine, False)):
        lrs = []
        for i, (start, total) in enumerate(plans):
            end = plans[i + 1][0] if i + 1 < len(plans) else total
            schedule = build_schedule(cfg, total)
            lrs += [schedule(t) for t in range(start, end)]
        assert (max(lrs[10:400]) == min(lrs[10:400]) == 1.0) is stays_flat
        assert lrs[-1] == pytest.approx(0.1, abs=0.01)
