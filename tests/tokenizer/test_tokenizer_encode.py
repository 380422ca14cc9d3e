"""Encoding is exact: equal to the handout's loop (tests/tokenizer/encode_reference.py) and to tiktoken on GPT-2.

Every test runs on both paths (the C encoder and the pure-Python fallback).
"""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_basics.errors import UserError
from cs336_basics.tokenizer.tokenizer import Tokenizer, merge_buckets, merge_scan
from tests.conftest import (GPT2_DIR, MULTILINGUAL, PATHS, TINYSTORIES_TRAIN, TINYSTORIES_VALID, fixture_text,
                            mixed_corpus)
from tests.tokenizer.encode_reference import (gpt2_tiktoken, gpt2_tokenizer, make_tokenizer, reference_encode,
                                    truncated_gpt2)

EOT = "<|endoftext|>"
SPECIALS = [EOT, EOT + EOT, "<|pad|>"]

# Text that exercises every alternative of the GPT-2 pattern and the special tokens.
ALPHABET = list("ab cAB\n\t  9012'sdlvret.,!?-_^") + ["ü", "é", "中", "文", "😀", "🎉", "\u00a0", "\u3000",
                                                    "\u2028", "\x0b", "١", "Ⅻ", "'ll", "'ve", EOT, "<|", "|>"]
mixed_text = st.lists(st.sampled_from(ALPHABET), max_size=60).map("".join)


def gpt2_dir():
    return GPT2_DIR


@pytest.fixture(scope="module")
def small():
    """The first 800 GPT-2 merges: small enough for the reference loop."""
    return truncated_gpt2(str(gpt2_dir()), 800)


_SMALL: dict = {}


def small_tok(small, native: bool, specials) -> Tokenizer:
    """One tokenizer per (path, specials) for the whole module: hypothesis examples reuse it."""
    key = (native, tuple(specials or ()))
    if key not in _SMALL:
        _SMALL[key] = make_tokenizer(*small, specials, native=native)
    return _SMALL[key]


# ----------------------------------------------------------------------------- reference equality
@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mixed_text)
def test_equals_reference_loop_on_mixed_text(small, native, text):
    vocab, merges = small
    tok = small_tok(small, native, SPECIALS)
    assert tok.encode(text) == reference_encode(text, vocab, merges, SPECIALS)


@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_equals_reference_loop_on_any_unicode(small, native, text):
    vocab, merges = small
    tok = small_tok(small, native, [EOT])
    assert tok.encode(text) == reference_encode(text, vocab, merges, [EOT])


@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="aeb1 9", min_size=30, max_size=400))
def test_long_pre_tokens_equal_reference_loop(small, native, text):
    """Runs longer than the scan threshold go through the bucket merge (Python and C)."""
    text = text.replace(" ", "") + " " + text
    vocab, merges = small
    assert small_tok(small, native, [EOT]).encode(text) == reference_encode(text, vocab, merges, [EOT])


@pytest.mark.parametrize("native", PATHS)
def test_equals_reference_loop_on_real_text(small, native):
    vocab, merges = small
    text = fixture_text(TINYSTORIES_VALID)[:6000] + EOT + fixture_text(MULTILINGUAL)
    tok = make_tokenizer(vocab, merges, [EOT], native=native)
    assert tok.encode(text) == reference_encode(text, vocab, merges, [EOT])


def _random_merges(rng: random.Random, consistent: bool):
    """A random byte-level merge list over a tiny alphabet; inconsistent ones merge tokens 'from the future'."""
    vocab = {i: bytes([i]) for i in range(256)}
    tokens = [b"a", b"b", b"c", b" "]
    pending = []
    merges = []
    for _ in range(rng.randint(1, 25)):
        a, b = rng.choice(tokens), rng.choice(tokens)
        if (a, b) in merges or a + b in vocab.values():
            continue
        merges.append((a, b))
        if consistent or rng.random() < 0.5:
            tokens.append(a + b)
        else:
            pending.append(a + b)  # exists in the vocabulary but is only merged later
        vocab[len(vocab)] = a + b
    tokens.extend(pending)
    return vocab, merges


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("consistent", [True, False])
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), text=st.text(alphabet="abc ", max_size=70))
def test_random_merge_lists_follow_creation_order(native, consistent, seed, text):
    """Rank of the pair decides, and a merge ranked below one already applied never fires (handout loop)."""
    vocab, merges = _random_merges(random.Random(seed), consistent)
    tok = make_tokenizer(vocab, merges, native=native)
    assert tok.encode(text) == reference_encode(text, vocab, merges)


