"""Loss, AdamW, schedules, clipping and batch sampling against slow reference implementations."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.training import fused_cross_entropy
from cs336_basics.training.clipping import clip_grad_norm
from cs336_basics.training.data import BatchSampler, get_batch
from cs336_basics.training.loss import cross_entropy, cross_entropy_torch_ops
from cs336_basics.training.optimizer import AdamW, param_groups
from cs336_basics.training.schedule import lr_constant_schedule, lr_cosine_schedule, lr_wsd_schedule
from tests.conftest import require_native

# ----------------------------------------------------------------------------- oracles


def reference_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Textbook definition in float64: -log softmax(z)[y], averaged; slow and obviously right."""
    z = logits.double().reshape(-1, logits.shape[-1])
    y = targets.reshape(-1)
    rows = []
    for i in range(z.shape[0]):
        m = z[i].max()
        rows.append(m + torch.log(torch.exp(z[i] - m).sum()) - z[i, y[i]])
    return torch.stack(rows).mean()


def reference_adamw_step(params, grads, states, lr, betas, eps, wd):
    """Algorithm 2 of Loshchilov & Hutter, one parameter at a time, in float64."""
    b1, b2 = betas
    for p, g, st_ in zip(params, grads, states):
        st_["t"] += 1
        t = st_["t"]
        p *= 1 - lr * wd
        st_["m"] = b1 * st_["m"] + (1 - b1) * g
        st_["v"] = b2 * st_["v"] + (1 - b2) * g * g
        m_hat = st_["m"] / (1 - b1**t)
        v_hat = st_["v"] / (1 - b2**t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("shape", [(7, 11), (2, 3, 13), (2, 2, 2, 5)])
def test_cross_entropy_matches_torch_and_reference(shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g) * 3
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    ours = cross_entropy(logits, targets)
    assert ours.shape == ()
    theirs = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    assert abs(ours.item() - theirs.item()) < 1e-6
    assert abs(ours.item() - reference_cross_entropy(logits, targets).item()) < 1e-6


def test_cross_entropy_gradient_matches_autograd_of_torch():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(4, 9, 17, generator=g) * 4).requires_grad_()
    targets = torch.randint(0, 17, (4, 9), generator=g)
    (cross_entropy(logits, targets) * 2.5).backward()
    ours = logits.grad.clone()
    logits.grad = None
    (F.cross_entropy(logits.reshape(-1, 17), targets.reshape(-1)) * 2.5).backward()
    torch.testing.assert_close(ours, logits.grad, atol=1e-7, rtol=1e-5)


def test_cross_entropy_is_finite_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, 1e4]], requires_grad=True)
    targets = torch.tensor([1, 2, 0])
    loss = cross_entropy(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    expected = F.cross_entropy(logits.detach(), targets)
    assert abs(loss.item() - expected.item()) < 1e-3 * expected.item()  # loss ~ 6667: float32 relative precision
    assert abs(loss.item() - reference_cross_entropy(logits.detach(), targets).item()) < 1e-2


def test_cross_entropy_bf16_logits_give_float32_loss_and_bf16_grad():
    logits = torch.randn(3, 5, 8).bfloat16().requires_grad_()
    targets = torch.randint(0, 8, (3, 5))
    loss = cross_entropy(logits, targets)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    assert abs(loss.item() - reference_cross_entropy(logits.detach().float(), targets).item()) < 1e-5
    upcast = logits.detach().float().requires_grad_()
    F.cross_entropy(upcast.reshape(-1, 8), targets.reshape(-1)).backward()
    torch.testing.assert_close(logits.grad.float(), upcast.grad, atol=1e-3, rtol=1e-2)


def test_cross_entropy_second_backward_through_a_retained_graph_is_an_error_not_a_wrong_gradient():
    logits = torch.randn(4, 6, requires_grad=True)
    loss = cross_entropy_torch_ops(logits, torch.tensor([0, 1, 2, 3]))  # its float32 backward scales in place
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_cross_entropy_kernel_allows_a_second_backward_with_the_same_gradient():
    require_native(fused_cross_entropy.EXTENSION)
    logits = torch.randn(4, 6, requires_grad=True)
    loss = cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward(retain_graph=True)
    first = logits.grad.clone()
    loss.backward()  # the kernel overwrites nothing it saved
    torch.testing.assert_close(logits.grad, 2 * first, rtol=0, atol=0)


def test_cross_entropy_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must agree"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), v=st.integers(2, 12), scale=st.floats(0.01, 1e3), seed=st.integers(0, 2**16))
def test_cross_entropy_property_matches_reference(n, v, scale, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=g) * scale
    targets = torch.randint(0, v, (n,), generator=g)
    ref = reference_cross_entropy(logits, targets).item()
    # the loss is logsumexp minus the target's logit: in float32 each carries a rounding of about eps x |logit|,
    # which the subtraction keeps however small the loss
    cancellation = 4 * torch.finfo(torch.float32).eps * logits.abs().max().item()
    assert abs(cross_entropy(logits, targets).item() - ref) <= 1e-6 * max(1.0, abs(ref)) + cancellation


# ----------------------------------------------------------------------------- AdamW


def _small_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_matches_torch_over_100_steps(wd):
    ours_net, torch_net = _small_net(0), _small_net(0)
    ours = AdamW(ours_net.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd)
    ref = torch.optim.AdamW(torch_net.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd)
    g = torch.Generator().manual_seed(5)
    for step in range(100):
        x, y = torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)
        for net, opt in ((ours_net, ours), (torch_net, ref)):
            lr = 3e-3 * (1 - step / 200)  # schedules change lr between steps
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
    for a, b in zip(ours_net.parameters(), torch_net.parameters()):
        assert (a - b).abs().max().item() < 1e-6


