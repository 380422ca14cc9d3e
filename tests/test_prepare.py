"""`cs336 prepare`: builds tokenizer + token files, skips what is up to date, rebuilds exactly what is stale."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cs336_basics.datasets import copy_prefix
from cs336_basics.errors import UserError
from cs336_basics.prepare import check_dataset, prepare_dataset
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.tokenizer.token_files import id_range
from tests.conftest import run_cli

VOCAB = 400


@pytest.fixture
def data_dir(tmp_path, tinystories_train, tinystories_valid):
    root = tmp_path / "ts"
    root.mkdir()
    copy_prefix(tinystories_train, root / "train.txt", 120_000)
    copy_prefix(tinystories_valid, root / "valid.txt", 40_000)
    return root


def _mtimes(root: Path) -> dict[str, int]:
    names = ["tokenizer/meta.json", "train.npy", "valid.npy"]
    return {n: (root / n).stat().st_mtime_ns for n in names}


def test_builds_everything_then_skips(data_dir):
    first = prepare_dataset(data_dir, VOCAB, workers=1)
    assert first.built == ["tokenizer", "train", "valid"]
    tok = Tokenizer.from_dir(data_dir / "tokenizer")
    assert tok.vocab_size == VOCAB and tok.eos_id is not None
    ids = np.load(data_dir / "train.npy")
    text = (data_dir / "train.txt").read_text(encoding="utf-8")
    assert ids.dtype == np.uint16
    assert ids.tolist() == tok.encode(text)  # the token file is exactly the encoder's output
    assert first.checks["train"]["max_id"] < VOCAB
    before = _mtimes(data_dir)
    second = prepare_dataset(data_dir, VOCAB, workers=1)
    assert second.built == []
    assert _mtimes(data_dir) == before


def test_changed_valid_rebuilds_only_valid(data_dir):
    prepare_dataset(data_dir, VOCAB, workers=1)
    before = _mtimes(data_dir)
    with open(data_dir / "valid.txt", "a", encoding="utf-8") as fh:
        fh.write("\n<|endoftext|>\nA new story about a cat.")
    result = prepare_dataset(data_dir, VOCAB, workers=1)
    assert result.built == ["valid"]
    after = _mtimes(data_dir)
    assert after["tokenizer/meta.json"] == before["tokenizer/meta.json"] and after["train.npy"] == before["train.npy"]


def test_changed_train_or_vocab_size_rebuilds_all(data_dir):
    prepare_dataset(data_dir, VOCAB, workers=1)
    fingerprint = Tokenizer.from_dir(data_dir / "tokenizer").fingerprint
    text = (data_dir / "train.txt").read_text(encoding="utf-8")
    (data_dir / "train.txt").write_text(text.replace("Lily", "Mila").replace("the", "teh"), encoding="utf-8")
    result = prepare_dataset(data_dir, VOCAB, workers=1)
    assert result.built[:2] == ["tokenizer", "train"]
    # valid.npy depends on the tokenizer's content, not on when it was trained
    changed = Tokenizer.from_dir(data_dir / "tokenizer").fingerprint != fingerprint
    assert changed and result.built == ["tokenizer", "train", "valid"]
    assert prepare_dataset(data_dir, VOCAB + 20, workers=1).built == ["tokenizer", "train", "valid"]
    assert Tokenizer.from_dir(data_dir / "tokenizer").vocab_size == VOCAB + 20


def test_touched_train_does_not_retrain_tokenizer(data_dir):
    prepare_dataset(data_dir, VOCAB, workers=1)
    meta = (data_dir / "tokenizer" / "meta.json").stat().st_mtime_ns
    os.utime(data_dir / "train.txt", None)
    result = prepare_dataset(data_dir, VOCAB, workers=1)
    assert "tokenizer" not in result.built
    assert (data_dir / "tokenizer" / "meta.json").stat().st_mtime_ns == meta


def test_published_file_names_are_found(tmp_path, tinystories_train, tinystories_valid):
    root = tmp_path / "tinystories"
    root.mkdir()
    copy_prefix(tinystories_train, root / "TinyStoriesV2-GPT4-train.txt", 60_000)
    copy_prefix(tinystories_valid, root / "TinyStoriesV2-GPT4-valid.txt", 20_000)
    result = prepare_dataset(root, 300, workers=1)
    assert set(result.token_files) == {"train", "valid"}
    assert (root / "train.npy").exists() and (root / "valid.npy").exists()


def test_check_catches_a_token_file_from_other_text(data_dir):
    prepare_dataset(data_dir, VOCAB, workers=1)
    tok = Tokenizer.from_dir(data_dir / "tokenizer")
    # swap the token files (with their manifests): each still looks valid on its own
    for suffix in ("", ".manifest.json"):
        a, b = data_dir / f"train.npy{suffix}", data_dir / f"valid.npy{suffix}"
        tmp = data_dir / "swap"
        shutil.move(a, tmp), shutil.move(b, a), shutil.move(tmp, b)
    texts = {s: data_dir / f"{s}.txt" for s in ("train", "valid")}
    npys = {s: data_dir / f"{s}.npy" for s in ("train", "valid")}
    with pytest.raises(UserError, match="token file matches text"):
        check_dataset(tok, texts, npys, ["<|endoftext|>"])


def test_id_range_chunked_matches_numpy():
    rng = np.random.default_rng(0)
    arr = rng.integers(-300, 5000, size=10_001).astype(np.int32)
    assert id_range(arr, chunk=97) == (int(arr.min()), int(arr.max()))
    assert id_range(arr[:0]) is None


def test_import_hf_trained_vocab_merges(data_dir, tmp_path):
    """The original workflow's tokenizer files (Hugging Face ByteLevel BPE) are imported and encode identically."""
    import tokenizers
    hf = tokenizers.ByteLevelBPETokenizer()
    hf.train([str(data_dir / "train.txt")], vocab_size=500, min_frequency=2, special_tokens=["<|endoftext|>"],
             show_progress=False)
    hf_dir = tmp_path / "hf_tok"
    hf_dir.mkdir()
    hf.save_model(str(hf_dir))  # vocab.json + merges.txt, GPT-2 format
    result = prepare_dataset(data_dir, VOCAB, workers=1, tokenizer_from=hf_dir)
    assert result.built[0] == "tokenizer"
    text = (data_dir / "valid.txt").read_text(encoding="utf-8")
    ours = np.load(data_dir / "valid.npy").tolist()
    assert ours == hf.encode(text).ids


def test_missing_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="no training text"):
        prepare_dataset(tmp_path, VOCAB)
    with pytest.raises(UserError, match="dataset directory not found"):
        prepare_dataset(tmp_path / "nope", VOCAB)
    (tmp_path / "train.txt").write_text("hello<|endoftext|>world", encoding="utf-8")
    with pytest.raises(UserError, match="at least 257"):
        prepare_dataset(tmp_path, 100)


def test_cli_prepare(data_dir):
    proc = run_cli("prepare", "--data", str(data_dir), "--vocab-size", str(VOCAB), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "built: tokenizer, train, valid" in proc.stdout
    assert (data_dir / "train.npy").exists()
    proc = run_cli("prepare", "--data", str(data_dir / "missing"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
