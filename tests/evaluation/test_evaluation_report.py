"""Samples during training, the run report and `cs336 eval`/`cs336 report` on a small real run directory.

The run directory is built here by hand from the package's own parts (a byte-level tokenizer, a
token file with its manifest, a tiny TransformerLM checkpoint and a metrics.jsonl with a known
power-law validation curve), so these tests do not depend on a training run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cs336_basics.config import RunConfig, to_dict
from cs336_basics.evaluation import read_samples, write_training_samples
from cs336_basics.model import ModelConfig, TransformerLM
from cs336_basics.runs.layout import RunDir
from cs336_basics.runs.metrics import MetricsLog
from cs336_basics.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


TEXT = ("Once upon a time there was a little dog named Max. Max liked to run in the park with his friend Sam. "
        "One day they found a big red ball under a tree.\n<|endoftext|>\n") * 40


def _byte_tokenizer_dir(path):
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = b"<|endoftext|>"
    return save_tokenizer_dir(path, vocab, [], ["<|endoftext|>"], {})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """runs/tiny with config, checkpoint, metrics; data/ with tokenizer/, train.txt, valid.npy (+ manifest)."""
    from cs336_basics.tokenizer import Tokenizer
    from cs336_basics.tokenizer.token_files import tokenize_file
    from cs336_basics.runs.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("evalrun")
    data = root / "data"
    data.mkdir()
    _byte_tokenizer_dir(data / "tokenizer")
    (data / "train.txt").write_text(TEXT, encoding="utf-8")
    (data / "valid.txt").write_text(TEXT[:3000], encoding="utf-8")
    tok = Tokenizer.from_dir(data / "tokenizer")
    tokenize_file(tok, data / "valid.txt", data / "valid.npy", workers=1)

    cfg = RunConfig()
    cfg.model = ModelConfig(vocab_size=257, context_length=32, d_model=32, num_layers=1, num_heads=2)
    cfg.data.dataset_dir = str(data)
    cfg.train.run_name = "tiny"
    torch.manual_seed(0)
    model = TransformerLM(cfg.model)
    run = RunDir(root / "runs" / "tiny").create()
    run.write_config(cfg)
    save_checkpoint(model, None, 100, run.checkpoints / "best.pt", config=to_dict(cfg))

    with MetricsLog(run.metrics_path, start_time=0.0) as log:
        for step in range(10, 1010, 10):
            tokens = step * 1024
            log.log("train", step=step, tokens=tokens, wallclock=step * 0.1, loss=2.0 + 30 * tokens ** -0.35 + 0.05,
                    lr=1e-3 * min(1.0, step / 100), grad_norm=1.0 / math.sqrt(step), tokens_per_s=10240.0)
            if step % 50 == 0:
                log.log("eval", step=step, tokens=tokens, wallclock=step * 0.1 + 0.05,
                        val_loss=2.0 + 30 * tokens ** -0.35, val_ppl=math.exp(2.0 + 30 * tokens ** -0.35),
                        val_bpb=1.1, val_top1=0.3, val_top5=0.6)
        log.log("end", step=1000, tokens=1000 * 1024, stop_reason="completed")
    for step in (500, 1000):
        write_training_samples(model, tok, run, step, max_new_tokens=24, seed=0)
    return {"root": root, "run": run, "data": data, "model": model, "tokenizer": tok, "cfg": cfg}


def test_training_samples_files_metrics_and_determinism(tiny_run):
    run, model, tok = tiny_run["run"], tiny_run["model"], tiny_run["tokenizer"]
    model.train()
    model.lm_head.eval() if hasattr(model, "lm_head") else None
    modes = [(m, m.training) for m in model.modules()]
    metrics = write_training_samples(model, tok, run, 7, max_new_tokens=24, seed=0)
    again = write_training_samples(model, tok, run, 8, max_new_tokens=24, seed=0)
    assert all(m.training == mode for m, mode in modes)
    assert metrics == again  # same prompts, same seed, same weights -> same samples
    for key in ("distinct_1", "distinct_2", "distinct_3", "repetition_4gram", "eos_rate", "mean_tokens", "in_vocab_rate"):
        assert key in metrics
    assert 0.0 <= metrics["in_vocab_rate"] <= 1.0  # the vocabulary came from data/train.txt via the run config
    saved = {s["step"]: s for s in read_samples(run)}
    assert saved[7]["samples"] == saved[8]["samples"] and len(saved[7]["samples"]) >= 1
    md = (run.samples / "step_0000007.md").read_text(encoding="utf-8")
    assert "distinct_1" in md and "Sample 1" in md


def test_reference_perplexity_in_samples(tiny_run):
    run, model, tok = tiny_run["run"], tiny_run["model"], tiny_run["tokenizer"]
    metrics = write_training_samples(model, tok, run, 9, max_new_tokens=16, seed=1, reference_model=model)
    # sampling at temperature 0.8 from the model itself: the reference perplexity is finite and above 1
    assert 1.0 < metrics["reference_ppl"] < 257 * 4


def _cli(capsys, *args, cwd=None, monkeypatch=None):
    """Run the CLI in this process (a subprocess costs a torch import); returns (code, stdout, stderr)."""
    if cwd is not None:
        monkeypatch.chdir(cwd)
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_one_line_error(code, err):
    """Exit 2 with one error line; ``warning:`` lines before it (e.g. a token file without a manifest) may precede it."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and "Traceback" not in err, err


