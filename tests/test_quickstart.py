"""`cs336 quickstart`: data gathering, the unigram baseline (against an oracle), and the whole pipeline (slow)."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.datasets import copy_prefix
from cs336_basics.errors import UserError
from cs336_basics.evaluation.baseline import unigram_baseline
from cs336_basics.config import load_config
from cs336_basics.evaluation.heldout import bytes_per_token, split_at_document, token_byte_lengths
from cs336_basics.quickstart import (REPEATING_DROPOUT, REPEATS_FOR_DROPOUT, RESERVE_FRACTION, gather_data, plan_budget,
                                     repeats, split_off_validation, with_dropout_if_repeating)
from cs336_basics.sample import HERE, SAMPLE_FILES, extract_sample
from tests.conftest import run_cli
from tests.hub_fixtures import LocalServer, corpus, hub_env, use_hub


def _unigram_oracle(train: list[int], valid: list[int], vocab: int) -> float:
    counts = Counter(train)
    total = len(train) + vocab
    return -sum(math.log((counts[t] + 1) / total) for t in valid[1:]) / (len(valid) - 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 19), min_size=1, max_size=200), st.lists(st.integers(0, 19), min_size=2, max_size=50))
def test_unigram_baseline_matches_oracle(train, valid):
    result = unigram_baseline(np.array(train, dtype=np.uint16), np.array(valid, dtype=np.uint16), 20, 4.0)
    expected = _unigram_oracle(train, valid, 20)
    assert result.loss == pytest.approx(expected, rel=1e-9)
    assert result.bits_per_byte == pytest.approx(expected / math.log(2) / 4.0, rel=1e-9)


def test_budget_plan_fast_machine_scores_everything():
    plan = plan_budget(530.0, 0.33, 2048, 221_719, 32_768, 128)
    assert plan.final_eval_tokens is None and plan.eval_tokens == 32_768 and plan.samples
    # predicted time stays inside the budget: steps + final eval + 3 interim evals (+ samples) + the reserve
    fwd = 0.33 / 2048 / 3
    predicted = plan.steps * 0.33 + 221_719 * fwd + 3 * 32_768 * fwd + 3 * 2 * 0.33
    assert 0.85 * 530 < predicted <= (1 - RESERVE_FRACTION) * 530 + 0.33


def test_budget_plan_gives_training_what_evaluation_does_not_need():
    plan = plan_budget(530.0, 0.33, 2048, 221_719, 32_768, 128)
    fwd = 0.33 / 2048 / 3
    # the loop's own budget covers its steps, its evaluations and samples; the final evaluation comes after
    assert plan.train_seconds == pytest.approx((1 - RESERVE_FRACTION) * 530 - 221_719 * fwd)
    assert plan.steps * 0.33 <= plan.train_seconds


def test_budget_plan_slow_machine_shrinks_evaluation_not_below_min_steps():
    plan = plan_budget(470.0, 20.0, 2048, 221_719, 32_768, 128)
    assert plan.steps == 20 and not plan.samples
    assert plan.final_eval_tokens is not None and plan.final_eval_tokens < 221_719
    fwd = 20.0 / 2048 / 3
    assert plan.final_eval_tokens * fwd <= 0.25 * 470 + 1e-6
    assert plan.eval_tokens is None or plan.eval_tokens * 3 * fwd <= 0.1 * 470 + 1e-6


def test_split_off_validation_cuts_at_a_document_boundary(tmp_path):
    docs = [f"story number {i} " * 5 for i in range(100)]
    src = tmp_path / "all.txt"
    src.write_text("\n<|endoftext|>\n".join(docs), encoding="utf-8")
    split_off_validation(src, tmp_path / "train.txt", tmp_path / "valid.txt", fraction=0.1)
    train = (tmp_path / "train.txt").read_text(encoding="utf-8")
    valid = (tmp_path / "valid.txt").read_text(encoding="utf-8")
    assert train.endswith("<|endoftext|>") and valid.startswith("story number")
    assert train + "\n" + valid == src.read_text(encoding="utf-8")
    assert 0.05 < len(valid) / len(train) < 0.15
    (tmp_path / "plain.txt").write_text("no separators at all", encoding="utf-8")
    with pytest.raises(UserError, match="--valid"):
        split_off_validation(tmp_path / "plain.txt", tmp_path / "t.txt", tmp_path / "v.txt")


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    """The TinyStories sample bundled with the package, unpacked once for this module."""
    return extract_sample(tmp_path_factory.mktemp("sample"))


def test_gather_data_links_local_files_and_reruns_idempotently(tmp_path, sample_files):
    root = tmp_path / "data"
    gather_data(root, sample_files["train"], sample_files["valid"], None)
    assert (root / "train.txt").resolve() == sample_files["train"].resolve()
    assert (root / "valid.txt").read_bytes() == sample_files["valid"].read_bytes()
    gather_data(root, sample_files["train"], sample_files["valid"], None)  # second time: nothing changes, no error
    single = tmp_path / "single.txt"
    copy_prefix(sample_files["train"], single, 200_000)
    gather_data(tmp_path / "d2", single, None, None)
    stamp = (tmp_path / "d2" / ".split_source").read_text()
    gather_data(tmp_path / "d2", single, None, None)
    assert (tmp_path / "d2" / ".split_source").read_text() == stamp
    assert (tmp_path / "d2" / "valid.txt").stat().st_size > 0


def test_bundled_sample_is_real_tinystories_and_checked(tmp_path):
    files = extract_sample(tmp_path)
    for f in SAMPLE_FILES:
        data = files[f.split].read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256
        # whole stories separated by the published delimiter lines
        assert data.count(b"<|endoftext|>") == f.stories - (0 if data.rstrip().endswith(b"<|endoftext|>") else 1)
        assert data.decode("utf-8").count("Once upon a time") > f.stories // 4
    assert (HERE / "README.md").read_text().count("CDLA-Sharing-1.0") >= 1
    # up to date: not rewritten; damaged: restored
    before = files["train"].stat().st_mtime_ns
    extract_sample(tmp_path)
    assert files["train"].stat().st_mtime_ns == before
    files["valid"].write_bytes(b"damaged")
    extract_sample(tmp_path)
    assert hashlib.sha256(files["valid"].read_bytes()).hexdigest() == SAMPLE_FILES[1].sha256


def test_gather_data_sample_replaces_an_earlier_split(tmp_path, sample_files):
    root = tmp_path / "data"
    single = tmp_path / "single.txt"
    copy_prefix(sample_files["train"], single, 100_000)
    gather_data(root, single, None, None)
    gather_data(root, "sample", None, None)
    assert not (root / ".split_source").exists()
    assert (root / "train.txt").read_bytes() == sample_files["train"].read_bytes()
    gather_data(root, single, None, None)  # back to the split file: split again, not the sample's valid
    assert (root / "valid.txt").stat().st_size < 100_000


def _closed_port_url() -> str:
    """An http URL on 127.0.0.1 that refuses connections: a machine without network, as far as we can tell."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_gather_data_falls_back_to_the_sample_without_network(tmp_path, monkeypatch, capsys, sample_files):
    use_hub(monkeypatch, _closed_port_url(), tmp_path / "hf")
    started = time.perf_counter()
    gather_data(tmp_path / "data", None, None, None)
    assert time.perf_counter() - started < 30  # one connection attempt, not the whole retry schedule
    assert (tmp_path / "data" / "train.txt").read_bytes() == sample_files["train"].read_bytes()
    assert (tmp_path / "data" / "valid.txt").read_bytes() == sample_files["valid"].read_bytes()
    err = capsys.readouterr().err
    assert "cannot download" in err and "sample shipped with the package" in err and "cs336 download" in err


