"""Helpers shared by the training tests: a tiny byte-level dataset directory and tiny run configs.

Not a conftest (that file is shared); the training test modules import from here.
The dataset is real TinyStories text (``tests/fixtures/``), tokenized with a
byte-level tokenizer (256 byte tokens + <|endoftext|>, no merges) through the
real ``cs336 tokenize`` code path, so the token files carry real manifests.
"""

from __future__ import annotations

from pathlib import Path

from cs336_basics.config import RunConfig, apply_overrides
from tests.conftest import TINYSTORIES_VALID, fixture_text


def _story_text(num_chars: int) -> str:
    text = fixture_text(TINYSTORIES_VALID)
    assert len(text) >= num_chars, f"the TinyStories fixture holds {len(text)} characters, {num_chars} wanted"
    return text[:num_chars]


def make_byte_dataset(root: Path, train_chars: int = 60_000, valid_chars: int = 6_000) -> Path:
    """data dir with tokenizer/, train.npy, valid.npy (+ manifests); vocab 257."""
    from cs336_basics.tokenizer import Tokenizer
    from cs336_basics.tokenizer.token_files import tokenize_file
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    root.mkdir(parents=True, exist_ok=True)
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = b"<|endoftext|>"
    save_tokenizer_dir(root / "tokenizer", vocab, [], ["<|endoftext|>"])
    tok = Tokenizer.from_dir(root / "tokenizer")
    text = _story_text(train_chars + valid_chars)
    (root / "train.txt").write_text(text[:train_chars], encoding="utf-8")
    (root / "valid.txt").write_text(text[train_chars:], encoding="utf-8")
    for split in ("train", "valid"):
        tokenize_file(tok, root / f"{split}.txt", root / f"{split}.npy", workers=1)
    return root


def tiny_config(data_dir: Path, runs_dir: Path, *overrides: str) -> RunConfig:
    """A ~50k-parameter model on the byte dataset that trains a step in milliseconds."""
    base = [
        "model.vocab_size=257", "model.context_length=32", "model.d_model=32", "model.num_layers=2",
        "model.num_heads=4", "model.d_ff=64",
        "optimizer.lr_max=3e-3", "optimizer.lr_min=3e-4", "optimizer.warmup_iters=5",
        f"data.dataset_dir={data_dir}",
        f"train.runs_dir={runs_dir}", "train.run_name=tiny", "train.batch_size=8", "train.total_steps=20",
        "train.eval_interval=10", "train.eval_tokens=2048", "train.checkpoint_interval=10", "train.device=cpu",
        "train.samples=false", "logging.log_interval=1", "logging.quiet=true",
    ]
    return apply_overrides(RunConfig(), base + list(overrides))


def train_losses(run_dir: Path) -> dict[int, float]:
    from cs336_basics.runs.metrics import read_jsonl

    return {r["step"]: r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"}
