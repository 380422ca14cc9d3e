"""The training loop end to end on a tiny model: overfitting, exact resume, divergence, signals, CLI errors."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336_basics.errors import UserError
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.training.loop import train
from tests.conftest import run_cli
from tests.training_fixtures import make_byte_dataset, tiny_config, train_losses


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_byte_dataset(tmp_path_factory.mktemp("data") / "bytes")


def test_tiny_model_overfits_one_batch_below_0_1(tmp_path):
    # a training file of exactly one window: every batch is the same sequence
    from cs336_basics.config import apply_overrides

    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog again!", dtype=np.uint8)
    tokens = text[:33].astype(np.uint16)
    np.save(tmp_path / "one.npy", tokens)
    cfg = tiny_config(tmp_path, tmp_path / "runs")
    cfg = apply_overrides(cfg, ["data.dataset_dir=none", f"data.train_path={tmp_path / 'one.npy'}",
                                "train.total_steps=40", "train.batch_size=1", "optimizer.lr_max=2e-2",
                                "optimizer.lr_min=2e-2", "optimizer.weight_decay=0", "optimizer.warmup_iters=0",
                                "train.checkpoint_interval=1000", "train.eval_interval=0",
                                "logging.log_interval=10"])
    result = train(cfg)
    losses = train_losses(result.run_dir)
    assert result.stop_reason == "completed" and not result.diverged
    assert losses[10] > 1.0 and losses[40] < 0.1, losses
    assert result.final_val_loss is None  # validation turned off (eval_interval=0): no validation file needed


def test_run_directory_layout_metrics_and_result(dataset, tmp_path):
    result = train(tiny_config(dataset, tmp_path))
    run = result.run_dir
    assert (result.steps, result.tokens, result.stop_reason, result.exit_code) == (20, 20 * 8 * 32, "completed", 0)
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"step_0000010.pt", "step_0000020.pt", "latest.pt",
                                                                 "best.pt"}
    assert (run / "config.toml").exists() and (run / "model.safetensors").exists()
    records = read_jsonl(run / "metrics.jsonl")
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "end" and events.count("eval") == 2
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 21))
    for r in train_records:
        assert {"step", "tokens", "wallclock", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(r)
    evals = [r for r in records if r["event"] == "eval"]
    assert {"val_loss", "val_ppl", "val_bpb"} <= set(evals[0])
    assert result.final_val_loss == evals[-1]["val_loss"]
    assert result.best_val_loss == min(e["val_loss"] for e in evals)
    assert evals[-1]["val_loss"] < math.log(257)  # it learned something
    lrs = [r["lr"] for r in train_records]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-4)
    # periodic passes use the eval_tokens subset; the run ends with one pass over the whole validation file
    (full,) = [r for r in records if r["event"] == "eval_full"]
    assert evals[-1]["val_tokens"] <= 2048 < full["val_tokens"]
    assert records[-1]["full_val_loss"] == full["val_loss"] and math.isfinite(full["val_loss"])


def test_load_trained_model_from_run_dir_and_file(dataset, tmp_path):
    from safetensors.torch import load_file

    from cs336_basics.runs.trained import load_trained_model

    result = train(tiny_config(dataset, tmp_path, "train.total_steps=10", "train.eval_interval=5"))
    loaded = load_trained_model(result.run_dir)
    assert loaded.checkpoint_path.name == "best.pt" and loaded.run_dir == result.run_dir
    assert not loaded.model.training and loaded.config.model.d_model == 32
    assert loaded.tokenizer_dir == (dataset / "tokenizer").resolve()
    assert loaded.tokenizer().vocab_size == 257
    by_file = load_trained_model(result.run_dir / "checkpoints" / "latest.pt")
    assert by_file.step == 10 and by_file.run_dir == result.run_dir
    exported = load_file(result.run_dir / "model.safetensors")
    for key, value in by_file.model.state_dict().items():
        assert torch.equal(exported[key], value)


def test_resume_is_exact(dataset, tmp_path):
    straight = train(tiny_config(dataset, tmp_path, "train.run_name=straight"))
    first = train(tiny_config(dataset, tmp_path, "train.run_name=split", "train.stop_at_step=10",
                              "model.residual_pdrop=0.1"))
    assert (first.stop_reason, first.steps) == ("stop_at_step", 10)
    straight_dropout = train(tiny_config(dataset, tmp_path, "train.run_name=straight_dropout",
                                         "model.residual_pdrop=0.1"))
    second = train(tiny_config(dataset, tmp_path, "train.run_name=split", "model.residual_pdrop=0.1"), resume="auto")
    assert second.steps == 20 and second.stop_reason == "completed"
    expected, got = train_losses(straight_dropout.run_dir), train_losses(second.run_dir)
    assert got == expected  # bit-for-bit, dropout included
    assert train_losses(straight.run_dir) != expected  # (dropout really changes the run)
    assert second.final_val_loss == straight_dropout.final_val_loss
    steps = [r["step"] for r in read_jsonl(second.run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert steps == list(range(1, 21))  # no step logged twice


def test_resume_drops_metrics_written_after_the_checkpoint(dataset, tmp_path):
    cfg = tiny_config(dataset, tmp_path, "train.stop_at_step=15")
    train(cfg)  # checkpoints at 10 and 15; pretend the run died after logging step 15 but we resume from 10
    run = tmp_path / "tiny"
    (run / "checkpoints" / "latest.pt").unlink()
    (run / "checkpoints" / "step_0000015.pt").unlink()
    result = train(tiny_config(dataset, tmp_path), resume="auto")
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "train"]
    assert steps == list(range(1, 21)) and result.steps == 20


def test_gradient_accumulation_matches_one_big_batch(dataset, tmp_path):
    one = train(tiny_config(dataset, tmp_path, "train.run_name=one", "train.total_steps=6"))
    acc = train(tiny_config(dataset, tmp_path, "train.run_name=acc", "train.total_steps=6", "train.grad_accum_steps=2"))
    a, b = train_losses(one.run_dir), train_losses(acc.run_dir)
    assert a.keys() == b.keys()
    for step in a:
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])


def test_nonfinite_losses_skip_updates_and_stop_the_run(dataset, tmp_path, monkeypatch):
    import cs336_basics.training.step as step

    real = step.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] > 12 else loss

    monkeypatch.setattr(step, "cross_entropy", poisoned)
    result = train(tiny_config(dataset, tmp_path, "train.max_nonfinite=3", "train.checkpoint_interval=5"))
    assert result.diverged and result.stop_reason == "diverged_nonfinite" and result.exit_code == 3
    assert result.steps == 15
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    assert [r["in_a_row"] for r in records if r["event"] == "nonfinite"] == [1, 2, 3]
    assert records[-1]["event"] == "end" and records[-1]["diverged"] is True
    # the last good checkpoint is kept and the skipped updates never touched the weights
    ckpt = torch.load(result.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["iteration"] == 10
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_exploding_loss_stops_the_run_as_diverged(dataset, tmp_path):
    # steps 1 and 2 show the initial weights (the first update has learning rate 0): not judged
    result = train(tiny_config(dataset, tmp_path, "train.divergence_loss=1.0"))
    assert result.diverged and result.stop_reason == "diverged_loss" and result.steps == 3
    end = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
    assert end["event"] == "end" and end["stop_reason"] == "diverged_loss"


def test_fresh_run_refuses_to_clobber_an_existing_run(dataset, tmp_path):
    train(tiny_config(dataset, tmp_path, "train.total_steps=2"))
    with pytest.raises(UserError, match="--resume auto"):
        train(tiny_config(dataset, tmp_path, "train.total_steps=2"))
    again = train(tiny_config(dataset, tmp_path, "train.total_steps=3", "train.overwrite=true"))
    assert again.steps == 3
    # a run that died before its first checkpoint: --resume auto starts it over instead of refusing
    for path in (tmp_path / "tiny" / "checkpoints").iterdir():
        path.unlink()
    restarted = train(tiny_config(dataset, tmp_path, "train.total_steps=2"), resume="auto")
    assert restarted.steps == 2
    assert [r["event"] for r in read_jsonl(tmp_path / "tiny" / "metrics.jsonl")][0] == "start"


def test_train_checkpoint_starts_a_new_run_from_another_runs_weights(dataset, tmp_path):
    first = train(tiny_config(dataset, tmp_path, "train.run_name=a", "train.total_steps=2"))
    ckpt = first.run_dir / "checkpoints" / "latest.pt"
    for resume in (None, "auto"):  # auto finds nothing in the new run and falls back to train.checkpoint
        second = train(tiny_config(dataset, tmp_path, f"train.run_name=b{resume}", "train.total_steps=4",
                                   f"train.checkpoint={ckpt}"), resume=resume)
        assert second.steps == 4
        assert sorted(train_losses(second.run_dir)) == [3, 4]


def test_resume_with_a_different_model_is_a_clear_error(dataset, tmp_path):
    train(tiny_config(dataset, tmp_path, "train.total_steps=2"))
    with pytest.raises(UserError, match="model.d_model=32"):
        train(tiny_config(dataset, tmp_path, "train.total_steps=4", "model.d_model=64"), resume="auto")


def test_total_tokens_derive_the_number_of_steps(dataset, tmp_path):
    result = train(tiny_config(dataset, tmp_path, "train.total_steps=none", "train.total_tokens=1300"))
    assert result.steps == 1300 // (8 * 32)


def test_token_file_made_by_another_tokenizer_is_rejected(dataset, tmp_path):
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    manifest = data / "train.npy.manifest.json"
    meta = json.loads(manifest.read_text())
    meta["tokenizer_fingerprint"] = "0" * 64
    manifest.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="different tokenizer"):
        train(tiny_config(data, tmp_path))
    with pytest.raises(UserError, match="vocab_size"):
        train(tiny_config(dataset, tmp_path, "model.vocab_size=100"))


@pytest.mark.parametrize("key, package", [("logging.wandb", "wandb"), ("logging.tensorboard", "tensorboard")])
def test_missing_tracker_package_is_a_clear_error_before_any_work(dataset, tmp_path, key, package, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec  # the package is made to look absent, installed here or not
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else find_spec(name, *a))
    with pytest.raises(UserError, match=f"{package} is not installed"):
        train(tiny_config(dataset, tmp_path, f"{key}=true"))
    assert not (tmp_path / "tiny").exists()


def test_trackers_receive_every_logged_event(dataset, tmp_path, monkeypatch):
    import cs336_basics.training.loop as loop
    from cs336_basics.training.trackers import Tracker

    seen = []

    class Recorder(Tracker):
        run_id = "abc123"

        def log(self, event, step, values):
            seen.append((event, step, values.get("loss"), values.get("val_loss")))

        def close(self):
            seen.append(("closed", None, None, None))

    monkeypatch.setattr(loop, "build_trackers", lambda *a, **k: [Recorder()])
    result = train(tiny_config(dataset, tmp_path, "train.total_steps=4", "train.eval_interval=2",
                               "logging.log_interval=2"))
    assert [e for e, *_ in seen] == ["start", "train", "eval", "train", "eval", "eval_full", "end", "closed"]
    assert [s for e, s, *_ in seen if e == "train"] == [2, 4]
    ckpt = torch.load(result.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["wandb_run_id"] == "abc123"  # a resumed run continues the same W&B run


def test_wandb_run_continues_only_in_the_same_run_directory(dataset, tmp_path, monkeypatch):
    """Resuming a run continues its W&B run; a new run started from that run's checkpoint gets a W&B run of its own."""
    import cs336_basics.training.loop as loop
    from cs336_basics.training.trackers import Tracker

    given = []

    class Recorder(Tracker):
        def __init__(self, run_id):
            self.run_id = run_id or "fresh"

        def log(self, event, step, values):
            pass

        def close(self):
            pass

    def build(logging, run_name, root, config, wandb_run_id):
        given.append(wandb_run_id)
        return [Recorder(wandb_run_id)]

    monkeypatch.setattr(loop, "build_trackers", build)
    first = train(tiny_config(dataset, tmp_path, "train.total_steps=4", "train.stop_at_step=2"))
    train(tiny_config(dataset, tmp_path, "train.total_steps=4"), resume="auto")
    train(tiny_config(dataset, tmp_path, "train.total_steps=4", "train.run_name=other",
                      f"train.checkpoint={first.run_dir / 'checkpoints' / 'latest.pt'}"))
    assert given == [None, "fresh", None]