def test_quickstart_bad_input_is_one_line(tmp_path):
    proc = run_cli("quickstart", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "qs"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "missing.txt" in proc.stderr


TINY = ["model.vocab_size=300", "model.d_model=32", "model.num_layers=1", "model.num_heads=2",
        "model.context_length=32", "train.batch_size=16", "train.total_steps=120", "train.eval_interval=60",
        "train.eval_tokens=2048", "train.checkpoint_interval=60", "optimizer.warmup_iters=10",
        "train.eval_batch_size=64", "logging.log_interval=30"]


@pytest.mark.slow
def test_quickstart_without_network_or_data_runs_on_the_bundled_sample(tmp_path, sample_files):
    """The README's first command with no arguments on an offline machine: the bundled sample is used and the
    whole pipeline runs (tiny model, fixed steps, a 40 KB validation slice to keep it quick)."""
    valid = tmp_path / "valid.txt"
    copy_prefix(sample_files["valid"], valid, 40_000)
    args = ["quickstart", "--valid", str(valid), "--out", str(tmp_path / "qs"), "--workers", "1"]
    for assignment in TINY:
        args += ["--set", assignment]
    proc = run_cli(*args, timeout=900, env={**hub_env(_closed_port_url(), tmp_path / "hf"), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sample shipped with the package" in proc.stderr
    assert "unigram baseline:" in proc.stdout and "test:" in proc.stdout and "development:" in proc.stdout and "--- story 1 ---" in proc.stdout
    out = tmp_path / "qs"
    assert (out / "data" / "train.txt").read_bytes() == sample_files["train"].read_bytes()
    summary = json.loads((out / "quickstart.json").read_text())
    assert summary["steps"] == 120
    # scored with the final weights: best.pt is picked on the start of the same validation file
    assert Path(summary["checkpoint"]).name == "latest.pt"
    # the trained model must beat the context-free baseline it is printed next to, on the same (test) tokens
    assert summary["test_loss"] < summary["unigram_loss"] - 0.1
    assert summary["test_bpb"] < summary["unigram_bpb"]
    assert len(summary["samples"]) == 3
    for name in ("data/tokenizer/vocab.json", "data/train.npy", "data/valid.npy", "quickstart.md",
                 "runs/quickstart/config.toml", "runs/quickstart/metrics.jsonl", "runs/quickstart/report.md"):
        assert (out / name).exists(), name


def test_gather_data_downloads_a_prefix_when_no_data_is_given(tmp_path, monkeypatch):
    """No --data: a TinyStories prefix comes from the (here: local) mirror, train and valid linked in place."""
    from tests.test_download import TS_TRAIN, TS_VALID

    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / TS_TRAIN).write_bytes(corpus(300, 3))
    (remote / TS_VALID).write_bytes(corpus(40, 4))
    server = LocalServer(remote)
    use_hub(monkeypatch, server.url, tmp_path / "hf")
    try:
        gather_data(tmp_path / "qs" / "data", None, None, max_bytes=20_000)
    finally:
        server.close()
    train = (tmp_path / "qs" / "data" / "train.txt").read_bytes()
    assert 0 < len(train) <= 20_000 and train.endswith(b"<|endoftext|>")
    assert (remote / TS_TRAIN).read_bytes().startswith(train)
    assert (tmp_path / "qs" / "data" / "valid.txt").read_bytes() == (remote / TS_VALID).read_bytes()


def _hog() -> "subprocess.Popen":
    """A second CPU-bound process on the machine, as the quickstart's budget must survive one."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@pytest.mark.slow
def test_quickstart_keeps_its_budget_on_a_loaded_machine(tmp_path, sample_files):
    """A 1-minute budget with another process spinning on a core: the command ends within the budget plus one
    evaluation of the validation slice (the training loop re-plans its steps from the speed it measures)."""
    valid = tmp_path / "valid.txt"
    copy_prefix(sample_files["valid"], valid, 40_000)
    args = ["quickstart", "--data", "sample", "--valid", str(valid), "--out", str(tmp_path / "qs"), "--workers", "1",
            "--minutes", "1"]
    for assignment in [a for a in TINY if not a.startswith(("train.total_steps", "train.eval_interval",
                                                              "train.checkpoint_interval"))]:
        args += ["--set", assignment]
    hog = _hog()
    try:
        started = time.perf_counter()
        proc = run_cli(*args, timeout=900, env={"OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - started
    finally:
        hog.kill()
        hog.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    evaluate = summary["seconds"]["evaluate"]
    assert summary["seconds"]["total"] <= 60 + evaluate + 5, summary["seconds"]
    assert wall <= 60 + evaluate + 20  # process start-up and imports on top
    assert summary["test_loss"] < summary["unigram_loss"]
    # the budget's evaluation sizes keep the evaluations during training inside the development half
    cfg = load_config(tmp_path / "qs" / "runs" / "quickstart" / "config.toml")
    assert cfg.train.eval_tokens <= summary["dev_half_tokens"] < summary["valid_tokens"]


@pytest.mark.slow
def test_an_interrupted_quickstart_resumes(tmp_path, sample_files):
    """SIGTERM during training: exit 143 with the command that continues; --resume finishes the same run."""
    import os
    import signal
    import subprocess
    import sys

    valid = tmp_path / "valid.txt"
    copy_prefix(sample_files["valid"], valid, 40_000)
    out = tmp_path / "qs"
    args = ["quickstart", "--data", "sample", "--valid", str(valid), "--out", str(out), "--workers", "1",
            "--minutes", "0"]
    for assignment in [a for a in TINY if not a.startswith("train.total_steps")] + [
            "train.total_steps=600", "train.checkpoint_interval=10", "train.eval_interval=300"]:
        args += ["--set", assignment]
    env = {**os.environ, "CS336_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cs336_basics", *args], stderr=subprocess.PIPE, text=True, env=env)
    ckpt = out / "runs" / "quickstart" / "checkpoints" / "latest.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 143, err[-2000:]
    assert f"cs336 quickstart --resume --out {out}" in err.splitlines()[-1]
    assert not (out / "quickstart.json").exists()
    proc = run_cli("quickstart", "--resume", "--out", str(out), timeout=900, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "quickstart.json").read_text())
    assert summary["steps"] == 600
    events = [json.loads(line)["event"] for line in (out / "runs" / "quickstart" / "metrics.jsonl").open()]
    assert events.count("resume") == 1 and events[-1] == "end"


def test_dropout_only_when_the_run_repeats_its_data():
    cfg = load_config("quickstart")
    per_step = cfg.train.batch_size * cfg.model.context_length
    train_tokens = 100 * per_step
    assert repeats(cfg, 400, train_tokens) == pytest.approx(4.0)
    few = with_dropout_if_repeating(cfg, int(100 * REPEATS_FOR_DROPOUT) - 1, train_tokens, None)
    assert few is cfg and cfg.model.residual_pdrop == 0 and cfg.model.attn_pdrop == 0
    many = with_dropout_if_repeating(cfg, int(100 * REPEATS_FOR_DROPOUT), train_tokens, None)
    assert (many.model.residual_pdrop, many.model.attn_pdrop) == (REPEATING_DROPOUT, REPEATING_DROPOUT)
    assert many.model.d_model == cfg.model.d_model and many.optimizer == cfg.optimizer


def test_dropout_chosen_by_the_user_is_kept():
    off = load_config("quickstart", ["model.residual_pdrop=0"])
    assert with_dropout_if_repeating(off, 10**6, 1000, ["model.residual_pdrop=0"]) is off
    own = load_config("quickstart", ["model.attn_pdrop=0.3"])
    kept = with_dropout_if_repeating(own, 10**6, 1000, None)
    assert kept is own and kept.model.attn_pdrop == 0.3 and kept.model.residual_pdrop == 0


EOT = 7


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 6), min_size=0, max_size=30), min_size=1, max_size=20),
       st.integers(1, 40))
def test_held_out_split_is_at_the_document_boundary_nearest_the_middle(docs, min_tokens):
    tokens = np.array([t for doc in docs for t in doc + [EOT]], dtype=np.uint16)
    split = split_at_document(tokens, EOT, min_tokens)
    ends = [i + 1 for i, t in enumerate(tokens) if t == EOT]
    best = min(ends, key=lambda e: abs(2 * e - len(tokens)))
    if min(best, len(tokens) - best) < min_tokens:
        assert split is None
        return
    assert split is not None and split.cut == best and tokens[split.cut - 1] == EOT
    dev, test = split.dev(tokens), split.test(tokens)
    # the halves partition the tokens: dev is the leading part, test the rest, no document in both
    assert np.array_equal(np.concatenate([dev, test]), tokens) and len(dev) == split.dev_tokens
    assert len(dev) >= min_tokens and len(test) >= min_tokens


def test_held_out_split_needs_a_delimiter_and_room_for_two_halves():
    tokens = np.array([1, 2, 3, EOT, 4, 5, 6, EOT], dtype=np.uint16)
    assert split_at_document(tokens, EOT, 4).cut == 4
    assert split_at_document(tokens, EOT, 5) is None  # 8 tokens cannot hold two halves of 5
    assert split_at_document(tokens, None, 2) is None  # a tokenizer without <|endoftext|>
    assert split_at_document(np.array([1, 2, 3, 4, 5, 6], dtype=np.uint16), EOT, 2) is None
    # one long story and a short one: the only cut leaves a half too small
    assert split_at_document(np.array([1] * 20 + [EOT, 2, EOT], dtype=np.uint16), EOT, 3) is None


def test_bytes_per_token_counts_each_halfs_own_text():
    lengths = token_byte_lengths({0: b"a", 1: b"bcd", 2: b"<|endoftext|>"})
    assert bytes_per_token(np.array([0, 1, 1, 2], dtype=np.uint16), lengths) == (1 + 3 + 3 + 13) / 4
    assert bytes_per_token(np.array([], dtype=np.uint16), lengths) is None


FAST = ["model.vocab_size=300", "model.d_model=16", "model.num_layers=1", "model.num_heads=2", "model.d_ff=32",
        "model.context_length=32", "train.batch_size=4", "train.total_steps=4", "train.eval_interval=2",
        "train.checkpoint_interval=4", "optimizer.warmup_iters=1", "train.eval_batch_size=64",
        "train.samples=false", "logging.log_interval=2"]


def _fast_quickstart(tmp_path, sample_files, valid_bytes: int | None, name: str):
    """A quickstart of a few steps on 60 KB of the sample; ``valid_bytes`` of its validation stories (None: the first
    story alone)."""
    train = tmp_path / "train.txt"
    copy_prefix(sample_files["train"], train, 60_000)
    valid = tmp_path / f"valid-{name}.txt"
    if valid_bytes is None:
        first = sample_files["valid"].read_bytes().split(b"<|endoftext|>")[0]
        valid.write_bytes(first + b"<|endoftext|>\n")
    else:
        copy_prefix(sample_files["valid"], valid, valid_bytes)
    out = tmp_path / name
    args = ["quickstart", "--data", str(train), "--valid", str(valid), "--out", str(out), "--workers", "1",
            "--minutes", "0"]
    for assignment in FAST:
        args += ["--set", assignment]
    proc = run_cli(*args, timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, sample_files):
    tmp = tmp_path_factory.mktemp("split")
    return _fast_quickstart(tmp, sample_files, 30_000, "qs")


def test_quickstart_scores_a_held_out_half_nothing_was_evaluated_on(split_run):
    proc, out = split_run
    summary = json.loads((out / "quickstart.json").read_text())
    valid = np.load(out / "data" / "valid.npy", mmap_mode="r")
    dev_len, test_len = summary["dev_half_tokens"], summary["test_half_tokens"]
    assert dev_len + test_len == len(valid) == summary["valid_tokens"]
    assert abs(dev_len - test_len) < len(valid) // 4  # a document boundary near the middle
    from cs336_basics.tokenizer import Tokenizer
    assert valid[dev_len - 1] == Tokenizer.from_dir(out / "data" / "tokenizer").eos_id
    # the evaluations during training read the leading eval_tokens: inside the development half
    cfg = load_config(out / "runs" / "quickstart" / "config.toml")
    assert cfg.train.eval_tokens <= dev_len and not cfg.train.final_eval
    events = [json.loads(line) for line in (out / "runs" / "quickstart" / "metrics.jsonl").open()]
    evals = [e for e in events if e["event"].startswith("eval")]
    assert evals and all(e["event"] == "eval" and e["val_tokens"] <= dev_len for e in evals)
    # both figures, whole halves, the test half first and named as the held-out one
    assert summary["test_tokens"] >= test_len - 1 and summary["dev_tokens"] >= dev_len - 1
    for key in ("test_loss", "test_bpb", "dev_loss", "dev_bpb", "unigram_loss"):
        assert math.isfinite(summary[key]), key
    assert summary["gain_over_unigram"] == pytest.approx(summary["unigram_loss"] - summary["test_loss"])
    lines = proc.stdout.splitlines()
    test_line = next(i for i, line in enumerate(lines) if line.startswith("test:"))
    assert "held-out half" in lines[test_line] and "nothing chosen on it" in lines[test_line]
    assert lines[test_line + 1].startswith("development:")
    assert f"{summary['test_bpb']:.3f} bits/byte" in lines[test_line]
    assert f"{summary['dev_bpb']:.3f} bits/byte" in lines[test_line + 1]
    assert "test half" in (out / "quickstart.md").read_text()


def test_a_slow_machine_scores_the_leading_part_of_each_half(split_run):
    from cs336_basics.quickstart import _final_scores, held_out_split
    from cs336_basics.runs.trained import load_trained_model
    from cs336_basics.tokenizer import Tokenizer

    _, out = split_run
    loaded = load_trained_model(out / "runs" / "quickstart")
    cfg = load_config(out / "runs" / "quickstart" / "config.toml")
    tokenizer = Tokenizer.from_dir(out / "data" / "tokenizer")
    valid = np.load(out / "data" / "valid.npy", mmap_mode="r")
    train = np.load(out / "data" / "train.npy", mmap_mode="r")
    split = held_out_split(valid, tokenizer, cfg.model.context_length)
    test, dev, uni = _final_scores(loaded.model, cfg, tokenizer, train, valid, split, 400)
    assert test.total == split.test_tokens and dev.total == split.dev_tokens
    assert 0 < test.tokens <= 200 and 0 < dev.tokens <= 200
    # the leading part of each half: the same figure as evaluating those tokens directly
    from cs336_basics.evaluation import evaluate_loss
    direct = evaluate_loss(loaded.model, split.test(valid)[:200], cfg.model.context_length, 64)
    assert test.loss == pytest.approx(direct.loss, rel=1e-6)
    assert uni.loss == pytest.approx(unigram_baseline(train, split.test(valid)[:200], cfg.model.vocab_size, None).loss)


def test_a_validation_text_too_small_to_split_says_so_and_scores_it_whole(tmp_path, sample_files):
    proc, out = _fast_quickstart(tmp_path, sample_files, None, "small")
    assert "no held-out test half" in proc.stderr
    summary = json.loads((out / "quickstart.json").read_text())
    assert summary["test_loss"] is None and summary["test_half_tokens"] is None
    assert math.isfinite(summary["dev_loss"]) and summary["dev_half_tokens"] == summary["valid_tokens"]
    assert "no held-out half" in proc.stdout and "test:" not in proc.stdout


def test_the_quickstart_benchmark_reads_both_figures_from_the_real_summary(split_run):
    from benchmarks.bench_quickstart import summary_metrics

    proc, out = split_run
    summary = json.loads((out / "quickstart.json").read_text())
    found = summary_metrics(proc.stdout)
    assert found["test bits per byte"] == pytest.approx(summary["test_bpb"], abs=5e-4)
    assert found["development bits per byte"] == pytest.approx(summary["dev_bpb"], abs=5e-4)
    assert found["test nats below unigram"] == pytest.approx(summary["gain_over_unigram"], abs=5e-3)
    with pytest.raises(RuntimeError, match="test bits per byte"):
        summary_metrics(proc.stdout.replace("test:", "validation:"))