def _random_pre_token(seed: int, n: int):
    """A random merge list, its Python tokenizer, and the ids of a random pre-token of ``n`` bytes."""
    rng = random.Random(seed)
    vocab, merges = _random_merges(rng, consistent=rng.random() < 0.5)
    tok = make_tokenizer(vocab, merges, native=False)
    return vocab, merges, tok, [tok._byte_ids[b] for b in rng.choices(b"abc ", k=n)]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120))
def test_scan_and_bucket_merges_agree(seed, n):
    _, _, tok, ids = _random_pre_token(seed, n)
    assert merge_buckets(list(ids), tok._pairs) == merge_scan(list(ids), tok._pairs)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 120))
def test_native_scan_and_bucket_merges_agree_with_python(seed, n):
    vocab, merges, tok, ids = _random_pre_token(seed, n)
    fast = make_tokenizer(vocab, merges, native=True)
    expected = merge_scan(list(ids), tok._pairs)
    for algorithm in (0, 1):  # scan, buckets
        assert fast._native.merge(ids, algorithm) == expected


# ----------------------------------------------------------------------------- tiktoken equality (GPT-2)
@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=()), max_size=80))
def test_gpt2_equals_tiktoken_on_any_unicode_including_surrogates(native, text):
    tok = gpt2_tokenizer(gpt2_dir(), native)
    assert tok.encode(text) == gpt2_tiktoken(str(gpt2_dir())).encode(text, allowed_special="all")


@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=200, deadline=None)
@given(text=mixed_text)
def test_gpt2_equals_tiktoken_on_mixed_text(native, text):
    tok = gpt2_tokenizer(gpt2_dir(), native)
    assert tok.encode(text) == gpt2_tiktoken(str(gpt2_dir())).encode(text, allowed_special="all")


CASES = {
    "whitespace runs": " " * 7 + "x" + "\n" * 5 + "y \n \n\t\t  z   " + "\r\n" * 3 + "   ",
    "digit runs": "1234567890" * 30 + " 3.14159 1,000,000 ٣٤٥ Ⅻ",
    "emoji": "😀🎉👍🏽 family: 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️",
    "cjk": "中文分词测试。日本語のテキスト、한국어 텍스트",
    "contractions": "I'll we've they're it's I'd I'm don't 'S 'LL ''s",
    "surrogates": "lone \ud800 high, lone \udfff low, pair \ud83d\ude00, reversed \ude00\ud83d",
    "specials": f"{EOT}{EOT}a{EOT} {EOT}\n{EOT}",
    "mixed scripts": "Привет мир! مرحبا بالعالم 123abc_def-ghi",
}


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("name", list(CASES))
def test_gpt2_equals_tiktoken_on_hard_cases(native, name):
    tok = gpt2_tokenizer(gpt2_dir(), native)
    text = CASES[name]
    assert tok.encode(text) == gpt2_tiktoken(str(gpt2_dir())).encode(text, allowed_special="all")


@pytest.mark.parametrize("native", PATHS)
@pytest.mark.parametrize("corpus", [TINYSTORIES_VALID, TINYSTORIES_TRAIN, MULTILINGUAL])
def test_gpt2_equals_tiktoken_on_fixture_corpora(native, corpus):
    text = fixture_text(corpus)
    if not native:
        text = text[:300_000]  # the fallback is ~4x slower; a third of a megabyte is plenty
    tok = gpt2_tokenizer(gpt2_dir(), native)
    assert tok.encode(text) == gpt2_tiktoken(str(gpt2_dir())).encode(text, allowed_special="all")


