"""pretok.h (via _bpe_count) and the package's Python split equal the tests' regex oracle, invalid UTF-8 included."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_basics.tokenizer.counting import count_bytes, native_count_available
from cs336_basics.tokenizer.pretokenize import (CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE, _class_table_cache_path,
                                                _compute_class_table, char_class_table, pretokenize_bytes,
                                                pretokenize_reference, split_on_special)
from tests.conftest import MULTILINGUAL, fixture_bytes, require_native
from tests.tokenizer.pretokenize_reference import pretokenize_bytes as oracle_pretokenize_bytes
from tests.tokenizer.pretokenize_reference import split_specials


@pytest.fixture
def bpe_count():
    require_native("_bpe_count")
    from cs336_basics.tokenizer import _bpe_count

    return _bpe_count


# Pieces chosen to hit every branch of pt_next and of strict UTF-8 decoding.
PIECES = [b" ", b"  ", b"\n", b"\t", b"\r\n", b"'", b"s", b"ll", b"ve", b"re", b"'t", b"a", b"Z", b"1", b"42",
          "\u00a0".encode(), "\u2003".encode(), "\u3000".encode(), "\u2028".encode(), "\u0085".encode(),
          "é".encode(), "中".encode(), "٣".encode(), "😀".encode(), "\u0301".encode(), "Ⅻ".encode(),
          b"\xff", b"\x80", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xf0\x9f\x98",
          b"-", b".", b"\x00", b"\x1c", b"\x0b", b"\x0c", b"\x85", b"<|endoftext|>"]


def test_class_table_matches_regex_semantics(tmp_path, monkeypatch):
    table = char_class_table()
    assert len(table) == 0x110000
    assert table == _compute_class_table()  # the on-disk cache holds exactly what the regex module says
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    char_class_table.cache_clear()
    try:
        assert char_class_table() == table and _class_table_cache_path().is_file()
    finally:
        char_class_table.cache_clear()
    assert table[ord("a")] == CLASS_LETTER and table[ord("é")] == CLASS_LETTER and table[ord("中")] == CLASS_LETTER
    assert table[ord("7")] == CLASS_NUMBER and table[ord("٣")] == CLASS_NUMBER and table[ord("Ⅻ")] == CLASS_NUMBER
    for ch in " \t\n\r\x0b\x0c\u00a0\u3000\u2028":
        assert table[ord(ch)] == CLASS_SPACE, repr(ch)
    assert table[ord("-")] == 0 and table[0xDCFF] == 0  # surrogateescape bytes are "other"


def test_split_on_special_longest_first():
    assert split_on_special("a<|x|><|x|>b<|x|>", ["<|x|>", "<|x|><|x|>"]) == [
        ("a", False), ("<|x|><|x|>", True), ("b", False), ("<|x|>", True)]
    assert split_on_special("", ["<|x|>"]) == []
    assert split_on_special("plain", None) == [("plain", False)]


def test_reference_matches_gpt2_examples():
    expected = [b"Hello", b",", b" world", b"!", b" It", b"'s", b" 2024", b".", b" ", b" ok", b"\n\n"]
    text = "Hello, world! It's 2024.  ok\n\n"
    assert pretokenize_reference(text) == [t.decode() for t in expected]
    assert oracle_pretokenize_bytes(text.encode()) == expected


SPECIALS = ["<|x|>", "<|x|><|x|>", "<|y|>", "|>"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "<|", "x", "|>", "<|x|>", "<|y|>", "\n", "é"]), max_size=30).map("".join),
       st.lists(st.sampled_from(SPECIALS), max_size=4))
def test_package_split_equals_the_oracle(text, specials):
    assert split_on_special(text, specials) == split_specials(text, specials)
    data = text.encode()
    assert pretokenize_bytes(data, specials) == oracle_pretokenize_bytes(data, specials)


def test_package_split_equals_the_oracle_on_the_multilingual_sample():
    data = fixture_bytes(MULTILINGUAL) + b"\xff\xfe tail \xe2\x82"
    assert pretokenize_bytes(data, ["<|endoftext|>"]) == oracle_pretokenize_bytes(data, ["<|endoftext|>"])


def test_random_byte_strings_match_regex(bpe_count):
    rng = random.Random(0)
    table = char_class_table()
    for _ in range(3000):
        data = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 24)))
        assert bpe_count.pretokenize(data, table) == oracle_pretokenize_bytes(data), data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_arbitrary_text_matches_regex(bpe_count, text):
    data = text.encode("utf-8")
    assert bpe_count.pretokenize(data, char_class_table()) == oracle_pretokenize_bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=60))
def test_arbitrary_bytes_match_regex(bpe_count, data):
    assert bpe_count.pretokenize(data, char_class_table()) == oracle_pretokenize_bytes(data)


def test_real_text_matches_regex(bpe_count, tinystories_valid):
    data = tinystories_valid.read_bytes()[:300_000] + fixture_bytes(MULTILINGUAL)
    assert bpe_count.pretokenize(data, char_class_table()) == oracle_pretokenize_bytes(data)


def test_native_and_python_counts_are_identical(bpe_count, tinystories_valid):
    assert native_count_available()
    data = tinystories_valid.read_bytes()[:300_000] + fixture_bytes(MULTILINGUAL) + b"\xff\xfe tail \xe2\x82"
    native = count_bytes(data, ["<|endoftext|>"], native=True)
    python = count_bytes(data, ["<|endoftext|>"], native=False)
    assert native == python
    assert Counter(oracle_pretokenize_bytes(data, ["<|endoftext|>"])) == Counter(native)


def test_counter_update_adds_tables(bpe_count):
    table = char_class_table()
    a = bpe_count.PretokenCounter()
    a.feed(b"the cat the", table)
    b = bpe_count.PretokenCounter()
    b.update(a.to_dict())
    b.update({b" cat": 2**40})
    assert b.to_dict() == {b"the": 1, b" cat": 2**40 + 1, b" the": 1}
    assert a.distinct == 3 and a.total == 3
    with pytest.raises(ValueError):
        a.feed(b"x", b"short table")
