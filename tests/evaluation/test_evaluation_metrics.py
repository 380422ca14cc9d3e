"""Generation-quality metrics on hand-made texts, and the convergence fit on synthetic curves."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cs336_basics.errors import UserError
from cs336_basics.reporting.convergence import convergence_report, fit_power_law, plateau_verdict, plot_convergence
from cs336_basics.evaluation.text_metrics import (
    distinct_n,
    generation_metrics,
    in_vocab_rate,
    reference_perplexity,
    repetition_rate,
    word_vocabulary,
    words,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded

# ----------------------------------------------------------------------------- text metrics


def test_words_lowercase_and_split_punctuation():
    assert words("The dog's ball, it's RED!") == ["the", "dog's", "ball", ",", "it's", "red", "!"]


def test_distinct_n_hand_counted():
    texts = ["the cat sat", "the cat ran"]
    # unigrams: the cat sat the cat ran -> 4 distinct of 6; bigrams: the-cat x2, cat-sat, cat-ran -> 3 of 4
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)
    assert distinct_n(["a b"], 3) is None


def test_repetition_rate_hand_counted():
    assert repetition_rate("a b c d e f") == 0.0  # 3 distinct 4-grams
    # "a b c d a b c d": 5 four-grams, abcd repeated once -> 4 distinct -> 1/5 repeated
    assert repetition_rate("a b c d a b c d") == pytest.approx(1 / 5)
    assert repetition_rate("x x x x x x x x") == pytest.approx(4 / 5)
    assert repetition_rate("too short") is None


def test_in_vocab_rate_and_vocabulary():
    vocab = word_vocabulary(["Once upon a time there was a dog.", "The dog ran 3 times."])
    assert {"once", "dog", "times", "the"} <= vocab and "3" not in vocab
    assert in_vocab_rate(["the dog blorped"], vocab) == pytest.approx(2 / 3)
    assert in_vocab_rate(["123 !!"], vocab) is None
    assert word_vocabulary(["a a b"], min_count=2) == {"a"}


@dataclass
class FakeResult:
    prompt: str
    text: str
    token_ids: list[int]
    stopped_by: str


def test_generation_metrics_from_results():
    results = [FakeResult("p", " the cat sat", [1, 2, 3], "eos"),
               FakeResult("p", " the cat ran far away", [1, 2, 3, 4, 5, 6, 7], "length"),
               FakeResult("p", " a dog", [8, 9], "eos"),
               FakeResult("p", " zzz", [4], "stop")]
    m = generation_metrics(results, vocabulary={"the", "cat", "sat", "ran", "a", "dog", "far", "away"})
    assert m["num_samples"] == 4
    assert m["eos_rate"] == pytest.approx(2 / 4)
    assert m["mean_tokens_to_eos"] == pytest.approx((3 + 2) / 2)
    assert m["mean_tokens"] == pytest.approx(13 / 4)
    assert m["mean_words"] == pytest.approx((3 + 5 + 2 + 1) / 4)
    assert m["in_vocab_rate"] == pytest.approx(10 / 11)
    assert m["distinct_1"] == pytest.approx(9 / 11)
    assert m["repetition_4gram"] == pytest.approx(0.0)  # only one text has 4-grams, none repeated
    plain = generation_metrics(["one two three"])
    assert "eos_rate" not in plain and "in_vocab_rate" not in plain


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="ab .", max_size=40), min_size=1, max_size=5))
def test_metric_ranges(texts):
    m = generation_metrics(texts)
    for key in ("distinct_1", "distinct_2", "distinct_3", "repetition_4gram"):
        assert m[key] is None or 0.0 <= m[key] <= 1.0
    if m["distinct_1"] is not None:
        assert m["distinct_1"] > 0


class _ByteTokenizer:
    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode(errors="replace")


class _UniformLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, ids):
        return torch.zeros(*ids.shape, 256) + self.w  # (B, T, 256)


def test_reference_perplexity_of_uniform_model():
    ppl = reference_perplexity(_UniformLM(), _ByteTokenizer(), ["Once", ""], [" upon", "xy"])
    assert ppl == pytest.approx(256.0, rel=1e-6)
    assert reference_perplexity(_UniformLM(), _ByteTokenizer(), [""], ["x"]) is None  # nothing predictable


# ----------------------------------------------------------------------------- convergence


def test_fit_recovers_exact_power_law():
    t = np.linspace(1e5, 1e8, 40)
    fit = fit_power_law(t, 1.5 + 40.0 * t ** -0.3, skip_fraction=0.0)
    assert fit.E == pytest.approx(1.5, abs=1e-6)
    assert fit.A == pytest.approx(40.0, rel=1e-4)
    assert fit.alpha == pytest.approx(0.3, abs=1e-6)
    assert fit.rmse < 1e-8


@pytest.mark.parametrize("seed", range(4))
def test_fit_recovers_parameters_from_noisy_curve(seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(2e5, 2e7, 100)  # evaluations at a fixed step interval, as in training
    E, A, alpha = 2.0, 30.0, 0.35
    y = E + A * t ** -alpha + rng.normal(0, 0.003, len(t))
    fit = fit_power_law(t, y, skip_fraction=0.0)
    assert fit.E == pytest.approx(E, abs=0.01)
    assert fit.alpha == pytest.approx(alpha, abs=0.02)
    for factor in (2, 10):
        truth = E + A * (t.max() * factor) ** -alpha
        assert fit.projected(factor) == pytest.approx(truth, abs=0.005)
    assert 0.002 < fit.rmse < 0.004


def test_fit_needs_enough_points():
    with pytest.raises(UserError, match="at least 4"):
        fit_power_law([1, 2, 3], [3.0, 2.0, 1.5])
    with pytest.raises(UserError):
        fit_power_law([1, 2, 3, 4, 5], [math.nan] * 5)


def test_plateau_verdicts():
    rng = np.random.default_rng(0)
    t = np.linspace(1e5, 1e7, 50)
    assert plateau_verdict(t, 2 + 30 * t ** -0.35 + rng.normal(0, 0.001, 50)).verdict == "improving"
    flat = [plateau_verdict(t, 2 + np.random.default_rng(s).normal(0, 0.01, 50)).verdict for s in range(200)]
    assert flat.count("plateaued") >= 190  # pure noise is rarely mistaken for progress
    assert plateau_verdict(t, 2 + 1e-7 * t).verdict == "rising"
    assert plateau_verdict(t[:2], [3.0, 2.0]).verdict == "insufficient data"


def test_convergence_report_and_plot(tmp_path):
    t = np.linspace(1e5, 1e7, 30)
    y = 2 + 30 * t ** -0.35
    report = convergence_report(t, y)
    assert report["fit"]["E"] == pytest.approx(2.0, abs=1e-4)
    assert report["projected_10x"] < report["projected_2x"] < report["final_loss"]
    paths = plot_convergence(t, y, fit_power_law(t, y), tmp_path / "fit")
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)
    short = convergence_report([1, 2], [3.0, 2.5])
    assert short["fit"] is None and "at least 4" in short["fit_error"]