def test_adamw_matches_float64_reference_algorithm():
    torch.manual_seed(3)
    p = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    ref_p = p.detach().numpy().copy()
    opt = AdamW([p], lr=1e-2, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.3)
    state = {"t": 0, "m": np.zeros_like(ref_p), "v": np.zeros_like(ref_p)}
    for _ in range(20):
        grad = torch.randn(5, 4, dtype=torch.float64)
        p.grad = grad.clone()
        opt.step()
        reference_adamw_step([ref_p], [grad.numpy()], [state], 1e-2, (0.8, 0.9), 1e-6, 0.3)
    np.testing.assert_allclose(p.detach().numpy(), ref_p, rtol=1e-12, atol=1e-12)


def test_adamw_rejects_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(2))]
    for kwargs in ({"lr": -1}, {"betas": (1.0, 0.9)}, {"eps": -1}, {"weight_decay": -0.1}):
        with pytest.raises(ValueError):
            AdamW(p, **kwargs)


def test_param_groups_exclude_norms_biases_and_embeddings():
    net = torch.nn.ModuleDict({"emb": torch.nn.Embedding(10, 4), "lin": torch.nn.Linear(4, 4),
                               "norm": torch.nn.LayerNorm(4)})
    groups = param_groups(net, weight_decay=0.1)
    decay = {id(p) for p in groups[0]["params"]}
    keep = {id(p) for p in groups[1]["params"]}
    assert decay == {id(net["lin"].weight)}
    assert keep == {id(net["emb"].weight), id(net["lin"].bias), id(net["norm"].weight), id(net["norm"].bias)}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    all_groups = param_groups(net, weight_decay=0.1, decay_all=True)
    assert len(all_groups) == 1 and len(all_groups[0]["params"]) == 5


def test_param_groups_count_tied_weights_once():
    net = torch.nn.ModuleDict({"emb": torch.nn.Embedding(10, 4), "head": torch.nn.Linear(4, 10, bias=False)})
    net["head"].weight = net["emb"].weight
    groups = param_groups(net, weight_decay=0.1)
    assert sum(len(g["params"]) for g in groups) == 1


# ----------------------------------------------------------------------------- schedules


def test_cosine_schedule_matches_handout_values():
    # the CS336 handout's test values: lr_max 1, lr_min 0.1, warmup 7, cycle 21
    expected = [0, 0.14285714285714285, 0.2857142857142857, 0.42857142857142855, 0.5714285714285714,
                0.7142857142857143, 0.8571428571428571, 1.0, 0.9887175604818206, 0.9554359905560885,
                0.9018241671106134, 0.8305704108364301, 0.7452476826029011, 0.6501344202803414,
                0.55, 0.44986557971965857, 0.3547523173970989, 0.26942958916356996, 0.19817583288938662,
                0.14456400944391146, 0.11128243951817937, 0.1, 0.1, 0.1, 0.1]
    got = [lr_cosine_schedule(t, 1.0, 0.1, 7, 21) for t in range(25)]
    assert got == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(warm=st.integers(0, 50), extra=st.integers(0, 200), t=st.integers(0, 400))
def test_cosine_schedule_properties(warm, extra, t):
    cycle = warm + extra
    lr = lr_cosine_schedule(t, 1e-3, 1e-5, warm, cycle)
    assert 0 <= lr <= 1e-3 + 1e-15
    if t >= warm:
        assert lr >= 1e-5 - 1e-15
        assert lr_cosine_schedule(t + 1, 1e-3, 1e-5, warm, cycle) <= lr + 1e-15  # non-increasing after warmup
    if t > cycle:
        assert lr == 1e-5


