"""The next-token rules (top-k, top-p, temperature, repetition penalty, vocab mask) against slow oracles."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cs336_basics.errors import UserError
from cs336_basics.generation.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    choose_next,
    make_generator,
    sampling_probs,
    top_k_filter,
    top_p_filter,
)

# ----------------------------------------------------------------------------- oracles


def oracle_top_k_support(values: list[float], k: int) -> set[int]:
    order = sorted(range(len(values)), key=lambda i: -values[i])
    return set(order[:k])


def oracle_top_p_support(probs: list[float], p: float) -> set[int]:
    """Smallest set of most probable ids whose total reaches p (walk the sorted list, stop once reached)."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, total = set(), 0.0
    for i in order:
        kept.add(i)
        total += probs[i]
        if total >= p:
            break
    return kept


def oracle_repetition_penalty(row: list[float], seen: set[int], penalty: float) -> list[float]:
    out = []
    for i, value in enumerate(row):
        if i in seen:
            value = value / penalty if value > 0 else value * penalty
        out.append(value)
    return out


def support(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


distinct_logits = st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=2, max_size=40, unique=True)

# ----------------------------------------------------------------------------- hand-made distributions


def test_top_p_hand_made():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert support(top_p_filter(logits, 0.5)[0]) == {0}  # 0.5 reaches 0.5 exactly
    assert support(top_p_filter(logits, 0.51)[0]) == {0, 1}
    assert support(top_p_filter(logits, 0.8)[0]) == {0, 1}
    assert support(top_p_filter(logits, 0.81)[0]) == {0, 1, 2}
    assert support(top_p_filter(logits, 0.96)[0]) == {0, 1, 2, 3}
    assert support(top_p_filter(logits, 0.01)[0]) == {0}  # the most probable id is always kept
    # shuffled order: support follows the probabilities, not the positions
    shuffled = torch.tensor([[0.05, 0.3, 0.5, 0.15]]).log()
    assert support(top_p_filter(shuffled, 0.7)[0]) == {1, 2}


def test_top_p_renormalises():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    probs = sampling_probs(logits, SamplingParams(top_p=0.8))[0]
    torch.testing.assert_close(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]))


def test_top_k_hand_made():
    logits = torch.tensor([[1.0, 5.0, 3.0, -2.0, 4.0]])
    assert support(top_k_filter(logits, 1)[0]) == {1}
    assert support(top_k_filter(logits, 3)[0]) == {1, 2, 4}
    assert support(top_k_filter(logits, 5)[0]) == {0, 1, 2, 3, 4}
    assert support(top_k_filter(logits, 99)[0]) == {0, 1, 2, 3, 4}
    probs = sampling_probs(logits, SamplingParams(top_k=2))[0]
    expected = torch.softmax(torch.tensor([5.0, 4.0]), -1)
    torch.testing.assert_close(probs[[1, 4]], expected)
    assert probs[[0, 2, 3]].sum() == 0


def test_top_k_exact_size_with_ties():
    logits = torch.tensor([[2.0, 2.0, 2.0, 1.0]])
    kept = support(top_k_filter(logits, 2)[0])
    assert len(kept) == 2 and kept <= {0, 1, 2}


def test_repetition_penalty_hand_made():
    logits = torch.tensor([[2.0, -2.0, 3.0, 0.0]])
    seen = torch.tensor([[True, True, False, True]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -4.0, 3.0, 0.0]]))


# ----------------------------------------------------------------------------- properties vs oracles


@given(distinct_logits, st.integers(1, 45))
def test_top_k_support_matches_oracle(values, k):
    logits = torch.tensor([values], dtype=torch.float64)
    assert support(top_k_filter(logits, k)[0]) == oracle_top_k_support(values, min(k, len(values)))


@given(distinct_logits, st.floats(0.01, 0.99))
def test_top_p_support_matches_oracle(values, p):
    logits = torch.tensor([values], dtype=torch.float32)
    probs = torch.softmax(logits, -1)[0].tolist()
    assume(len(set(probs)) == len(probs))  # with tied probabilities either id makes a smallest set
    order = sorted(probs, reverse=True)
    cumulative = [sum(order[: i + 1]) for i in range(len(order))]
    assume(all(abs(c - p) > 1e-4 for c in cumulative))  # float32 vs float64 sums must agree on the side
    assert support(top_p_filter(logits, p)[0]) == oracle_top_p_support(probs, p)


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=30), st.data())
def test_repetition_penalty_matches_oracle(values, data):
    seen = set(data.draw(st.lists(st.integers(0, len(values) - 1), max_size=len(values))))
    penalty = data.draw(st.floats(0.5, 3.0))
    mask = torch.zeros(1, len(values), dtype=torch.bool)
    mask[0, list(seen)] = True
    out = apply_repetition_penalty(torch.tensor([values], dtype=torch.float64), mask, penalty)
    assert out[0].tolist() == pytest.approx(oracle_repetition_penalty(values, seen, penalty))


@given(distinct_logits)
def test_temperature_zero_is_argmax(values):
    logits = torch.tensor([values])
    assert choose_next(logits, SamplingParams(temperature=0.0)).item() == max(range(len(values)), key=values.__getitem__)


@settings(max_examples=30)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=20, unique=True), st.integers(0, 2**31))
def test_temperature_to_zero_approaches_argmax(values, seed):
    ordered = sorted(values, reverse=True)
    assume(ordered[0] - ordered[1] > 1e-2)
    logits = torch.tensor([values] * 64)
    picks = choose_next(logits, SamplingParams(temperature=1e-4), make_generator(seed, "cpu"))
    assert set(picks.tolist()) == {max(range(len(values)), key=values.__getitem__)}


def test_sampling_frequencies_follow_filtered_distribution():
    logits = torch.tensor([0.4, 0.25, 0.2, 0.1, 0.05]).log()
    params = SamplingParams(temperature=1.0, top_k=4, top_p=0.8)
    expected = sampling_probs(logits[None], params)[0]  # support {0, 1, 2}: 0.4 + 0.25 < 0.8 <= 0.85
    assert support(torch.where(expected > 0, 0.0, float("-inf"))) == {0, 1, 2}
    draws = choose_next(logits.expand(40000, -1), params, make_generator(1, "cpu"))
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    assert freq[3] == 0 and freq[4] == 0
    for i in range(3):
        sigma = math.sqrt(expected[i] * (1 - expected[i]) / draws.numel())
        assert abs(freq[i] - expected[i]) < 5 * sigma


def test_seed_reproducibility():
    logits = torch.randn(8, 100, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.3, top_p=0.95)
    a = [choose_next(logits, params, g).tolist() for g in [make_generator(7, "cpu")] for _ in range(5)]
    b = [choose_next(logits, params, g).tolist() for g in [make_generator(7, "cpu")] for _ in range(5)]
    c = [choose_next(logits, params, g).tolist() for g in [make_generator(8, "cpu")] for _ in range(5)]
    assert a == b
    assert a != c


@pytest.mark.parametrize("kwargs", [dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_k=0),
                                    dict(top_p=0.0), dict(top_p=1.5), dict(repetition_penalty=0.0)])
def test_bad_parameters_are_user_errors(kwargs):
    with pytest.raises(UserError):
        SamplingParams(**kwargs)