# ----------------------------------------------------------------------------- CLI


def _cli_args(dataset: Path, runs: Path, *extra: str) -> list[str]:
    cfg_args = ["--set", "model.vocab_size=257", "--set", "model.context_length=32", "--set", "model.d_model=32",
                "--set", "model.num_layers=2", "--set", "model.num_heads=4", "--set", "model.d_ff=64",
                "--set", "train.device=cpu", "--set", "train.samples=false", "--set", "train.eval_tokens=1024"]
    return ["train", "--dataset", str(dataset), "--runs-dir", str(runs), "--run-name", "cli", "--batch-size", "4",
            *cfg_args, *extra]


@pytest.mark.parametrize("extra, needle", [
    (["--set", "train.grad_accum_steps=3"], "divisible"),
    (["--set", "train.nope=1"], "train.nope"),
    (["--set", "train.device=tpu"], "train.device"),
    (["--set", "model.vocab_size=100"], "vocab_size"),
    (["--resume", "/nonexistent/ckpt.pt"], "not found"),
])
def test_cli_config_errors_are_one_line_exit_2(dataset, tmp_path, extra, needle, capsys):
    from cs336_basics.cli import main

    code = main(_cli_args(dataset, tmp_path, "--total-steps", "2", *extra))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and needle in lines[-1] and lines[-1].startswith("cs336: error:"), err
    assert not (tmp_path / "cli" / "checkpoints").exists() or not any((tmp_path / "cli" / "checkpoints").iterdir())