@pytest.mark.parametrize("native", PATHS)
def test_gpt2_equals_tiktoken_on_code_and_documentation(native):
    """The mixed corpus: many scripts, markup, this repository's code and docs, stories (2 MB)."""
    text = mixed_corpus().decode("utf-8")
    tok = gpt2_tokenizer(gpt2_dir(), native)
    assert tok.encode(text) == gpt2_tiktoken(str(gpt2_dir())).encode(text, allowed_special="all")


# ----------------------------------------------------------------------------- special tokens
@pytest.mark.parametrize("native", PATHS)
def test_overlapping_specials_longest_first(small, native):
    vocab, merges = small
    tok = make_tokenizer(vocab, merges, [EOT, EOT + EOT], native=native)
    eot, double = tok.token_to_id(EOT), tok.token_to_id(EOT + EOT)
    assert eot != double
    assert tok.encode(EOT * 3) == [double, eot]
    assert tok.encode(EOT + EOT) == [double]
    assert tok.encode("a" + EOT) == [tok.token_to_id("a"), eot]
    assert tok.decode(tok.encode("x" + EOT * 3 + "y")) == "x" + EOT * 3 + "y"


@pytest.mark.parametrize("native", PATHS)
def test_specials_absent_or_not_declared(small, native):
    vocab, merges = small
    with_eot = make_tokenizer(vocab, merges, [EOT], native=native)
    without = make_tokenizer(vocab, merges, None, native=native)
    assert with_eot.encode("no specials here") == without.encode("no specials here")
    # Undeclared special text is ordinary text: several byte-level tokens, none of them a new id.
    ids = without.encode(EOT)
    assert len(ids) > 1 and max(ids) < len(vocab) and without.decode(ids) == EOT
    assert with_eot.encode("") == [] and with_eot.encode(EOT) == [with_eot.eos_id]


@pytest.mark.parametrize("native", PATHS)
def test_missing_specials_are_appended_in_order(small, native):
    vocab, merges = small
    tok = make_tokenizer(vocab, merges, ["<|a|>", "<|b|>"], native=native)
    assert tok.token_to_id("<|a|>") == len(vocab) and tok.token_to_id("<|b|>") == len(vocab) + 1
    assert tok.vocab_size == len(vocab) + 2
    assert tok.encode("<|b|><|a|>") == [len(vocab) + 1, len(vocab)]


def test_special_already_in_vocab_keeps_its_id():
    tok = gpt2_tokenizer(gpt2_dir(), False)
    assert tok.eos_id == 50256 and tok.vocab_size == 50257 and tok.special_tokens == [EOT]


# ----------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_round_trip(small, native, text):
    tok = small_tok(small, native, [EOT])
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(st.integers(0, 50256), max_size=40), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_decode_never_raises_and_incremental_equals_full(ids, cuts):
    tok = gpt2_tokenizer(gpt2_dir(), False)
    full = tok.decode(ids)
    dec = tok.incremental_decoder()
    pieces, start = [], 0
    for cut in sorted(set(cuts)) + [len(ids)]:
        pieces.append(dec.feed(ids[start:cut]))
        start = max(start, cut)
    assert "".join(pieces) + dec.flush() == full


def test_incremental_decoder_holds_partial_characters():
    tok = gpt2_tokenizer(gpt2_dir(), False)
    emoji = "😀"
    byte_ids = [tok._byte_ids[b] for b in emoji.encode()]
    dec = tok.incremental_decoder()
    assert [dec.feed([i]) for i in byte_ids] == ["", "", "", emoji]
    assert dec.feed(byte_ids[:2]) == "" and dec.flush() == "\ufffd"


@pytest.mark.parametrize("text", [CASES["emoji"], CASES["cjk"], CASES["mixed scripts"]])
def test_incremental_decoding_of_multibyte_text_one_id_at_a_time(text):
    tok = gpt2_tokenizer(gpt2_dir(), False)
    dec = tok.incremental_decoder()
    pieces = [dec.feed(i) for i in tok.encode(text)]
    assert "".join(pieces) + dec.flush() == text
    assert all("\ufffd" not in p for p in pieces)  # partial characters are held back, never replaced


