"""Chunking never changes the counts: the cut rule (proved in counting.py) and chunked == one pass."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_basics.tokenizer.counting import chunk_boundaries, count_bytes, count_pretokens
from cs336_basics.tokenizer.pretokenize import CLASS_SPACE, char_class_table
from tests.conftest import PATHS, native_path
from tests.tokenizer.pretokenize_reference import pretokenize_bytes

EOT = "<|endoftext|>"

ATOMS = ["a", "bc", " ", "  ", "\n", "\n\n", " \n", "\t", ".", "...", "'s", "'", "1", "é", "\u3000", "\u00a0",
         "x\n", ". \n", EOT, "<|a|>", "<|a|><|a|>", "<|\n|>"]
texts = st.lists(st.sampled_from(ATOMS), max_size=40).map("".join)


def _safe_newlines(data: bytes) -> list[int]:
    classes = char_class_table()
    return [p for p in range(1, len(data)) if data[p] == 0x0A and data[p - 1] < 0x80
            and not classes[data[p - 1]] & CLASS_SPACE]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([a for a in ATOMS if "<" not in a] + ["\xff", "\u2028"]), max_size=40).map("".join))
def test_cut_before_newline_after_ascii_non_space_keeps_pretokens(text):
    data = text.encode("utf-8", "surrogateescape")
    whole = pretokenize_bytes(data)
    for p in _safe_newlines(data):
        assert pretokenize_bytes(data[:p]) + pretokenize_bytes(data[p:]) == whole, (data, p)


def test_cut_rule_is_needed():
    # Before a newline that follows a space the split changes: " \n" is one pre-token here.
    data = b"a \n\nb"
    assert pretokenize_bytes(data) == [b"a", b" \n", b"\n", b"b"]
    assert pretokenize_bytes(data[:2]) + pretokenize_bytes(data[2:]) != pretokenize_bytes(data)


@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, chunk=st.integers(1, 40))
def test_chunked_counts_equal_one_pass(tmp_path, native, text, chunk):
    native_path(native, "_bpe_count")
    specials = [EOT, "<|a|>", "<|a|><|a|>", "<|\n|>"]
    data = text.encode("utf-8")
    path = tmp_path / "c.txt"
    path.write_bytes(data)
    if not data:
        return
    cuts = chunk_boundaries(path, chunk, specials)
    assert cuts[0] == 0 and cuts[-1] == len(data) and cuts == sorted(set(cuts))
    chunked = count_pretokens([path], specials, workers=1, chunk_bytes=chunk, native=native, show_progress=False)
    assert chunked == dict(Counter(pretokenize_bytes(data, specials)))


def test_boundaries_on_real_text_are_safe_and_many(tinystories_train):
    cuts = chunk_boundaries(tinystories_train, 64 << 10, [EOT])
    assert len(cuts) > 20
    data = tinystories_train.read_bytes()
    for c in cuts[1:-1]:
        assert data.startswith(EOT.encode(), c) or (data[c] == 0x0A and data[c - 1] < 0x80)


def test_huge_document_without_special_tokens_is_cut_at_newlines(tmp_path):
    text = ("Some line of prose, with words.\nAnother one  \n\n  indented\n" * 2000).encode()
    path = tmp_path / "doc.txt"
    path.write_bytes(text)
    cuts = chunk_boundaries(path, 4096, [EOT])
    assert len(cuts) > 10
    chunked = count_pretokens([path], [EOT], chunk_bytes=4096, show_progress=False)
    assert chunked == count_bytes(text, [EOT], native=False)


@pytest.mark.parametrize("native", PATHS)
def test_two_workers_equal_one(tinystories_train, native):
    native_path(native, "_bpe_count")
    one = count_pretokens([tinystories_train], [EOT], workers=1, chunk_bytes=1 << 20, native=native,
                          show_progress=False)
    two = count_pretokens([tinystories_train], [EOT], workers=2, chunk_bytes=128 << 10, native=native,
                          show_progress=False)
    assert one == two and sum(one.values()) > 400_000