@pytest.mark.slow
def test_cli_missing_dataset_subprocess_exit_2(tmp_path):
    proc = run_cli("train", "--dataset", str(tmp_path / "nope"), "--total-steps", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "nope" in proc.stderr


def test_cli_shortcuts_and_resolved_config_written(dataset, tmp_path):
    from cs336_basics.cli import main

    code = main(_cli_args(dataset, tmp_path, "--total-steps", "3", "--lr-max", "0.002", "--warmup-iters", "1",
                          "--eval-batch-size", "3", "--set", "logging.quiet=true"))
    assert code == 0
    from cs336_basics.config import load_config

    cfg = load_config(tmp_path / "cli" / "config.toml")
    assert (cfg.optimizer.lr_max, cfg.optimizer.warmup_iters, cfg.train.eval_batch_size, cfg.train.batch_size) == \
        (0.002, 1, 3, 4)
    assert cfg.data.dataset_dir == str(dataset)


def test_sigint_in_process_finishes_the_step_and_saves(dataset, tmp_path):
    import threading

    cfg = tiny_config(dataset, tmp_path, "train.total_steps=100000", "train.checkpoint_interval=100000",
                      "train.eval_interval=100000")
    metrics = tmp_path / "tiny" / "metrics.jsonl"

    def interrupt_after_three_steps():
        deadline = time.time() + 120
        while time.time() < deadline and sum(r["event"] == "train" for r in read_jsonl(metrics)) < 3:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under a background shell job
    threading.Thread(target=interrupt_after_three_steps, daemon=True).start()
    result = train(cfg)
    assert (result.stop_reason, result.exit_code, result.diverged) == ("sigint", 130, False)
    ckpt = torch.load(tmp_path / "tiny" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["iteration"] == result.steps >= 3
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


@pytest.mark.slow
def test_sigint_finishes_the_step_saves_and_exits_130_then_resume_completes(dataset, tmp_path):
    env = {**os.environ, "CS336_NO_PROGRESS": "1"}
    args = _cli_args(dataset, tmp_path, "--total-steps", "100000", "--set", "train.checkpoint_interval=100000",
                     "--set", "train.eval_interval=100000", "--set", "logging.log_interval=1")
    proc = subprocess.Popen([sys.executable, "-m", "cs336_basics", *args], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    metrics = tmp_path / "cli" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and sum(r["event"] == "train" for r in read_jsonl(metrics)) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    end = read_jsonl(metrics)[-1]
    assert end["event"] == "end" and end["stop_reason"] == "sigint"
    ckpt = torch.load(tmp_path / "cli" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["iteration"] == end["step"] >= 3
    from cs336_basics.cli import main  # the resume half in-process: one interpreter start is enough

    assert main(_cli_args(dataset, tmp_path, "--total-steps", str(end["step"] + 2), "--resume", "auto")) == 0
    assert read_jsonl(metrics)[-1]["step"] == end["step"] + 2


def test_second_signal_aborts_at_once():
    from cs336_basics.training.signals import StopRequest

    before = signal.getsignal(signal.SIGINT)
    with StopRequest(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.requested and stop.name == "SIGTERM" and stop.exit_code == 143
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_the_throughput_clock_counts_the_loops_own_work(dataset, tmp_path, monkeypatch):
    """The logged tokens/s and the overhead fraction include the logging and the finiteness guard: a 50 ms sleep in
    the guard at every logged step shows up in the summed step times and in the end event."""
    from cs336_basics.training.loop import Trainer

    guard = Trainer._guard_finite
    pause = 0.05

    def slow_guard(self, *args, **kwargs):
        time.sleep(pause)
        return guard(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_guard_finite", slow_guard)
    cfg = tiny_config(dataset, tmp_path, "train.total_steps=12", "train.eval_interval=100",
                      "train.checkpoint_interval=100")
    result = train(cfg)
    events = read_jsonl(result.run_dir / "metrics.jsonl")
    tokens_per_step = cfg.tokens_per_step()
    steps = [e for e in events if e["event"] == "train"]
    assert len(steps) == 12
    # every window but the first carries the previous log point's guard
    assert sum(tokens_per_step / e["tokens_per_s"] for e in steps) >= 11 * pause
    end = next(e for e in events if e["event"] == "end")
    compute = end["time_compute"]
    assert end["overhead_fraction"] >= 11 * pause / (11 * pause + compute + 1.0)