def test_report_cli_sections_plots_fit_and_errors(tiny_run, tmp_path, capsys):
    run = tiny_run["run"]
    page = tmp_path / "r.md"
    code, stdout, err = _cli(capsys, "report", str(run.root), "--out", str(page))
    assert code == 0, err
    assert stdout.strip() == str(page)
    text = page.read_text(encoding="utf-8")
    for heading in ("## Summary", "## Learning curves", "## Convergence", "## Samples", "## Configuration"):
        assert heading in text
    for name in ("loss_vs_steps.png", "loss_vs_wallclock.png", "lr_vs_steps.png", "grad_norm_vs_steps.png",
                 "tokens_per_s_vs_steps.png", "convergence.png"):
        link = next(line for line in text.splitlines() if line.startswith("![") and name in line)
        target = (tmp_path / link[link.index("(") + 1: link.index(")")]).resolve()  # relative to the page
        assert target == (run.plots / name).resolve() and target.stat().st_size > 1000
    # the validation curve is exactly 2 + 30 t^-0.35: the report's fit must say so
    row = next(line for line in text.splitlines() if line.startswith("| asymptote E"))
    assert float(row.split("|")[2]) == pytest.approx(2.0, abs=0.01)
    assert "**Plateau verdict:** improving" in text
    assert "| 500 |" in text and "| 1000 |" in text  # the sample-metrics table has both sample steps
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line_error(*_cli(capsys, "report", str(empty))[::2])


def test_eval_cli_matches_library_and_reports_bits_per_byte(tiny_run, tmp_path, capsys, monkeypatch):
    from cs336_basics.evaluation import evaluate_loss
    from cs336_basics.tokenizer.token_files import read_manifest

    data, model = tiny_run["data"], tiny_run["model"]
    out = tmp_path / "eval.json"
    code, stdout, err = _cli(capsys, "eval", "--checkpoint", str(tiny_run["run"].root), "--batch-size", "3",
                             "--json", str(out), cwd=tiny_run["root"], monkeypatch=monkeypatch)
    assert code == 0, err
    got = json.loads(out.read_text())
    assert got["data"].endswith("valid.npy")  # found through the run config
    tokens = np.load(data / "valid.npy")
    manifest = read_manifest(data / "valid.npy")
    expected = evaluate_loss(model, tokens, 32, 8, bytes_per_token=manifest["num_bytes"] / manifest["num_tokens"])
    assert got["loss"] == pytest.approx(expected.loss, rel=1e-6)
    assert got["num_tokens"] == len(tokens) - 1
    # bytes per token from the manifest: UTF-8 bytes of valid.txt over its token count
    assert manifest["num_bytes"] == len((data / "valid.txt").read_bytes())
    assert got["bits_per_byte"] == pytest.approx(expected.loss / math.log(2) / (manifest["num_bytes"] / len(tokens)),
                                                 rel=1e-6)
    assert "bits/byte" in stdout and "top-1" in stdout

    code, _, err = _cli(capsys, "eval", "--checkpoint", str(tiny_run["run"].checkpoints / "best.pt"), "--data",
                        str(data / "valid.npy"), "--stride", "8", "--samples", "--samples-per-prompt", "2", "--max-new-tokens", "8",
                        "--reference-checkpoint", str(tiny_run["run"].root), "--json", str(out))
    assert code == 0, err
    got = json.loads(out.read_text())
    assert got["stride"] == 8 and got["num_tokens"] == len(tokens) - 1
    from cs336_basics.generation import DEFAULT_PROMPTS

    assert got["samples"]["reference_ppl"] > 1.0 and got["samples"]["num_samples"] == 2 * len(DEFAULT_PROMPTS)


def test_eval_cli_bad_input_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([1, 2, 3000], dtype=np.uint16))
    cases = [
        ["--checkpoint", str(tmp_path / "missing.pt")],
        ["--checkpoint", str(tiny_run["run"].root), "--data", str(bad)],
        ["--checkpoint", str(tiny_run["run"].root), "--stride", "64"],
    ]
    monkeypatch.chdir(tiny_run["root"])
    for args in cases:
        with pytest.raises(SystemExit) if args[1].endswith("missing.pt") else _no_exit() as exc:
            code, _, err = _cli(capsys, "eval", *args)
        if exc is not None and getattr(exc, "value", None) is not None:  # argparse rejected the path
            code, err = exc.value.code, capsys.readouterr().err
        _assert_one_line_error(code, err)


class _no_exit:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_report_on_a_sweep_directory_writes_the_sweep_report(tmp_path, capsys, monkeypatch):
    import cs336_basics.reporting.sweep_report as sweep_report

    calls = []

    def fake_sweep_report(path):
        calls.append(path)
        return path / "report.md"

    monkeypatch.setattr(sweep_report, "write_sweep_report", fake_sweep_report)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.jsonl").write_text('{"name": "a", "status": "finished"}\n')
    code, stdout, err = _cli(capsys, "report", str(sweep))
    assert code == 0, err
    assert calls == [sweep] and stdout.strip() == str(sweep / "report.md")
