"""What every fault test checks: the one-line error, a tiny training command, and the files on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cs336_basics.cli import main


def cli(capsys, *args) -> tuple[int, str]:
    """``cs336 ARGS`` in this process: its exit code (argparse's usage errors included) and its stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def one_line_error(err: str) -> str:
    """The last line of ``err``, asserted to be the CLI's one-line error with no traceback before it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith("cs336: error:"), err
    return lines[-1]


def train_args(dataset: Path, runs: Path, *extra: str, steps: int = 6) -> list[str]:
    """``cs336 train`` on ``dataset`` with a one-layer, 32-wide model: run ``r`` under ``runs``, ``steps`` steps,
    a checkpoint every 2 and an evaluation every 3 steps."""
    return ["train", "--dataset", str(dataset), "--runs-dir", str(runs), "--run-name", "r", "--batch-size", "4",
            "--total-steps", str(steps), "--set", "model.context_length=32", "--set", "model.d_model=32",
            "--set", "model.num_layers=1", "--set", "model.num_heads=4", "--set", "train.device=cpu",
            "--set", "train.samples=false", "--set", "train.eval_tokens=512", "--set", "train.checkpoint_interval=2",
            "--set", "train.eval_interval=3", "--set", "logging.quiet=true", *extra]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (a symlink as its target) -> the SHA-256 of its content."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = "link:" + str(path.readlink())
        elif path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
