"""evaluate_loss: exact values on models whose loss is known, coverage of windows, batch invariance, modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cs336_basics.errors import UserError
from cs336_basics.evaluation import evaluate_loss, plan_windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


class _Cfg:
    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size


class UniformModel(nn.Module):
    """Equal logits for every token: loss ln V, perplexity V, top-k accuracy k/V."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.config = _Cfg(vocab_size)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*ids.shape, self.config.vocab_size) + self.dummy  # (B, T, V)


class BigramModel(nn.Module):
    """Logits depend on the current token only, so the loss does not depend on how windows are cut."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        super().__init__()
        self.config = _Cfg(vocab_size)
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=g) * 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]  # (B, T, V)


class PrefixMeanModel(nn.Module):
    """A causal model whose logits depend on the whole history (running mean of embeddings), with dropout."""

    def __init__(self, vocab_size: int, dim: int = 16, seed: int = 0, pdrop: float = 0.5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.config = _Cfg(vocab_size)
        self.emb = nn.Embedding(vocab_size, dim)
        self.drop = nn.Dropout(pdrop)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)  # (B, T, D)
        counts = torch.arange(1, ids.shape[-1] + 1, dtype=x.dtype).unsqueeze(-1)  # (T, 1)
        x = x.cumsum(dim=-2) / counts  # (B, T, D)
        return self.head(self.drop(x))  # (B, T, V)


def _bigram_oracle(model: BigramModel, tokens: np.ndarray) -> tuple[float, float]:
    """Mean NLL and top-1 over every target 1..N-1, one token at a time in float64."""
    table = model.table.detach().double()
    nll, hits = 0.0, 0
    for prev, nxt in zip(tokens[:-1], tokens[1:]):
        row = table[int(prev)]
        nll += float(torch.logsumexp(row, 0) - row[int(nxt)])
        hits += int(int(row.argmax()) == int(nxt))
    return nll / (len(tokens) - 1), hits / (len(tokens) - 1)


def _windowed_oracle(model: nn.Module, tokens: np.ndarray, context: int, stride: int | None) -> float:
    """Naive per-target loop: each target is scored from its own window, one sequence at a time."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for w in plan_windows(len(tokens), context, stride):
            ids = torch.from_numpy(np.asarray(tokens[w.start:w.end + 1], dtype=np.int64))
            logits = model(ids[:-1].unsqueeze(0))[0].double()  # (T, V)
            for p in range(w.score_from, w.length):
                total += float(torch.logsumexp(logits[p], 0) - logits[p, ids[p + 1]])
                count += 1
    return total / count


def _tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.uint16)


@pytest.mark.parametrize("vocab", [7, 50, 1000])
def test_uniform_model_perplexity_is_vocab_size(vocab):
    res = evaluate_loss(UniformModel(vocab), _tokens(301, vocab), context_length=16, batch_size=4)
    assert res.perplexity == pytest.approx(vocab, rel=1e-6)
    assert res.loss == pytest.approx(math.log(vocab), rel=1e-6)
    assert res.top1 == pytest.approx(1 / vocab, rel=1e-9)
    assert res.top5 == pytest.approx(min(5, vocab) / vocab, rel=1e-9)
    assert res.num_tokens == 300


@pytest.mark.parametrize("stride", [None, 1, 5, 16])
def test_bigram_model_matches_oracle_for_any_windowing(stride):
    vocab, tokens = 23, _tokens(250, 23, seed=1)
    model = BigramModel(vocab)
    oracle_loss, oracle_top1 = _bigram_oracle(model, tokens)
    res = evaluate_loss(model, tokens, context_length=16, batch_size=5, stride=stride)
    assert res.loss == pytest.approx(oracle_loss, rel=1e-6)
    assert res.top1 == pytest.approx(oracle_top1, abs=1e-12)
    assert res.num_tokens == len(tokens) - 1


def test_bits_per_byte_and_max_tokens():
    vocab, tokens = 23, _tokens(500, 23, seed=2)
    model = BigramModel(vocab)
    res = evaluate_loss(model, tokens, 32, 4, max_tokens=101, bytes_per_token=3.5)
    assert res.num_tokens == 100
    assert res.loss == pytest.approx(_bigram_oracle(model, tokens[:101])[0], rel=1e-6)
    assert res.bits_per_byte == pytest.approx(res.loss / math.log(2) / 3.5, rel=1e-12)
    assert evaluate_loss(model, tokens, 32, 4).bits_per_byte is None


@pytest.mark.parametrize("stride", [None, 3, 8])
def test_history_dependent_model_matches_naive_windowed_oracle(stride):
    vocab, tokens = 31, _tokens(203, 31, seed=3)
    model = PrefixMeanModel(vocab)
    res = evaluate_loss(model, tokens, context_length=12, batch_size=4, stride=stride)
    assert res.loss == pytest.approx(_windowed_oracle(model, tokens, 12, stride), rel=1e-6)


class WarmupBigram(BigramModel):
    """A bigram model that outputs uniform logits for the first `blind` positions of every window."""

    def __init__(self, vocab_size: int, blind: int) -> None:
        super().__init__(vocab_size)
        self.blind = blind

    def forward(self, ids):
        logits = super().forward(ids).clone()  # (B, T, V)
        logits[:, : self.blind] = 0.0
        return logits