def test_malformed_utf8_becomes_replacement_character():
    tok = gpt2_tokenizer(gpt2_dir(), False)
    assert tok.decode([tok._byte_ids[0xFF], tok.token_to_id("a")]) == "\ufffda"


@pytest.mark.parametrize("bad", [50257, -1, 10**9])
def test_unknown_id_raises_value_error_naming_it(bad):
    tok = gpt2_tokenizer(gpt2_dir(), False)
    with pytest.raises(ValueError, match=str(bad)):
        tok.decode([1, 2, bad])
    with pytest.raises(ValueError, match=str(bad)):
        tok.incremental_decoder().feed([bad])


# ----------------------------------------------------------------------------- construction and identity
def test_bad_vocabularies_are_clear_errors(small):
    vocab, merges = small
    missing_byte = {k: v for k, v in vocab.items() if v != b"\x07"}
    with pytest.raises(UserError, match="0x07"):
        Tokenizer(missing_byte, merges)
    with pytest.raises(UserError, match="merge #1"):
        Tokenizer({i: bytes([i]) for i in range(256)}, merges)
    with pytest.raises(UserError, match="non-empty"):
        Tokenizer(vocab, merges, [""])


def test_fingerprint_identifies_vocab_merges_and_specials(small):
    vocab, merges = small
    a = make_tokenizer(vocab, merges, [EOT], native=False)
    assert a.fingerprint == make_tokenizer(dict(vocab), list(merges), [EOT], native=False).fingerprint
    assert a.fingerprint != make_tokenizer(vocab, merges, ["<|x|>"], native=False).fingerprint
    assert a.fingerprint != make_tokenizer(vocab, merges[:-1], [EOT], native=False).fingerprint
    assert len(a.fingerprint) == 64


@pytest.mark.parametrize("native", PATHS)
def test_pickle_round_trip_keeps_behaviour(small, native):
    vocab, merges = small
    tok = make_tokenizer(vocab, merges, [EOT], native=native)
    clone = pickle.loads(pickle.dumps(tok))
    text = f"Hello there{EOT} general kenobi 123"
    assert clone.encode(text) == tok.encode(text) and clone.fingerprint == tok.fingerprint


def test_from_files_and_from_dir(tmp_path, small):
    from cs336_basics.tokenizer.gpt2_format import save_vocab_merges
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab, merges = small
    save_vocab_merges(vocab, merges, tmp_path / "v.json", tmp_path / "m.txt")
    a = Tokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt", [EOT])
    save_tokenizer_dir(tmp_path / "tok", {**vocab, len(vocab): EOT.encode()}, merges, [EOT])
    b = Tokenizer.from_dir(tmp_path / "tok")
    assert a.fingerprint == b.fingerprint and b.special_tokens == [EOT] and b.eos_id == len(vocab)
    assert Tokenizer.from_files(tmp_path / "tok").fingerprint == b.fingerprint
    with pytest.raises(UserError, match="not a tokenizer directory"):
        Tokenizer.from_files(tmp_path / "v.json")
    with pytest.raises(UserError, match="not found"):
        Tokenizer.from_dir(tmp_path / "missing")


@pytest.mark.parametrize("native", PATHS)
def test_encode_bytes_keeps_invalid_utf8(small, native):
    vocab, merges = small
    tok = make_tokenizer(vocab, merges, [EOT], native=native)
    data = b"ok \xff\xfe bytes\xe2\x82 " + EOT.encode() + b"\xc3"
    ids = tok.encode_bytes(data)
    assert b"".join(tok.vocab[i] for i in ids) == data
    text = data.decode("utf-8", "surrogateescape")
    assert ids == reference_encode(text, vocab, merges, [EOT], errors="surrogateescape")
    assert tok.encode_to_array(data).tolist() == ids and tok.encode_to_array(b"").size == 0
