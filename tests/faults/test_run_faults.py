"""Fault injection on the run side: bad settings, non-finite weights, rejected resumes, two trainers, a full
disk, a closed pipe, a double Ctrl-C, wrong tokenizers. Each case asserts the exit code or exception, the
one-line message, and what is (or is not) left on disk."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cs336_basics.runs.checkpoint as checkpoint_module
from cs336_basics.errors import DiskFullError, UserError
from cs336_basics.runs.checkpoint import CheckpointManager, first_nonfinite, read_checkpoint, save_checkpoint
from cs336_basics.runs.lock import RunLock
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir
from cs336_basics.training.loop import train
from cs336_basics.training.optimizer import AdamW
from cs336_basics.training.signals import StopRequest
from tests.faults.cli_checks import cli, one_line_error, train_args
from tests.conftest import REPO, run_cli
from tests.training_fixtures import make_byte_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_byte_dataset(tmp_path_factory.mktemp("faults") / "data")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize("setting, needle", [
    ("optimizer.lr_max=nan", "optimizer.lr_max must be a finite number"),
    ("optimizer.lr_max=inf", "optimizer.lr_max must be a finite number"),
    ("optimizer.eps=0", "optimizer.eps must be > 0"),
    ("optimizer.weight_decay=nan", "optimizer.weight_decay must be a finite number"),
    ("optimizer.grad_clip=-1", "optimizer.grad_clip must be > 0, or 0"),
    ("model.rope_theta=0", "model.rope_theta must be a finite number > 0"),
    ("train.seed=-1", "train.seed must be an integer"),
    ("model.d_model=100000000", "beyond any model"),
])
def test_settings_that_would_train_garbage_are_rejected_before_anything_is_written(dataset, tmp_path, capsys,
                                                                                  setting, needle):
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--set", setting))
    assert code == 2 and needle in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_string_settings_keep_their_text(dataset, tmp_path, capsys):
    """--run-name nan (or inf, 1e3, true) is a name, not a number."""
    for name in ("nan", "1e3", "true"):
        code, err = cli(capsys, *train_args(dataset, tmp_path, "--run-name", name, "--total-steps", "1"))
        assert code == 0, err
        assert (tmp_path / name / "config.toml").is_file()


# ----------------------------------------------------------------------------- non-finite weights


def _poison_after(monkeypatch, steps: int) -> None:
    """AdamW leaves NaN in the weights from update ``steps`` on, while the loss of that step was finite."""
    real = AdamW.step
    count = {"n": 0}

    def step(self, closure=None):
        loss = real(self, closure)
        count["n"] += 1
        if count["n"] >= steps:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return loss

    monkeypatch.setattr(AdamW, "step", step)


def test_nonfinite_weights_stop_the_run_and_no_checkpoint_holds_them(dataset, tmp_path, monkeypatch):
    _poison_after(monkeypatch, 5)
    result = train(tiny_config(dataset, tmp_path, "train.checkpoint_interval=1", "train.eval_interval=100"))
    assert result.diverged and result.stop_reason == "diverged_nonfinite" and result.exit_code == 3
    assert result.steps == 5
    ckpts = CheckpointManager(result.run_dir / "checkpoints")
    assert ckpts.step_files() and max(step for step, _ in ckpts.step_files()) == 4
    for path in [p for _, p in ckpts.step_files()] + [ckpts.latest_path]:
        obj = read_checkpoint(path)
        assert first_nonfinite(obj["model"]) is None, path
    assert read_checkpoint(ckpts.latest_path)["iteration"] == 4
    assert not (result.run_dir / "model.safetensors").exists()
    events = [r["event"] for r in read_jsonl(result.run_dir / "metrics.jsonl")]
    assert "nonfinite_weights" in events and events[-1] == "end"


def test_a_run_that_ends_with_nonfinite_weights_is_not_completed(dataset, tmp_path, monkeypatch):
    """Without a checkpoint every step, the last step's NaN weights must still not become model.safetensors."""
    _poison_after(monkeypatch, 20)
    result = train(tiny_config(dataset, tmp_path, "train.total_steps=20"))
    assert result.stop_reason == "diverged_nonfinite" and result.exit_code == 3
    assert not (result.run_dir / "model.safetensors").exists()
    assert read_checkpoint(result.run_dir / "checkpoints" / "latest.pt")["iteration"] == 10


