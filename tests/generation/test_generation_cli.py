"""`cs336 generate` end to end: run directories, checkpoint + --tokenizer, prompts from files and stdin, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cs336_basics.config import DataConfig, RunConfig, dump_config, to_dict
from cs336_basics.model import ModelConfig, TransformerLM
from cs336_basics.runs.checkpoint import save_checkpoint
from tests.conftest import run_cli as _run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


def run_cli(*args: str, **kwargs):
    # tiny models: one thread avoids oversubscribing a busy machine
    return _run_cli(*args, env={"OMP_NUM_THREADS": "1"}, **kwargs)


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``cs336 ARGS`` in this process (no interpreter start-up per call); returns code/stdout/stderr."""
    import io
    import sys

    from cs336_basics.cli import main

    def invoke(*args: str, input: str | None = None) -> Ran:
        if input is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(input.encode("utf-8")), encoding="utf-8"))
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return invoke


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A run directory with a (randomly initialised) checkpoint and a byte-level tokenizer beside it."""
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    root = tmp_path_factory.mktemp("gen")
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = b"th"
    vocab[257] = b"<|endoftext|>"
    tok_dir = save_tokenizer_dir(root / "data" / "tokenizer", vocab, [(b"t", b"h")], ["<|endoftext|>"], {})
    cfg = RunConfig(model=ModelConfig(vocab_size=320, context_length=48, d_model=32, num_layers=2, num_heads=2),
                    data=DataConfig(tokenizer_dir=str(tok_dir)))
    run = root / "runs" / "tiny"
    (run / "checkpoints").mkdir(parents=True)
    dump_config(cfg, run / "config.toml")
    model = TransformerLM(cfg.model, seed=0)
    save_checkpoint(model, None, 7, run / "checkpoints" / "best.pt", config=to_dict(cfg))
    # a bare checkpoint elsewhere: the original "tokenizer dir + checkpoint file" workflow
    loose = root / "loose.pt"
    save_checkpoint(model, None, 7, loose, config=to_dict(RunConfig(model=cfg.model)))
    return {"run": run, "tokenizer": tok_dir, "loose": loose, "root": root}


def test_generate_from_run_directory_is_reproducible(trained):
    # a real process: streaming to a pipe, stats on stderr, the console entry point
    args = ["generate", "--checkpoint", str(trained["run"]), "--prompt", "Once upon a time", "--max-tokens", "20",
            "--seed", "1", "--temperature", "0.9", "--top-k", "40", "--top-p", "0.9"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Once upon a time")
    assert first.stdout == second.stdout
    assert "tokens/s" in first.stderr


def test_checkpoint_file_with_explicit_tokenizer(cli, trained):
    proc = cli("generate", "--checkpoint", str(trained["loose"]), "--tokenizer", str(trained["tokenizer"]),
                   "--prompt", "the", "--max-tokens", "10", "--temperature", "0", "--ignore-eos")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("the")


def test_checkpoint_without_tokenizer_says_how_to_fix(cli, trained):
    line = _one_line_error(cli("generate", "--checkpoint", str(trained["loose"]), "--prompt", "x"))
    assert "tokenizer" in line


def test_prompt_file_num_samples_and_batch(cli, trained, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("One day\n\nThe cat\n", encoding="utf-8")
    common = ["generate", "--checkpoint", str(trained["run"]), "--prompt-file", str(prompts), "--num-samples", "2",
              "--max-tokens", "8", "--temperature", "0", "--ignore-eos"]
    streamed = cli(*common)
    batched = cli(*common, "--batch")
    assert streamed.returncode == 0 and batched.returncode == 0, streamed.stderr + batched.stderr
    assert streamed.stdout.count("=== sample") == 4
    # greedy: streaming one by one and one left-padded batch print the same samples
    assert streamed.stdout == batched.stdout


def test_prompt_from_stdin(cli, trained):
    proc = cli("generate", "--checkpoint", str(trained["run"]), "--prompt", "-", "--max-tokens", "5",
                   "--temperature", "0", "--ignore-eos", input="Once\nupon\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Once\nupon")


def test_no_cache_prints_the_same_greedy_text(cli, trained):
    common = ["generate", "--checkpoint", str(trained["run"]), "--prompt", "abc", "--max-tokens", "12",
              "--temperature", "0", "--ignore-eos"]
    assert cli(*common).stdout == cli(*common, "--no-cache").stdout


@pytest.mark.parametrize("args,needle", [
    (["--checkpoint", "MISSING"], "MISSING"),
    (["--top-p", "1.5"], "top-p"),
    (["--top-k", "0"], "top-k"),
    (["--temperature", "-1"], "temperature"),
    (["--device", "cuda:7"], "device"),
])
def test_bad_arguments_are_one_line_errors(cli, trained, args, needle):
    base = ["generate", "--prompt", "x", "--max-tokens", "2"]
    if "--checkpoint" not in args:
        base += ["--checkpoint", str(trained["run"])]
    line = _one_line_error(cli(*base, *args))
    assert needle in line


def test_tokenizer_that_does_not_fit_the_model(cli, trained, tmp_path):
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for i in range(100):  # 357 ids > the model's 320
        a, b = bytes([65 + i % 26]), bytes([97 + i // 26])
        vocab[256 + i] = a + b
        merges.append((a, b))
    vocab[356] = b"<|endoftext|>"
    big = save_tokenizer_dir(tmp_path / "big", vocab, merges, ["<|endoftext|>"], {})
    line = _one_line_error(cli("generate", "--checkpoint", str(trained["run"]), "--tokenizer", str(big),
                                   "--prompt", "x"))
    assert "tokenizer" in line
    assert json.loads((big / "meta.json").read_text())["vocab_size"] == 357
