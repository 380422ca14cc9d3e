"""`cs336 tokenizer train` end to end, the tokenizer directory (round trips, tokenizer.json), CLI errors."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_basics.errors import UserError
from cs336_basics.tokenizer.tokenizer import Tokenizer
from cs336_basics.tokenizer.tokenizer_dir import load_tokenizer_dir, save_tokenizer_dir
from tests.conftest import MULTILINGUAL, fixture_text, run_cli
from tests.tokenizer.bpe_reference import train_bpe_reference

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, tinystories_train):
    """One CLI training run on real TinyStories text, shared by the tests below."""
    src = tinystories_train
    out = tmp_path_factory.mktemp("cli") / "tok"
    proc = run_cli("tokenizer", "train", "--input", str(src), "--vocab-size", "1000", "--special-token", EOT,
                   "--out", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_cli_writes_all_files_and_prints_summary(trained_dir):
    out, stdout = trained_dir
    assert sorted(p.name for p in out.iterdir()) == ["merges.txt", "meta.json", "tokenizer.json", "vocab.json"]
    assert "bytes/token" in stdout and "longest tokens:" in stdout and "peak RSS" in stdout
    assert "invalid UTF-8: kept as bytes" in stdout
    vocab, merges, specials, meta = load_tokenizer_dir(out)
    assert len(vocab) == 1000 and len(merges) == 1000 - 257 and specials == [EOT]
    assert meta["pattern"] and meta["data"]["fingerprint"] and meta["summary"]["seconds"]["merging"] >= 0
    assert meta["summary"]["heldout"]["end"] > meta["summary"]["heldout"]["start"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_hf_tokenizer_json_encodes_exactly_like_our_encoder(trained_dir, tinystories_valid):
    import tokenizers
    out, _ = trained_dir
    hf = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    ours = Tokenizer.from_dir(out)
    text = tinystories_valid.read_text(encoding="utf-8")[:60_000]
    samples = [text, fixture_text(MULTILINGUAL), "Hello, world! It's 2024.  ok\n\n  x", f"a{EOT}b {EOT}{EOT}", "aaaa    ---- .... \t\n é 日本",
               "don't we'll they've I'M",
               # whitespace and categories where regex engines could disagree (onig vs the regex module)
               "a\x1c\x1d b\x1e\x1f\x85 c\u2028\u2029 d\u00a0\u3000\u1680 e\u200b f\ufeff \u0301x \u2167 \u00b2"]
    for sample in samples:
        assert hf.encode(sample).ids == ours.encode(sample), sample[:80]


def test_gpt2_files_load_in_hf_tokenizers(trained_dir):
    import tokenizers
    out, _ = trained_dir
    model = tokenizers.models.BPE.from_file(str(out / "vocab.json"), str(out / "merges.txt"))
    assert model.token_to_id("Ġthe") is not None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=2, max_size=5), min_size=1, max_size=20, unique=True))
def test_save_load_round_trip_with_odd_bytes(tmp_path, tokens):
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for t in tokens:
        if t not in vocab.values():
            merges.append((t[:1], t[1:]))
            vocab[len(vocab)] = t
    specials = ["<|endoftext|>", "<pad>"]
    for s in specials:
        vocab[len(vocab)] = s.encode()
    out = save_tokenizer_dir(tmp_path / "t", vocab, merges, specials, {"note": "x"})
    got_vocab, got_merges, got_specials, meta = load_tokenizer_dir(out)
    assert (got_vocab, got_merges, got_specials) == (vocab, merges, specials) and meta["note"] == "x"


def test_real_training_round_trips_through_files(tmp_path):
    corpus = "  hello\n\n world\t\t --- ... naïve \xff".encode("utf-8", "surrogateescape") * 3 + b"\xfe\xfe x"
    vocab, merges = train_bpe_reference(corpus, 300, [EOT])
    out = save_tokenizer_dir(tmp_path / "t", vocab, merges, [EOT], {})
    assert load_tokenizer_dir(out)[:3] == (vocab, merges, [EOT])
    assert any(b"\n" in t for t in vocab.values()) and any(b"\xfe" in a + b for a, b in merges)


def test_save_replaces_an_existing_directory_atomically(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)}
    save_tokenizer_dir(tmp_path / "t", vocab, [], [], {"v": 1})
    save_tokenizer_dir(tmp_path / "t", vocab, [], [], {"v": 2})
    assert load_tokenizer_dir(tmp_path / "t")[3]["v"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_save_into_unwritable_location_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError):
        save_tokenizer_dir(tmp_path / "file", {0: b"\x00"}, [], [], {})


def _cli_error(capsys, *args):
    # In-process (cli.main) rather than a subprocess: same exit code and stderr, no interpreter start-up.
    from cs336_basics.cli import main

    capsys.readouterr()
    code = main(["tokenizer", "train", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    good = tmp_path / "in.txt"
    good.write_text("some text to train on " * 50)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "out"

    def error(*args: str) -> str:
        return _cli_error(capsys, "--input", *args)

    assert "not found" in error(str(tmp_path / "missing.txt"), "--vocab-size", "300", "--out", str(out))
    assert "empty" in error(str(empty), "--vocab-size", "300", "--out", str(out))
    assert "--vocab-size 257" in error(str(good), "--vocab-size", "100", "--special-token", EOT, "--out", str(out))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert "not a directory" in error(str(good), "--vocab-size", "300", "--out", str(blocker))
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "not writable" in error(str(good), "--vocab-size", "300", "--out", str(locked / "t"))
    assert "regex" in error(str(good), "--vocab-size", "300", "--pattern", "(", "--out", str(out))
    assert not out.exists()


def test_meta_json_is_valid_and_records_specials(trained_dir):
    out, _ = trained_dir
    meta = json.loads((out / "meta.json").read_text())
    assert meta["special_tokens"] == [EOT] and meta["vocab_size"] == 1000


def test_byte_size_parsing():
    import argparse

    from cs336_basics.commands import byte_size

    assert byte_size("512M") == 512 * 2**20 and byte_size("2g") == 2 * 2**30 and byte_size("1000") == 1000
    assert byte_size("1.5KiB") == 1536
    with pytest.raises(argparse.ArgumentTypeError):
        byte_size("lots")