def test_constant_and_wsd_schedules():
    assert [lr_constant_schedule(t, 2.0, 4) for t in (0, 2, 4, 100)] == [0.0, 1.0, 2.0, 2.0]
    lrs = [lr_wsd_schedule(t, 1.0, 0.1, 10, 100, decay_fraction=0.2) for t in range(101)]
    assert lrs[5] == 0.5 and lrs[10] == 1.0 and lrs[79] == 1.0  # warmup, then stable
    assert lrs[80] == 1.0 and lrs[90] == pytest.approx(0.55) and lrs[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


# ----------------------------------------------------------------------------- clipping


def test_clip_grad_norm_matches_torch_and_returns_pre_clip_norm():
    for max_norm in (0.01, 1.0, 1e6):
        a, b = _small_net(2), _small_net(2)
        x = torch.randn(32, 6)
        for net in (a, b):
            net(x).pow(2).sum().backward()
        a[0].bias.grad = None  # parameters without gradients are skipped
        b[0].bias.grad = None
        norm = clip_grad_norm(a.parameters(), max_norm)
        ref_norm = torch.nn.utils.clip_grad_norm_([p for p in b.parameters() if p.grad is not None], max_norm)
        assert norm == pytest.approx(ref_norm.item(), rel=1e-6)
        for pa, pb in zip(a.parameters(), b.parameters()):
            if pa.grad is not None:
                torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-8)
        total_after = math.sqrt(sum(float((p.grad**2).sum()) for p in a.parameters() if p.grad is not None))
        assert total_after <= max_norm * (1 + 1e-5) or total_after == pytest.approx(norm)


def test_clip_grad_norm_reports_nonfinite_gradients():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, float("nan"), 2.0])
    assert math.isnan(clip_grad_norm([p], 1.0))
    q = torch.nn.Parameter(torch.ones(2))
    q.grad = torch.tensor([float("inf"), 0.0])
    assert clip_grad_norm([q], 0.0) == float("inf")  # max_norm 0: measure only


def test_clip_grad_norm_tensor_variant_agrees_and_skips_paramless_lists():
    from cs336_basics.training.clipping import clip_grad_norm_tensor

    a, b = _small_net(4), _small_net(4)
    x = torch.randn(8, 6)
    for net in (a, b):
        net(x).pow(2).sum().backward()
    norm_t = clip_grad_norm_tensor(a.parameters(), 0.5)
    assert isinstance(norm_t, torch.Tensor) and norm_t.shape == ()
    assert float(norm_t) == clip_grad_norm(b.parameters(), 0.5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad)
    assert clip_grad_norm([torch.nn.Parameter(torch.ones(2))], 1.0) == 0.0


# ----------------------------------------------------------------------------- batches


def test_get_batch_windows_are_consecutive_and_in_range():
    data = np.arange(100, dtype=np.uint16)
    rng = np.random.default_rng(0)
    starts_seen = set()
    for _ in range(50):
        x, y = get_batch(data, 8, 10, "cpu", rng=rng)
        assert x.shape == y.shape == (8, 10) and x.dtype == torch.int64
        assert torch.equal(y, x + 1)  # arange data: targets are the next token
        assert int(x[:, 0].min()) >= 0 and int(y[:, -1].max()) <= 99
        starts_seen.update(x[:, 0].tolist())
    assert starts_seen == set(range(90))  # every valid start, including the last one, is reachable


def test_get_batch_global_rng_signature_and_too_short_data():
    np.random.seed(0)
    x, y = get_batch(np.arange(20), 3, 5, "cpu")
    assert x.shape == (3, 5)
    from cs336_basics.errors import UserError

    with pytest.raises(UserError, match="context_length"):
        get_batch(np.arange(5), 2, 5, "cpu")


def test_batch_sampler_ranks_partition_the_global_batch_and_state_round_trips():
    data = np.arange(1000, dtype=np.uint16)
    single = BatchSampler(data, 8, 16, "cpu", seed=3)
    ranks = [BatchSampler(data, 4, 16, "cpu", seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        x, _ = single.next()
        parts = [s.next()[0] for s in ranks]
        assert torch.equal(x, torch.cat(parts))
    state = single.state_dict()
    expected = single.next()[0]
    fresh = BatchSampler(data, 8, 16, "cpu", seed=99)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.next()[0], expected)


@pytest.mark.linux  # glibc's mallopt
def test_keep_freed_cpu_memory_makes_a_repeated_large_allocation_fault_free():
    """A repeated 64 MB tensor reuses freed pages (the best of 5 repeats faults almost nothing); by default every
    repeat maps and faults in 16,384 fresh pages."""
    script = textwrap.dedent("""
        import resource, sys, torch
        from cs336_basics.runtime.allocator import keep_freed_cpu_memory
        if sys.argv[1] == "tuned":
            assert keep_freed_cpu_memory()
        def faults_of_one_step():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            torch.ones(16 * 1024 * 1024).sum()  # 64 MB written, then freed
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        faults_of_one_step()
        print(min(faults_of_one_step() for _ in range(5)))
    """)
    faults = {mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "tuned")}
    assert faults["default"] > 10_000  # 16,384 pages of 4 KiB faulted in again every time
    assert faults["tuned"] < 1_000
