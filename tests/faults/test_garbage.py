"""Garbage reported as success, and healthy runs reported as failures: a model whose logits overflow, a
validation split that vanished, a temperature that underflows, a time budget that ends a run early, and a wide
tied-embedding model called diverged at step 1. Each case asserts the exit code, the one-line message and what is
(or is not) left on disk."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
import torch

from cs336_basics.cli import main
from cs336_basics.config import ModelConfig, OptimizerConfig
from cs336_basics.evaluation.token_file_loss import _score_batch
from cs336_basics.generation.sampling import SamplingParams, choose_next, make_generator
from cs336_basics.model.transformer import TransformerLM
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.training.divergence import DivergenceRule
from cs336_basics.training.step import TrainStep
from tests.faults.cli_checks import one_line_error, train_args
from tests.training_fixtures import make_byte_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_byte_dataset(tmp_path_factory.mktemp("garbage") / "data")


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _events(run: Path) -> list[dict]:
    return read_jsonl(run / "metrics.jsonl")


# ----------------------------------------------------------------------------- a model whose logits overflow


@pytest.fixture(scope="module")
def overflowed(dataset, tmp_path_factory):
    """lr_max=1e20 without warm-up: finite but huge weights whose logits overflow (checkpoint at step 2)."""
    runs = tmp_path_factory.mktemp("overflow")
    code = main(train_args(dataset, runs, "--total-steps", "3", "--set", "optimizer.lr_max=1e20",
                            "--set", "optimizer.warmup_iters=0"))
    return code, runs / "r"


def test_a_run_whose_validation_loss_is_not_finite_ends_diverged(overflowed):
    code, run = overflowed
    assert code == 3
    events = _events(run)
    end = events[-1]
    assert end["event"] == "end" and end["stop_reason"] == "diverged_nonfinite" and end["diverged"] is True
    assert "nonfinite_validation" in [e["event"] for e in events]
    # nothing is written from weights whose outputs are NaN: no final weights file, no best.pt
    assert not (run / "model.safetensors").exists() and not (run / "checkpoints" / "best.pt").exists()
    # the accuracy logged with the NaN loss is not the near-perfect score a NaN logit used to produce
    top1 = [e["val_top1"] for e in events if e["event"] == "eval"]
    assert top1 and all(t < 0.5 for t in top1)


def test_eval_refuses_a_model_whose_logits_are_not_finite(overflowed, tmp_path, capsys):
    _, run = overflowed
    report = tmp_path / "eval.json"
    code, out, err = _cli(capsys, "eval", "--checkpoint", str(run), "--device", "cpu", "--json", str(report))
    assert code == 2 and "not finite" in one_line_error(err) and "latest.pt" in one_line_error(err)
    assert "accuracy" not in out and not report.exists()


def test_generate_refuses_a_model_whose_logits_are_not_finite(overflowed, capsys):
    _, run = overflowed
    code, _, err = _cli(capsys, "generate", "--checkpoint", str(run), "--device", "cpu", "--prompt", "Once",
                        "--max-tokens", "5", "--seed", "0")
    assert code == 2 and "logits are not finite" in one_line_error(err)


def test_accuracy_counts_a_position_with_a_nonfinite_logit_as_a_miss():
    logits = torch.tensor([[[0.0, 5.0, 1.0], [float("nan"), 0.0, 1.0], [0.0, float("inf"), 1.0]]])  # (1, 3, V=3)
    targets = torch.tensor([[1, 1, 1]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    _, top1, top5, count = _score_batch(logits, targets, mask)
    assert count == 3 and top1 == 1.0 and top5 == 1.0  # only the finite position scores its hit


# ----------------------------------------------------------------------------- a temperature that underflows


def test_a_temperature_that_underflows_is_greedy_decoding(dataset, tmp_path, capsys):
    assert main(train_args(dataset, tmp_path, "--total-steps", "2")) == 0
    capsys.readouterr()
    outputs = []
    for temperature in ("1e-45", "5e-324", "0"):
        code, out, err = _cli(capsys, "generate", "--checkpoint", str(tmp_path / "r"), "--device", "cpu",
                              "--prompt", "Once", "--max-tokens", "12", "--seed", "3", "--temperature", temperature,
                              "--ignore-eos")
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1] == outputs[2]
    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(0))
    for temperature in (1e-45, 1e-30, 5e-324):
        picks = choose_next(logits, SamplingParams(temperature=temperature), make_generator(0, "cpu"))
        assert torch.equal(picks, logits.argmax(dim=-1))


# ----------------------------------------------------------------------------- a validation split that vanished


@pytest.mark.parametrize("damage", ["missing", "directory"])
def test_a_missing_validation_split_is_an_error_unless_validation_is_off(dataset, tmp_path, capsys, damage):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    (data / "valid.npy").unlink()
    if damage == "directory":
        (data / "valid.npy").mkdir()
    runs = tmp_path / "runs"
    code, _, err = _cli(capsys, *train_args(data, runs))
    line = one_line_error(err)
    assert code == 2 and str(data / "valid.npy") in line and "train.eval_interval=0" in line
    assert ("is a directory" in line) == (damage == "directory")
    assert not runs.exists()
    # turned off explicitly, the run trains without validation
    code, _, err = _cli(capsys, *train_args(data, runs, "--set", "train.eval_interval=0"))
    assert code == 0, err
    assert not [e for e in _events(runs / "r") if e["event"].startswith("eval")]
    assert (runs / "r" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- time budgets


def _slow_steps(monkeypatch, seconds: float, first: int | None = None) -> None:
    """Training steps that take ``seconds`` longer (only the ``first`` ones, when given): a loaded machine."""
    real = TrainStep.__call__

    def slow(self, step):
        if first is None or step < first:
            time.sleep(seconds)
        return real(self, step)

    monkeypatch.setattr(TrainStep, "__call__", slow)


def test_a_slow_start_does_not_end_a_run_under_a_budget(dataset, tmp_path, capsys, monkeypatch):
    """The first five steps (the first logging window) take a second each, the rest milliseconds: 60 steps fit in
    15 s with room to spare, although the first window alone says 1 s per step and a final evaluation that a
    guess from it (a third of a step per token) would put at more than the whole budget."""
    _slow_steps(monkeypatch, 1.0, first=5)
    code, _, err = _cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "60",
                                             "--set", "train.max_minutes=0.25", "--set", "logging.log_interval=5",
                                             "--set", "train.eval_interval=20", "--set", "train.checkpoint_interval=20"))
    assert code == 0, err
    end = _events(tmp_path / "r")[-1]
    assert end["stop_reason"] == "completed" and end["step"] == 60
    assert (tmp_path / "r" / "model.safetensors").is_file()


def test_a_budget_that_ends_a_run_says_so(dataset, tmp_path, capsys, monkeypatch):
    """Steps of 0.15 s under a 3 s budget: 60 steps cannot be reached, and the run says how many ran."""
    _slow_steps(monkeypatch, 0.15)
    code, _, err = _cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "60",
                                             "--set", "train.max_minutes=0.05", "--set", "logging.log_interval=5"))
    assert code == 0, err
    end = _events(tmp_path / "r")[-1]
    assert end["stop_reason"] == "time_budget" and end["diverged"] is False and 1 <= end["step"] < 60
    assert f"after {end['step']} of the 60 steps asked" in err
    assert (tmp_path / "r" / "model.safetensors").is_file()  # a budget's end is a result, with its weights


# ----------------------------------------------------------------------------- a healthy wide model


@pytest.mark.parametrize("variant", [
    dict(tie_embeddings=True, init="zero_out", qk_norm="rmsnorm", ffn="relu2"),  # the quickstart recipe
    dict(tie_embeddings=True, init="handout", block="postnorm"),
    dict(tie_embeddings=True, init="handout", position="learned", norm="layernorm"),
    dict(tie_embeddings=True, init="zero_out", block="parallel", norm="none"),
    dict(),  # the handout model, untied
])
def test_the_first_loss_is_near_uniform_at_every_width(variant):
    for vocab in (512, 8) if variant else (512,):  # a tiny vocabulary too, where the tied scale is ln(vocab)
        ids = torch.randint(0, vocab, (4, 65), generator=torch.Generator().manual_seed(0))
        for d_model in (64, 128, 256, 512):
            cfg = ModelConfig(vocab_size=vocab, context_length=64, d_model=d_model, num_layers=2, num_heads=4,
                              **variant)
            with torch.no_grad():
                logits = TransformerLM(cfg, seed=0)(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1)).item()
            assert abs(loss - math.log(vocab)) < 1.0, (vocab, d_model, loss)


def test_a_wide_quickstart_model_is_not_called_diverged(dataset, tmp_path, capsys):
    code, _, err = _cli(capsys, "train", "--config", "quickstart", "--dataset", str(dataset), "--runs-dir",
                        str(tmp_path), "--run-name", "wide", "--total-steps", "4", "--batch-size", "4",
                        "--set", "model.d_model=256", "--set", "model.num_layers=1", "--set", "model.context_length=32",
                        "--set", "model.vocab_size=257",
                        "--set", "train.device=cpu", "--set", "train.samples=false", "--set", "train.max_minutes=none",
                        "--set", "train.eval_tokens=512", "--set", "logging.quiet=true", "--set", "logging.log_interval=1")
    assert code == 0, err
    events = _events(tmp_path / "wide")
    assert events[-1]["stop_reason"] == "completed"
    first = [e["loss"] for e in events if e["event"] == "train"][0]
    assert abs(first - math.log(257)) < 1.0


def test_divergence_is_judged_after_real_updates_against_the_runs_start():
    rule = DivergenceRule(vocab_size=512)
    uniform = math.log(512)
    # a first loss far above uniform, at learning rate 0: the initial model, not a divergence
    assert not rule.exceeded(30.0, lr=0.0, applied=True)
    assert not rule.exceeded(30.0, lr=1e-3, applied=True)  # still the initial weights (the update had lr 0)
    assert rule.start_loss == 30.0 and rule.limit() == pytest.approx(30.0 + uniform)
    assert not rule.exceeded(30.0 + uniform - 0.1, lr=1e-3, applied=True)
    assert rule.exceeded(30.0 + uniform + 0.1, lr=1e-3, applied=True)
    assert not rule.exceeded(1e9, lr=0.0, applied=True)  # never at a step whose learning rate is 0
    advice = rule.advice(40.0, 7, OptimizerConfig(name="muon", lr_max=3e-3, warmup_iters=10))
    assert "learning rate too high" in advice and "optimizer.muon_lr" in advice and "warmup_iters" in advice
    assert DivergenceRule(vocab_size=512).limit() == pytest.approx(2 * uniform)
    assert DivergenceRule(vocab_size=512, explicit=0.0).limit() == math.inf
