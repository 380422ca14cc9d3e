"""A real sweep: three tiny models trained on CPU by the real training loop, then results.jsonl and a plot.

The token files are made here from a small synthetic corpus with a byte-level
tokenizer (no merges), so the test needs neither a text corpus nor BPE
training. One of the three runs uses an absurd learning rate without clipping
and a low divergence threshold, so the loop's divergence stop flows through
the sweep into results.jsonl and the plot.
"""

from __future__ import annotations

import json
import random

import pytest

from cs336_basics.config import RunConfig, apply_overrides, dump_config
from cs336_basics.experiments import load_sweep_file, merge_specs, run_sweep
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.training.loop import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_stories(n: int, seed: int) -> str:
    rng = random.Random(seed)
    names, verbs, things = ["Tom", "Lily", "Sam", "Mia"], ["saw", "liked", "found", "lost"], ["a dog", "the ball", "a cake", "a red hat"]
    stories = []
    for _ in range(n):
        name = rng.choice(names)
        stories.append(" ".join(f"{name} {rng.choice(verbs)} {rng.choice(things)}." for _ in range(rng.randint(3, 6))))
    return "\n<|endoftext|>\n".join(stories)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from cs336_basics.tokenizer import Tokenizer, tokenize_file

    root = tmp_path_factory.mktemp("tiny_data")
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], special_tokens=["<|endoftext|>"])
    for split, n, seed in (("train", 400, 0), ("valid", 60, 1)):
        (root / f"{split}.txt").write_text(synthetic_stories(n, seed), encoding="utf-8")
        tokenize_file(tok, root / f"{split}.txt", root / f"{split}.npy", workers=1)
    return root


@pytest.mark.slow
def test_real_three_run_sweep_on_cpu(tmp_path, tiny_data):
    base = apply_overrides(RunConfig(), [
        "model.vocab_size=257", "model.context_length=16", "model.d_model=32", "model.num_layers=2",
        "model.num_heads=2", f"data.train_path={tiny_data / 'train.npy'}", f"data.valid_path={tiny_data / 'valid.npy'}",
        "train.batch_size=8", "train.total_steps=30", "train.eval_interval=10", "train.eval_batch_size=16",
        "train.eval_tokens=1024", "train.checkpoint_interval=15", "train.samples=false", "train.device=cpu",
        "optimizer.warmup_iters=3", "logging.log_interval=5", "logging.quiet=true"])
    dump_config(base, tmp_path / "base.toml")
    (tmp_path / "tiny.toml").write_text(
        '[sweep]\nname = "tiny"\nbase = "base.toml"\n\n'
        '[[runs]]\nname = "slow"\nset = ["optimizer.lr_max=1e-3"]\n\n'
        '[[runs]]\nname = "fast"\nset = ["optimizer.lr_max=1e-2"]\n\n'
        '[[runs]]\nname = "blowup"\nset = ["optimizer.lr_max=50", "optimizer.grad_clip=0", "train.divergence_loss=6.0"]\n')
    spec = load_sweep_file(tmp_path / "tiny.toml")
    outcome = run_sweep(spec, tmp_path / "sweeps", train_fn=train)
    sweep_dir = outcome.sweep_dir

    lines = read_jsonl(sweep_dir / "results.jsonl")
    assert [r["name"] for r in lines] == ["slow", "fast", "blowup"]
    results = {r["name"]: r for r in lines}
    for name in ("slow", "fast"):
        r = results[name]
        assert r["status"] == "finished" and r["steps"] == 30 and r["tokens"] == 30 * 8 * 16
        assert r["final_val_loss"] is not None and r["best_val_loss"] <= r["final_val_loss"] + 1e-9
    assert results["fast"]["final_val_loss"] < results["slow"]["final_val_loss"]  # 30 steps: the higher lr learns more
    assert results["blowup"]["diverged"] is True and results["blowup"]["status"] == "diverged"
    assert results["blowup"]["steps"] < 30  # stopped early, not a crash
    assert results["fast"]["config_diff"] == {"optimizer.lr_max": 0.01}

    png = sweep_dir / "plots" / "val_loss_vs_steps.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 5000
    drawn = json.loads(png.with_suffix(".json").read_text())
    for series, lr in zip(drawn["series"], ("lr_max=0.001", "lr_max=0.01", "lr_max=50")):  # the sweep's order
        assert lr in series["label"]
    assert "grad_clip=0" in drawn["series"][2]["label"]  # every differing key is named
    # the blow-up stops within a few steps, before its first evaluation: two validation curves
    assert drawn["curves"] == 2 + bool(drawn["series"][2]["x"])
    train_curves = json.loads((sweep_dir / "plots" / "loss_vs_steps.json").read_text())
    assert train_curves["curves"] == 3
    assert [s["diverged"] for s in train_curves["series"]] == [False, False, True]
    assert "optimizer.lr_max" in train_curves["varied"]
    report = outcome.report.read_text()
    assert "| slow |" in report and "diverged" in report

    # running the same sweep again trains nothing
    again = run_sweep(load_sweep_file(tmp_path / "tiny.toml"), tmp_path / "sweeps", train_fn=train)
    assert again.ran == [] and sorted(again.skipped) == ["blowup", "fast", "slow"]
    assert len(read_jsonl(sweep_dir / "results.jsonl")) == 3
    assert merge_specs(spec).name == "tiny"
