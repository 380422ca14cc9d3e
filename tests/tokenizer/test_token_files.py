"""Token files: parallel tokenization equals encode, manifests catch staleness, writes are atomic, CLI errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.errors import UserError
from cs336_basics.tokenizer import token_files
from cs336_basics.tokenizer.token_files import (dtype_for, manifest_path, open_token_file, plan_ranges,
                                                read_manifest, staleness, tokenize_file)
from cs336_basics.tokenizer.tokenizer import Tokenizer, _native_module
from tests.conftest import GPT2_DIR, run_cli
from tests.tokenizer.encode_reference import gpt2_tokenizer, make_tokenizer, truncated_gpt2

EOT = "<|endoftext|>"
NATIVE = _native_module() is not None  # file tokenization is tested on whichever path this install has


@pytest.fixture(scope="module")
def tok():
    vocab, merges = truncated_gpt2(str(GPT2_DIR), 2000)
    return make_tokenizer(vocab, merges, [EOT], native=NATIVE)


@pytest.fixture
def corpus(tmp_path, tinystories_valid):
    path = tmp_path / "valid.txt"
    path.write_bytes(tinystories_valid.read_bytes()[:300_000])
    return path


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_file_equals_encode_for_any_worker_count(tok, corpus, tmp_path, workers):
    out = tmp_path / "valid.npy"
    manifest = tokenize_file(tok, corpus, out, workers=workers)
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint16 and ids.tolist() == tok.encode(corpus.read_text(encoding="utf-8"))
    assert manifest["num_tokens"] == len(ids) and manifest["num_bytes"] == corpus.stat().st_size
    assert manifest["skipped"] is False and read_manifest(out)["num_tokens"] == len(ids)


def test_many_ranges_with_invalid_utf8_equal_encode_bytes(tok, tmp_path):
    data = ("Once upon a time, ünïcode 😀 and " + EOT + " more text\n").encode() * 400
    data = data[:5000] + b"\xff\xfe broken \xe2\x82 bytes " + data[5000:] + b"\xc3"
    path = tmp_path / "mixed.txt"
    path.write_bytes(data)
    ranges = plan_ranges(path, len(data), 37, tok.special_tokens)
    assert len(ranges) > 20 and ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    old = token_files.MAX_RANGE
    token_files.MAX_RANGE = 1000  # many small work items through the pool
    try:
        tokenize_file(tok, path, tmp_path / "mixed.npy", workers=2)
    finally:
        token_files.MAX_RANGE = old
    assert np.load(tmp_path / "mixed.npy").tolist() == tok.encode_bytes(data)


_PIECES = ["Once", " upon", " a time", ",", " ", "  ", "\n", "\n\n", "ünï", "😀", "漢字かな", "12345", "'s", "'ll",
           EOT, "<|endo", "ftext|>", "\xff", "\xe2\x82", "https://example.com/a_b-c?d=1", "aaaa", "\t"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=120), st.integers(2, 64), st.integers(1, 400))
def test_byte_chunker_equals_encode_bytes_with_and_without_the_text_fallback(tok, tmp_path_factory, pieces,
                                                                             chunk, fallback):
    """Tiny chunk and fallback sizes push every cut decision (byte cuts, specials near a cut, no cut for a
    long stretch, the switch to the text chunker mid-range) through text built to stress them."""
    data = b"".join(p.encode("latin1") if p in ("\xff", "\xe2\x82") else p.encode() for p in pieces)
    path = tmp_path_factory.mktemp("chunks") / "t.txt"
    path.write_bytes(data)
    saved = token_files.ENCODE_CHUNK, token_files.READ_BLOCK, token_files.TEXT_FALLBACK
    token_files.ENCODE_CHUNK, token_files.READ_BLOCK, token_files.TEXT_FALLBACK = chunk, max(1, chunk // 3), fallback
    try:
        chunks = list(token_files._range_chunks(path, 0, len(data), tok.special_tokens))
        ids = []
        for c in chunks:
            ids.extend(tok.encode_bytes(c))
    finally:
        token_files.ENCODE_CHUNK, token_files.READ_BLOCK, token_files.TEXT_FALLBACK = saved
    assert b"".join(chunks) == data
    assert ids == tok.encode_bytes(data)


def test_gpt2_whole_corpus_equals_encode(tmp_path, tinystories_train):
    tok = gpt2_tokenizer(GPT2_DIR, NATIVE, (EOT,))
    out = tmp_path / "train.npy"
    tokenize_file(tok, tinystories_train, out, workers=2)
    assert np.load(out).tolist() == tok.encode(tinystories_train.read_text(encoding="utf-8"))


def test_parts_are_spliced_in_user_space_where_copy_file_range_fails(tok, corpus, tmp_path, monkeypatch):
    calls = []

    def unsupported(*args):
        calls.append(args)
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(token_files.os, "copy_file_range", unsupported, raising=False)
    monkeypatch.setattr(token_files, "MAX_RANGE", 20_000)  # several parts
    tokenize_file(tok, corpus, tmp_path / "v.npy", workers=2)
    assert len(calls) > 3
    assert np.load(tmp_path / "v.npy").tolist() == tok.encode(corpus.read_text(encoding="utf-8"))


def test_uint32_when_ids_do_not_fit_uint16(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[70_000] = b"<|big|>"
    tok = Tokenizer(vocab, [], ["<|big|>"])
    assert dtype_for(tok.vocab_size) == np.uint32 and dtype_for(65_536) == np.uint16
    path = tmp_path / "t.txt"
    path.write_text("ab <|big|> c")
    tokenize_file(tok, path, tmp_path / "t.npy", workers=1)
    ids = open_token_file(tmp_path / "t.npy", vocab_size=tok.vocab_size, tokenizer_fingerprint=tok.fingerprint)
    assert ids.dtype == np.uint32 and 70_000 in ids.tolist() and ids.tolist() == tok.encode("ab <|big|> c")


def test_up_to_date_output_is_skipped_and_stale_ones_rebuilt(tok, corpus, tmp_path):
    out = tmp_path / "v.npy"
    first = tokenize_file(tok, corpus, out, workers=1)
    assert staleness(tok, corpus, out) is None
    again = tokenize_file(tok, corpus, out, workers=1)
    assert again["skipped"] and again["created"] == first["created"]
    assert tokenize_file(tok, corpus, out, workers=1, force=True)["reason"] == "--force"

    # Same size, same mtime, different content: only the content hash can tell.
    st = corpus.stat()
    data = bytearray(corpus.read_bytes())
    data[1000:1005] = b"XXXXX"
    corpus.write_bytes(bytes(data))
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert staleness(tok, corpus, out) == "the source file's content changed"
    rebuilt = tokenize_file(tok, corpus, out, workers=1)
    assert not rebuilt["skipped"] and np.load(out).tolist() == tok.encode(bytes(data).decode())

    with open(corpus, "a") as fh:
        fh.write(" and then")
    assert staleness(tok, corpus, out) == "the source file changed"
    tokenize_file(tok, corpus, out, workers=1)

    other = make_tokenizer(*truncated_gpt2(str(GPT2_DIR), 1000), [EOT], native=NATIVE)
    assert staleness(other, corpus, out) == "the tokenizer changed"
    assert tokenize_file(other, corpus, out, workers=1)["reason"] == "the tokenizer changed"
    assert read_manifest(out)["tokenizer_fingerprint"] == other.fingerprint

    manifest_path(out).unlink()
    assert staleness(other, corpus, out) == "no manifest"


def test_open_token_file_checks(tok, corpus, tmp_path):
    out = tmp_path / "v.npy"
    with pytest.raises(UserError, match="not found.*cs336 tokenize"):
        open_token_file(out)
    tokenize_file(tok, corpus, out, workers=1)
    ids = open_token_file(out, vocab_size=tok.vocab_size, tokenizer_fingerprint=tok.fingerprint)
    assert isinstance(ids, np.memmap) and ids.ndim == 1
    with pytest.raises(UserError, match="different tokenizer"):
        open_token_file(out, tokenizer_fingerprint="0" * 64)
    with pytest.raises(UserError, match="vocab_size"):
        open_token_file(out, vocab_size=100)
    manifest = read_manifest(out)
    manifest_path(out).write_text(json.dumps({**manifest, "num_tokens": manifest["num_tokens"] + 1}))
    with pytest.raises(UserError, match="manifest says"):
        open_token_file(out)
    manifest_path(out).unlink()  # a file from elsewhere: the ids themselves are checked
    assert open_token_file(out, vocab_size=tok.vocab_size).shape[0] == manifest["num_tokens"]
    with pytest.raises(UserError, match="contains token id"):
        open_token_file(out, vocab_size=int(np.max(ids)))
    out.write_bytes(b"not a numpy file")
    with pytest.raises(UserError, match="not a readable .npy"):
        open_token_file(out)
    np.save(tmp_path / "float.npy", np.zeros((2, 2)))
    with pytest.raises(UserError, match="1-D integer"):
        open_token_file(tmp_path / "float.npy")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_run_leaves_the_old_output_intact(tok, corpus, tmp_path, monkeypatch, workers):
    out = tmp_path / "v.npy"
    tokenize_file(tok, corpus, out, workers=1)
    before, manifest_before = out.read_bytes(), manifest_path(out).read_text()
    real_encode_range = token_files.encode_range

    def crash(tokenizer, path, start, end, fh, dtype, on_bytes=None):
        real_encode_range(tokenizer, path, start, end, fh, dtype, on_bytes)  # some ids written, then
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(token_files, "encode_range", crash)  # forked workers inherit the patch
    with pytest.raises(RuntimeError, match="simulated"):
        tokenize_file(tok, corpus, out, workers=workers, force=True)
    assert out.read_bytes() == before and manifest_path(out).read_text() == manifest_before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["v.npy", "v.npy.manifest.json", "valid.txt"])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
@pytest.mark.parametrize("count", [0, 1, 65_537, 10**12])
def test_fixed_size_npy_header_loads_with_numpy(tmp_path, dtype, count):
    header = token_files.npy_header(np.dtype(dtype), count)
    assert len(header) == token_files.HEADER_LEN
    path = tmp_path / "h.npy"
    stored = min(count, 3)  # a huge count is only parsed, not backed by data
    path.write_bytes(header + np.arange(stored, dtype=dtype).tobytes())
    with open(path, "rb") as fh:
        assert np.lib.format.read_magic(fh) == (1, 0)
        shape, fortran, read_dtype = np.lib.format.read_array_header_1_0(fh)
    assert shape == (count,) and not fortran and read_dtype == np.dtype(dtype)
    if count == stored:
        assert np.load(path, mmap_mode="r" if count else None).tolist() == list(range(count))


def test_bad_arguments_are_user_errors(tok, corpus, tmp_path):
    with pytest.raises(UserError, match="not found"):
        tokenize_file(tok, tmp_path / "missing.txt", tmp_path / "x.npy")
    with pytest.raises(UserError, match=r"\.npy"):
        tokenize_file(tok, corpus, tmp_path / "x.bin")


def test_empty_file(tok, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    manifest = tokenize_file(tok, path, tmp_path / "empty.npy", workers=2)
    assert manifest["num_tokens"] == 0 and np.load(tmp_path / "empty.npy").shape == (0,)


# ----------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, tok):
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer_dir(path, tok.vocab, tok.merges, [EOT])
    return path


def test_cli_tokenizes_then_skips(tokenizer_dir, corpus, tmp_path, tok, capsys):
    from cs336_basics.cli import main

    out = tmp_path / "data" / "valid.npy"
    args = ("tokenize", "--tokenizer", str(tokenizer_dir), "--input", str(corpus), "--out", str(out), "--workers", "2")
    first = run_cli(*args)  # one real process, as a user runs it
    assert first.returncode == 0, first.stderr
    assert "tokens" in first.stdout and "bytes/token" in first.stdout
    assert np.load(out).tolist() == tok.encode(corpus.read_text(encoding="utf-8"))
    assert main(list(args)) == 0
    assert "up to date" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"--tokenizer": "/nonexistent/dir"}, "directory not found"),
    ({"--input": "/nonexistent/file.txt"}, "file not found"),
    ({"--out": "OUT.bin"}, "must be a .npy file"),
    ({"--workers": "0"}, "positive integer"),
])
def test_cli_errors_are_one_line_exit_2(tokenizer_dir, corpus, tmp_path, change, message, capsys):
    from cs336_basics.cli import main

    opts = {"--tokenizer": str(tokenizer_dir), "--input": str(corpus), "--out": str(tmp_path / "o.npy"),
            "--workers": "1"}
    opts.update({k: v.replace("OUT", str(tmp_path / "o")) for k, v in change.items()})
    try:
        code = main(["tokenize", *[x for kv in opts.items() for x in kv]])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not (tmp_path / "o.npy").exists()
