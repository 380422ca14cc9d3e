"""The fast trainer equals the reference, merge for merge, on real text; input errors are one-liners."""

from __future__ import annotations

from functools import lru_cache

import pytest

from cs336_basics.errors import UserError
from cs336_basics.tokenizer import train_bpe
from cs336_basics.tokenizer.bpe_train import train_bpe_detailed
from cs336_basics.tokenizer.merging import merge, native_merge_available
from tests.conftest import PATHS, mixed_corpus, native_path, require_native
from tests.tokenizer.bpe_reference import pretoken_counts_reference, train_bpe_reference

EOT = "<|endoftext|>"


@lru_cache(maxsize=None)
def _reference(data: bytes, vocab: int) -> tuple:
    """The oracle's result, computed once per corpus for all parametrisations."""
    return train_bpe_reference(data, vocab, [EOT])


def _write(tmp_path, data: bytes):
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("workers", [1, 2])
def test_tinystories_slice_equals_reference(tmp_path, tinystories_train, native, workers):
    native_path(native, "_bpe_count", "_bpe_merge")
    data = tinystories_train.read_bytes()[:120_000]
    path = _write(tmp_path, data)
    expected = _reference(data, 420)
    got = train_bpe(path, 420, [EOT], workers=workers, native=native, chunk_bytes=16 << 10, show_progress=False)
    assert got == expected


@pytest.mark.parametrize("native", PATHS)
def test_mixed_text_with_symbol_runs_equals_reference(tmp_path, native):
    """Many scripts, markup and code: '----', '....', indentation and odd whitespace, invalid UTF-8."""
    native_path(native, "_bpe_count", "_bpe_merge")
    data = mixed_corpus(60_000) + b"\xff\xfe \xe2\x82 caf\xe9"
    for run in (b"----", b"....", b"        ", b"\r\n", "\u3000".encode(), "中文".encode(), "مرحبا".encode()):
        assert run in data
    path = _write(tmp_path, data)
    expected = _reference(data, 380)
    got = train_bpe(path, 380, [EOT], workers=2, native=native, chunk_bytes=20 << 10, show_progress=False)
    assert got == expected


@pytest.mark.slow
@pytest.mark.parametrize("size,vocab", [(400_000, 500), (1_000_000, 320)])
def test_bigger_real_text_equals_reference(tmp_path, size, vocab):
    data = mixed_corpus(size)
    assert len(data) >= size
    path = _write(tmp_path, data)
    expected = train_bpe_reference(data, vocab, [EOT])
    assert train_bpe(path, vocab, [EOT], workers=2, chunk_bytes=256 << 10, show_progress=False) == expected


def test_c_and_python_merge_engines_agree_on_many_merges():
    require_native("_bpe_merge")
    data = mixed_corpus(400_000)
    counts = pretoken_counts_reference(data, [EOT])
    words, freqs = list(counts), list(counts.values())
    assert merge(words, freqs, 3000, native=True) == merge(words, freqs, 3000, native=False)


def test_training_stops_when_no_pair_is_left(tmp_path):
    path = _write(tmp_path, b"ab ab ab")
    vocab, merges = train_bpe(path, 10_000, [EOT], show_progress=False)
    assert merges == [(b"a", b"b"), (b" ", b"ab")] and len(vocab) == 259


def test_multiple_input_files_never_join_across_files(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello wor")
    (tmp_path / "b.txt").write_bytes(b"ld hello")
    vocab, merges = train_bpe([tmp_path / "a.txt", tmp_path / "b.txt"], 300, [EOT], show_progress=False)
    expected = train_bpe_reference(b"hello wor" + EOT.encode() + b"ld hello", 300, [EOT])
    assert (vocab, merges) == expected


def test_summary_reports_phases_memory_and_invalid_utf8_policy(tmp_path):
    path = _write(tmp_path, b"caf\xe9 caf\xe9 \xff\xff the the")
    result = train_bpe_detailed(path, 300, [EOT], show_progress=False)
    s = result.summary
    assert set(s.seconds) == {"counting", "merging"} and s.peak_rss_mb > 0
    assert s.distinct_pretokens == 5 and s.pretoken_occurrences == 7  # caf, \xe9, ' caf', ' \xff\xff', ' the'
    assert "kept as bytes" in s.format()
    assert (b"\xff", b"\xff") in result.merges


@pytest.mark.parametrize("make,vocab,message", [
    (None, 300, "not found"),
    (b"", 300, "empty"),
    (b"text", 256, "smaller than 256"),
])
def test_bad_input_is_a_user_error(tmp_path, make, vocab, message):
    path = tmp_path / "in.txt"
    if make is not None:
        path.write_bytes(make)
    with pytest.raises(UserError, match=message):
        train_bpe(path, vocab, [EOT])


def test_memory_budget_changes_chunking_not_the_result(tinystories_train):
    # 1-byte budget -> the 1 MiB minimum chunk: the 2 MB file becomes 2-3 chunks over 2 workers.
    small = train_bpe_detailed(tinystories_train, 400, [EOT], memory_budget=1, workers=2, show_progress=False)
    whole = train_bpe_detailed(tinystories_train, 400, [EOT], chunk_bytes=64 << 20, workers=1, show_progress=False)
    assert (small.vocab, small.merges) == (whole.vocab, whole.merges)


def test_no_native_env_forces_the_python_paths(tmp_path, monkeypatch):
    from cs336_basics.tokenizer.counting import native_count_available as counting_native

    monkeypatch.setenv("CS336_NO_NATIVE", "1")
    assert not counting_native() and not native_merge_available()
    path = _write(tmp_path, b"the cat sat on the mat, the end " * 20)
    result = train_bpe_detailed(path, 280, [EOT], show_progress=False)
    assert not result.summary.native_count and not result.summary.native_merge
    assert (result.vocab, result.merges) == train_bpe_reference(path.read_bytes(), 280, [EOT])