def _nan_checkpoint_run(dataset: Path, tmp_path: Path) -> Path:
    result = train(tiny_config(dataset, tmp_path, "train.total_steps=4", "train.checkpoint_interval=2"))
    run = result.run_dir
    obj = read_checkpoint(run / "checkpoints" / "best.pt")
    obj["model"]["layers.0.ffn.w1.weight"][0, 0] = float("nan")
    for name in ("best.pt", "latest.pt"):
        (run / "checkpoints" / name).unlink()
        torch.save(obj, run / "checkpoints" / name)
    return run


def test_eval_export_generate_and_resume_refuse_nonfinite_checkpoints(dataset, tmp_path, capsys):
    run = _nan_checkpoint_run(dataset, tmp_path)
    for args in (["eval", "--checkpoint", str(run)], ["export", "--checkpoint", str(run), "--out", str(tmp_path / "x")],
                 ["generate", "--checkpoint", str(run), "--prompt", "Once", "--max-tokens", "3"]):
        code, err = cli(capsys, *args)
        line = one_line_error(err)
        assert code == 2 and "non-finite" in line and "layers.0.ffn.w1.weight" in line, (args, err)
    assert not (tmp_path / "x").exists()
    cfg_before = _digest(run / "config.toml")
    with pytest.raises(UserError, match="non-finite.*layers.0.ffn.w1.weight"):
        train(tiny_config(dataset, tmp_path, "train.total_steps=8", "train.checkpoint_interval=2"), resume="auto")
    assert _digest(run / "config.toml") == cfg_before


# ----------------------------------------------------------------------------- resume, lock, temp files


@pytest.mark.parametrize("change, needle", [
    (["--set", "model.d_model=64"], "model.d_model"),
    (["--total-steps", "3"], "past the run"),
    (["--set", "data.tokenizer_dir=OTHER"], "different tokenizer"),
])
def test_a_rejected_resume_writes_nothing(dataset, tmp_path, capsys, change, needle):
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "4"))
    assert code == 0, err
    run = tmp_path / "r"
    other = tmp_path / "other_tok"
    vocab = {i: bytes([255 - i]) for i in range(256)}
    vocab[256] = b"<|endoftext|>"
    save_tokenizer_dir(other, vocab, [], ["<|endoftext|>"])
    before = {p.relative_to(run): _digest(p) for p in run.rglob("*") if p.is_file()}
    change = [c.replace("OTHER", str(other)) for c in change]
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "4", *change), "--resume", "auto")
    assert code == 2 and needle in one_line_error(err)
    after = {p.relative_to(run): _digest(p) for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_orphan_temp_files_of_killed_saves_are_removed_at_start(dataset, tmp_path, capsys):
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "4"))
    assert code == 0, err
    orphans = [tmp_path / "r" / "checkpoints" / ".step_0000004.pt.99999.tmp",
               tmp_path / "r" / "checkpoints" / ".latest.pt.99998.tmp", tmp_path / "r" / "config.toml.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"partial")
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "6"), "--resume", "auto")
    assert code == 0, err
    assert not any(o.exists() for o in orphans)
    assert "removed 3 temp file(s)" in err


def test_a_second_trainer_on_the_same_run_directory_is_refused(dataset, tmp_path, capsys):
    run = tmp_path / "r"
    with RunLock(run / ".lock"):
        code, err = cli(capsys, *train_args(dataset, tmp_path))
    line = one_line_error(err)
    assert code == 2 and "in use by another trainer" in line and f"pid {os.getpid()}" in line
    assert not (run / "metrics.jsonl").exists() and not (run / "config.toml").exists()
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "2"))  # released: it runs
    assert code == 0, err