@pytest.mark.parametrize("stride,expected_blind", [(None, 3 * 25), (4, 3), (5, 3)])
def test_sliding_window_scores_tokens_with_history(stride, expected_blind):
    # 201 tokens, context 8: 25 non-overlapping windows, each with 3 history-less (uniform) positions;
    # with stride <= 8 - 3 only the first window's first 3 positions lack history
    vocab, blind = 11, 3
    tokens = _tokens(201, vocab, seed=6)
    model = WarmupBigram(vocab, blind)
    res = evaluate_loss(model, tokens, 8, 4, stride=stride)
    full = _bigram_oracle(model, tokens)[0] * 200
    # recover how many targets were scored blind from the loss: each one swaps its bigram NLL for ln V
    table = model.table.detach().double()
    per = [float(torch.logsumexp(table[int(a)], 0) - table[int(a), int(b)]) for a, b in zip(tokens[:-1], tokens[1:])]
    windows = plan_windows(len(tokens), 8, stride)
    blind_targets = [w.start + p for w in windows for p in range(w.score_from, min(blind, w.length))]
    assert len(blind_targets) == expected_blind
    expected = (full - sum(per[t] for t in blind_targets) + len(blind_targets) * math.log(vocab)) / 200
    assert res.loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("stride", [None, 4, 16])
def test_batch_size_invariance(stride):
    vocab, tokens = 97, _tokens(1000, 97, seed=4)
    model = PrefixMeanModel(vocab, dim=32)
    results = [evaluate_loss(model, tokens, 16, bs, stride=stride) for bs in (1, 3, 8, 100)]
    for r in results[1:]:
        assert abs(r.loss - results[0].loss) / results[0].loss < 1e-6
        assert abs(r.top5 - results[0].top5) < 1e-9
        assert r.num_tokens == results[0].num_tokens == 999


def test_eval_mode_no_grad_and_modes_restored():
    model = PrefixMeanModel(13, pdrop=0.9)
    model.train()
    model.head.eval()  # a submodule deliberately in another mode must keep it
    tokens = _tokens(100, 13, seed=5)
    a = evaluate_loss(model, tokens, 10, 2).loss
    b = evaluate_loss(model, tokens, 10, 2).loss
    assert a == b  # dropout was off
    assert model.training and model.drop.training and not model.head.training
    assert all(p.grad is None for p in model.parameters())


class _GradProbe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = _Cfg(5)
        self.seen_grad_mode: list[bool] = []

    def forward(self, ids):
        self.seen_grad_mode.append(torch.is_grad_enabled())
        return torch.zeros(*ids.shape, 5)


def test_runs_under_no_grad():
    probe = _GradProbe()
    evaluate_loss(probe, _tokens(50, 5), 8, 2)
    assert probe.seen_grad_mode and not any(probe.seen_grad_mode)


def test_bad_inputs_raise_user_errors():
    model = UniformModel(10)
    with pytest.raises(UserError, match="at least 2 tokens"):
        evaluate_loss(model, np.array([3], dtype=np.uint16), 8, 2)
    with pytest.raises(UserError, match="outside the model's vocabulary"):
        evaluate_loss(model, np.array([1, 2, 30, 4], dtype=np.uint16), 8, 2)
    with pytest.raises(UserError, match="stride"):
        evaluate_loss(model, _tokens(50, 10), 8, 2, stride=9)
    with pytest.raises(UserError, match="one-dimensional"):
        evaluate_loss(model, np.zeros((4, 4), dtype=np.uint16), 8, 2)
    with pytest.raises(UserError, match="batch size"):
        evaluate_loss(model, _tokens(50, 10), 8, 0)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 400), context=st.integers(1, 40), data=st.data())
def test_windows_cover_every_target_exactly_once(n, context, data):
    stride = data.draw(st.one_of(st.none(), st.integers(1, context)))
    windows = plan_windows(n, context, stride)
    counts = np.zeros(max(n, 1), dtype=int)
    for w in windows:
        assert 0 <= w.start < w.end <= n - 1
        assert w.length <= context
        assert 0 <= w.score_from < w.length
        counts[w.start + w.score_from + 1: w.end + 1] += 1  # target indices scored by this window
        if stride is not None and w.start > 0:
            assert w.score_from >= context - stride  # at least context - stride tokens of history
        if stride is None:
            assert w.score_from == 0
    assert counts[0] == 0 or n == 0
    if n >= 2:
        assert (counts[1:n] == 1).all()
    # at most one window shorter than the context (it is batched on its own)
    assert sum(w.length != context for w in windows) <= 1


class _NaNModel(UniformModel):
    def forward(self, ids):
        return torch.full((*ids.shape, self.config.vocab_size), float("nan"))


def test_diverged_model_reports_nan_not_an_error():
    res = evaluate_loss(_NaNModel(5), _tokens(40, 5), 8, 2)
    assert math.isnan(res.loss) and math.isnan(res.perplexity)
