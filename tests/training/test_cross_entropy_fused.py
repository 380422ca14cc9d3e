"""The C cross-entropy kernel against its oracles: the PyTorch form of the loss module and float64 maths.

Bounds are the module's stated ones (``fused_cross_entropy.LOSS_RTOL`` and friends). Every test here runs the
kernel (it is required: CI builds it); the dispatch tests check which path ``cross_entropy`` takes.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.training import fused_cross_entropy as fused
from cs336_basics.training.loss import cross_entropy, cross_entropy_torch_ops
from tests.conftest import require_native


@pytest.fixture(autouse=True)
def _kernel():
    require_native(fused.EXTENSION)


def native(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The kernel's loss, whatever the dispatch would choose."""
    return fused.NativeCrossEntropy.apply(logits, targets, fused.kernel())


def oracle(logits: torch.Tensor, targets: torch.Tensor, scale: float = 1.0) -> tuple[float, torch.Tensor]:
    """Loss and gradient of ``scale * mean loss`` in float64 (from the inputs' exact values)."""
    z = logits.detach().double()
    lse = torch.logsumexp(z, dim=-1)
    loss = (lse - z.gather(-1, targets[:, None])[:, 0]).mean()
    grad = torch.softmax(z, dim=-1)
    grad[torch.arange(len(targets)), targets] -= 1
    return loss.item(), grad * scale / len(targets)


def grads(fn, logits, targets, scale=1.0):
    x = logits.detach().clone().requires_grad_()
    loss = fn(x, targets)
    (loss * scale).backward()
    return loss, x.grad


@pytest.mark.parametrize("rows,vocab", [(1, 1), (1, 2), (3, 15), (5, 16), (7, 17), (64, 1000), (33, 10_000)])
def test_float32_matches_the_torch_form_within_the_stated_bounds(rows, vocab):
    g = torch.Generator().manual_seed(rows * vocab)
    logits = torch.randn(rows, vocab, generator=g) * 4
    targets = torch.randint(0, vocab, (rows,), generator=g)
    loss, grad = grads(native, logits, targets, scale=2.5)
    ref_loss, ref_grad = grads(cross_entropy_torch_ops, logits, targets, scale=2.5)
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    assert abs(loss.item() - ref_loss.item()) <= fused.LOSS_RTOL * abs(ref_loss.item()) + 1e-7
    torch.testing.assert_close(grad, ref_grad, rtol=fused.GRAD_RTOL, atol=fused.GRAD_ATOL)
    exact_loss, exact_grad = oracle(logits, targets, scale=2.5)
    assert abs(loss.item() - exact_loss) <= fused.LOSS_RTOL * abs(exact_loss) + 1e-7
    torch.testing.assert_close(grad.double(), exact_grad, rtol=fused.GRAD_RTOL, atol=fused.GRAD_ATOL)


def test_bf16_logits_give_a_float32_loss_and_a_gradient_rounded_once():
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(40, 300, generator=g) * 3).bfloat16()
    targets = torch.randint(0, 300, (40,), generator=g)
    loss, grad = grads(native, logits, targets)
    exact_loss, exact_grad = oracle(logits, targets)
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert abs(loss.item() - exact_loss) <= 1e-6 * abs(exact_loss)
    # one rounding to bf16 of a float32 value within GRAD_RTOL of the exact gradient: at most one bf16 ulp away
    ulp = exact_grad.abs().float().bfloat16().float().abs() * 2**-7 + 1e-30
    assert ((grad.double() - exact_grad).abs() <= ulp.double()).all()


def test_the_exponential_is_accurate_to_a_few_ulps_over_its_whole_range():
    # rows [0, x]: the gradient of column 1 is softmax = exp(x) / (1 + exp(x)), so it exposes exp(x) - 0
    x = torch.linspace(-86.9, 0.0, 50_001)
    logits = torch.stack([torch.zeros_like(x), x], dim=1)
    targets = torch.zeros(len(x), dtype=torch.long)
    _, grad = grads(native, logits, targets, scale=len(x))
    exact = torch.sigmoid(x.double())
    rel = ((grad[:, 1].double() - exact).abs() / exact).max().item()
    assert rel < 8 * torch.finfo(torch.float32).eps


def test_huge_and_minus_infinite_logits_stay_finite_as_in_the_torch_form():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, 1e4], [0.0, -math.inf, 1.0]])
    targets = torch.tensor([1, 2, 0, 2])
    loss, grad = grads(native, logits, targets)
    ref_loss, ref_grad = grads(cross_entropy_torch_ops, logits, targets)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert abs(loss.item() - ref_loss.item()) <= 1e-6 * abs(ref_loss.item())
    torch.testing.assert_close(grad, ref_grad, rtol=fused.GRAD_RTOL, atol=fused.GRAD_ATOL)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_nan_or_infinite_logit_makes_the_loss_nan_as_in_the_torch_form(bad, dtype):
    logits = torch.randn(3, 20)
    logits[1, 7] = bad
    logits = logits.to(dtype)
    targets = torch.tensor([0, 1, 2])
    assert math.isnan(native(logits, targets).item())
    assert math.isnan(cross_entropy_torch_ops(logits, targets).item())


def test_a_target_outside_the_vocabulary_is_an_error_before_anything_is_computed():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        native(torch.zeros(2, 5), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        native(torch.zeros(2, 5), torch.tensor([-1, 0]))


def test_results_do_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(256, 2000, generator=g).bfloat16()
    targets = torch.randint(0, 2000, (256,), generator=g)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = grads(native, logits, targets)
        torch.set_num_threads(2)
        two = grads(native, logits, targets)
    finally:
        torch.set_num_threads(before)
    assert one[0].item() == two[0].item()
    assert torch.equal(one[1], two[1])


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 8), vocab=st.integers(1, 70), scale=st.floats(0.01, 300.0), seed=st.integers(0, 2**16))
def test_property_float32_kernel_matches_float64(rows, vocab, scale, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * scale
    targets = torch.randint(0, vocab, (rows,), generator=g)
    loss, grad = grads(native, logits, targets)
    exact_loss, exact_grad = oracle(logits, targets)
    # logsumexp and the target's logit each carry a rounding of about eps x |logit|, which the difference keeps
    cancellation = 4 * torch.finfo(torch.float32).eps * logits.abs().max().item()
    assert abs(loss.item() - exact_loss) <= fused.LOSS_RTOL * abs(exact_loss) + cancellation + 1e-7
    atol = fused.GRAD_ATOL + cancellation / rows
    torch.testing.assert_close(grad.double(), exact_grad, rtol=fused.GRAD_RTOL, atol=atol)


def test_cross_entropy_takes_the_kernel_only_where_it_fits(monkeypatch):
    calls = []
    original = fused.NativeCrossEntropy.apply
    monkeypatch.setattr(fused.NativeCrossEntropy, "apply", lambda *a: calls.append(a[0].dtype) or original(*a))
    targets = torch.tensor([1, 2])
    cross_entropy(torch.randn(2, 5), targets)
    cross_entropy(torch.randn(2, 5).bfloat16(), targets)
    assert calls == [torch.float32, torch.bfloat16]
    cross_entropy(torch.randn(2, 5, dtype=torch.float64), targets)  # float64: the torch form
    cross_entropy(torch.randn(5, 2).t(), targets)  # a transposed view, not contiguous: the torch form
    assert calls == [torch.float32, torch.bfloat16]
    monkeypatch.setenv("CS336_NO_NATIVE", "1")
    cross_entropy(torch.randn(2, 5), targets)
    assert len(calls) == 2