def test_the_lock_is_held_by_a_running_trainer_process(dataset, tmp_path):
    """Two real processes: the second one fails while the first trains, naming the first one's pid."""
    args = train_args(dataset, tmp_path, "--total-steps", "100000", "--set", "train.checkpoint_interval=100000")
    first = subprocess.Popen([sys.executable, "-m", "cs336_basics", *args], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "CS336_NO_PROGRESS": "1"})
    try:
        deadline = time.time() + 120
        while not (tmp_path / "r" / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "r" / "metrics.jsonl").exists(), "the first trainer never started"
        second = run_cli(*args)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    ends = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if r["event"] == "end"]
    assert len(ends) == 1  # one trainer wrote this run


# ----------------------------------------------------------------------------- environment


def test_disk_full_during_a_checkpoint_is_a_clear_error_and_keeps_the_last_one(dataset, tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:  # the second checkpoint finds the disk full part-way through
            f.write(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    with pytest.raises(DiskFullError, match=r"no space left on device at .*step_0000004\.pt; free space and rerun "
                                            r"with --resume auto"):
        train(tiny_config(dataset, tmp_path, "train.checkpoint_interval=2", "train.eval_interval=100"))
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    folder = tmp_path / "tiny" / "checkpoints"
    assert read_checkpoint(folder / "latest.pt")["iteration"] == 2
    assert not list(folder.glob(".*.tmp"))


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head, less) is already gone
    proc = subprocess.run([sys.executable, "-m", "cs336_basics", "train", "--help-config"], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_a_second_signal_during_a_save_waits_for_the_save(dataset, tmp_path, monkeypatch):
    """Ctrl-C twice while a checkpoint is written: the checkpoint completes, then the run aborts (exit 130)."""
    real = CheckpointManager.save
    seen = {}

    def impatient_save(self, state, step):
        os.kill(os.getpid(), signal.SIGINT)  # the first asks for a graceful stop...
        os.kill(os.getpid(), signal.SIGINT)  # ...the second would abort in the middle of the write
        path = real(self, state, step)
        seen["path"] = path
        return path

    monkeypatch.setattr(CheckpointManager, "save", impatient_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(dataset, tmp_path, "train.checkpoint_interval=3", "train.eval_interval=100"))
    assert read_checkpoint(seen["path"])["iteration"] == 3
    assert read_checkpoint(tmp_path / "tiny" / "checkpoints" / "latest.pt")["iteration"] == 3


def test_deferred_signals_in_isolation():
    stop = StopRequest(announce=False)
    with stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done = True  # the protected work finishes before the abort
        assert done


# ----------------------------------------------------------------------------- inputs that look wrong


def _empty_valid_dataset(root: Path) -> Path:
    from cs336_basics.tokenizer import Tokenizer
    from cs336_basics.tokenizer.token_files import tokenize_file

    make_byte_dataset(root)
    (root / "valid.txt").write_text("Once upon", encoding="utf-8")
    tokenize_file(Tokenizer.from_dir(root / "tokenizer"), root / "valid.txt", root / "valid.npy", workers=1,
                  force=True)
    return root


def test_a_validation_split_shorter_than_one_window_is_rejected_before_step_1(tmp_path, capsys):
    data = _empty_valid_dataset(tmp_path / "data")
    code, err = cli(capsys, *train_args(data, tmp_path / "runs"))
    line = one_line_error(err)
    assert code == 2 and "fewer than one window" in line and "valid.npy" in line
    assert not (tmp_path / "runs" / "r").exists()


def test_vocab_size_comes_from_the_tokenizer_and_a_mismatch_is_an_error(dataset, tmp_path, capsys):
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--set", "model.vocab_size=300"))
    line = one_line_error(err)
    assert code == 2 and "model.vocab_size is 300" in line and "model.vocab_size=257" in line
    assert not (tmp_path / "r").exists()
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "1"))  # unset: the tokenizer's
    assert code == 0, err
    assert "vocab_size = 257" in (tmp_path / "r" / "config.toml").read_text()


def test_generate_with_another_tokenizer_of_the_same_size_is_refused(dataset, tmp_path, capsys):
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "2"))
    assert code == 0, err
    other = tmp_path / "other_tok"
    vocab = {i: bytes([255 - i]) for i in range(256)}  # same size, every byte mapped to another id
    vocab[256] = b"<|endoftext|>"
    save_tokenizer_dir(other, vocab, [], ["<|endoftext|>"])
    code, err = cli(capsys, "generate", "--checkpoint", str(tmp_path / "r"), "--tokenizer", str(other),
                     "--prompt", "Once", "--max-tokens", "3")
    assert code == 2 and "not the one" in one_line_error(err)
    code, err = cli(capsys, "generate", "--checkpoint", str(tmp_path / "r"), "--tokenizer",
                     str(dataset / "tokenizer"), "--prompt", "Once", "--max-tokens", "3")
    assert code == 0, err


def test_a_yaml_alias_bomb_is_refused_quickly_in_one_short_line(tmp_path, capsys):
    # nine levels of twelve references: 12^9 (5 billion) strings once expanded, in a few hundred bytes
    lines = ["x0: &x0 [" + ", ".join(['"lol"'] * 12) + "]"]
    for level in range(1, 10):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * 12) + "]")
    lines.append("train: {run_name: *x9}")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    code, err = cli(capsys, "model", "info", "--config", str(bomb))
    assert time.perf_counter() - started < 10
    line = one_line_error(err)
    assert code == 2 and "YAML aliases" in line and len(line) < 300


def test_a_checkpoint_whose_config_describes_a_huge_model_is_refused_before_allocating(dataset, tmp_path, capsys):
    result = train(tiny_config(dataset, tmp_path, "train.total_steps=2"))
    obj = read_checkpoint(result.run_dir / "checkpoints" / "latest.pt")
    obj["config"]["model"].update(d_model=16384, num_layers=512, num_heads=64, d_ff=None)  # ~1.6 T parameters
    fake = tmp_path / "huge.pt"
    save_checkpoint(torch.nn.Linear(1, 1), None, 0, fake)
    torch.save(obj, fake)
    started = time.perf_counter()
    code, err = cli(capsys, "eval", "--checkpoint", str(fake), "--data", str(dataset / "valid.npy"))
    assert time.perf_counter() - started < 30
    assert code == 2 and "describes a model of" in one_line_error(err)


def test_a_sweep_name_cannot_leave_its_output_folder(tmp_path, capsys):
    code, err = cli(capsys, "sweep", "--name", "..", "--out", str(tmp_path / "sweeps"),
                     "--grid", "optimizer.lr_max=1e-3,3e-3", "--dry-run")
    assert code == 2 and "plain directory name" in one_line_error(err)
    assert not (tmp_path / "sweep.json").exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_first_nonfinite_agrees_with_isfinite_everywhere(dtype, bad):
    """The fast check (aminmax) against the obvious one (isfinite(v).all()), a bad value at every kind of position."""
    gen = torch.Generator().manual_seed(0)
    for position in (0, 1, 63, 64, 65, 4095, 4096 * 3 - 1):
        tensors = {"ints": torch.arange(5), "empty": torch.zeros(0, dtype=dtype),
                   "a": torch.randn(4096 * 3, generator=gen).to(dtype), "b": torch.randn(17, 5, generator=gen).to(dtype)}
        if bad is not None:
            tensors["a"].view(-1)[position] = bad
        expected = next((k for k, v in tensors.items()
                         if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        assert first_nonfinite(tensors) == expected
        assert (expected is None) == (bad is None)
