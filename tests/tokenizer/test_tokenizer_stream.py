"""Streaming: safe cuts are real pre-token boundaries, encode_iterable equals encode, memory stays bounded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.tokenizer import tokenizer as tokenizer_module
import regex

from cs336_basics.tokenizer.boundaries import SafeChunker, cut_candidates, find_byte_cut, find_text_cut
from tests.conftest import GPT2_DIR, PATHS, REPO, TINYSTORIES_VALID, fixture_bytes
from tests.tokenizer.encode_reference import gpt2_tokenizer

EOT = "<|endoftext|>"
SPECIALS = [EOT, EOT + EOT, "<|a b|>"]  # the last one contains a space: cuts inside it must be refused
ALPHABET = list("ab cA \n\t9'sltr.,!-") + ["é", "中", "😀", "\u00a0", "\u2028", "\ud83d", "\ude00", "\udc80",
                                          EOT, "<|", "|>", "<|a b|>", "<|a", " b|>"]
text_st = st.lists(st.sampled_from(ALPHABET), max_size=50).map("".join)


def gpt2(native=True, specials=(EOT, EOT + EOT, "<|a b|>")):
    return gpt2_tokenizer(GPT2_DIR, native, specials)


def all_text_cuts(text: str, specials) -> list[int]:
    cuts, hi = [], None
    while True:
        k = find_text_cut(text, specials, lo=1, hi=hi)
        if k < 0:
            return cuts
        cuts.append(k)
        hi = k


@settings(max_examples=250, deadline=None)
@given(text=text_st)
def test_every_proposed_text_cut_is_a_true_boundary(text):
    """The proof in boundaries.py, checked: encode(prefix) + encode(suffix) == encode(text) at every cut."""
    tok = gpt2()
    whole = tok.encode(text)
    for k in all_text_cuts(text, tok.special_tokens):
        assert tok.encode(text[:k]) + tok.encode(text[k:]) == whole, (text, k)


@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b" ", b"9", b"\n", b"\xff", b"\xe2\x82", b"\xc3\xa9", b"'s",
                                      EOT.encode(), b"<|a b|>", b"<|a", b"!"]), max_size=40).map(b"".join))
def test_every_proposed_byte_cut_is_a_true_boundary(data):
    tok = gpt2()
    specials = [s.encode() for s in tok.special_tokens]
    whole = tok.encode_bytes(data)
    lo = 1
    while (k := find_byte_cut(data, specials, lo)) >= 0:
        assert tok.encode_bytes(data[:k]) + tok.encode_bytes(data[k:]) == whole, (data, k)
        lo = k + 1


# The rules R1/R2 of boundaries.py written as a regex: the oracle for the vectorised candidate finder.
CUT_ORACLE = regex.compile(r"(?<=\S)(?= )|(?<=\p{L})(?=[^\s\p{L}])|(?<=\p{N})(?=[^\s\p{N}])"
                           r"|(?<=[^\s\p{L}\p{N}'])(?=[\p{L}\p{N}])")


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(text_st, st.text(alphabet=st.characters(blacklist_categories=()), max_size=60)))
def test_vectorised_cut_candidates_match_the_rules(text):
    expected = [m.start() for m in CUT_ORACLE.finditer(text) if m.start() >= 1]
    assert cut_candidates(text, 1, len(text)).tolist() == expected


def test_cuts_are_found_where_expected():
    assert find_text_cut("hello world again", []) == 11
    assert find_text_cut("aaaa", []) == -1 and find_text_cut("    ", []) == -1
    assert find_text_cut("abc123", []) == 3  # R2: letter -> number
    assert find_text_cut("'sab", []) == -1  # an apostrophe before letters may be a contraction
    assert find_text_cut("x'sab", []) == 1  # but a letter before the apostrophe is a boundary
    assert find_text_cut("a <|a b|> c", ["<|a b|>"]) == 1  # the space inside the special is refused
    assert find_byte_cut(b"abc def", [], 1) == 3 and find_byte_cut(b"\xff def", [], 1) == -1


@pytest.mark.parametrize("native", PATHS)
@settings(max_examples=100, deadline=None)
@given(text=text_st, sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_encode_iterable_equals_encode_for_any_split(native, text, sizes):
    tok = gpt2(native)
    pieces, i, j = [], 0, 0
    while i < len(text):
        n = sizes[j % len(sizes)]
        pieces.append(text[i:i + n])
        i, j = i + n, j + 1
    old = tokenizer_module.STREAM_CHUNK
    tokenizer_module.STREAM_CHUNK = 3  # force a cut search after nearly every piece
    try:
        assert list(tok.encode_iterable(pieces)) == tok.encode(text)
        assert list(tok.encode_iterable(io.StringIO(text))) == tok.encode(text)
    finally:
        tokenizer_module.STREAM_CHUNK = old


def test_chunker_never_splits_specials_at_chunk_boundaries():
    specials = [EOT, EOT + EOT]
    text = ("word " * 3 + EOT * 3 + "x") * 50
    for size in range(1, 30):
        chunker = SafeChunker(specials, min_chunk=1)
        out = [c for p in (text[i:i + size] for i in range(0, len(text), size)) if (c := chunker.feed(p))]
        out.append(chunker.finish())
        assert "".join(out) == text
        for chunk in out:  # every chunk starts and ends outside a special token occurrence
            assert not chunk.startswith(("|", "endoftext")) and not chunk.endswith(("<", "<|endoftext"))


@pytest.mark.parametrize("native", PATHS)
def test_encode_iterable_on_a_real_file(native, tinystories_valid):
    tok = gpt2(native, (EOT,))
    text = tinystories_valid.read_text(encoding="utf-8")
    if not native:
        text = text[:200_000]
    with open(tinystories_valid, encoding="utf-8") as fh:
        lines = fh.readlines()
    expected = tok.encode(text)
    assert list(tok.encode_iterable(io.StringIO(text))) == expected
    if native:
        assert list(tok.encode_iterable(lines)) == expected


def distinct_words(nbytes: int, seed: int, newline_every: int = 0) -> bytes:
    """``nbytes`` of random lowercase words of 5-10 letters, each after a space (seeded, so reproducible).

    Almost every word is new: the pre-token caches keep meeting entries they have not seen. With
    ``newline_every`` every that-many-th space is a newline instead.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    data = rng.integers(ord("a"), ord("z") + 1, size=nbytes, dtype=np.uint8)
    separators = np.cumsum(rng.integers(6, 12, size=nbytes // 6 + 1))  # every 6-11 bytes
    separators = np.concatenate([[0], separators[separators < nbytes - 1]])
    data[separators] = ord(" ")
    if newline_every:
        data[separators[newline_every::newline_every]] = ord("\n")
    return data.tobytes()


def test_distinct_words_are_distinct():
    words = distinct_words(1 << 20, 0, newline_every=50).split()
    assert len(set(words)) > 0.99 * len(words) > 100_000 and all(5 <= len(w) <= 10 for w in words)
    assert distinct_words(1 << 20, 0, newline_every=50).count(b"\n") == len(words) // 50


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    from cs336_basics.tokenizer import tokenizer as tokenizer_module
    from cs336_basics.tokenizer.tokenizer import Tokenizer

    def vm_size():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))

    gpt2, path, warm_path, extra, cache_limit = sys.argv[1:6]
    if int(cache_limit):
        tokenizer_module.CACHE_LIMIT = int(cache_limit)
    tok = Tokenizer.from_files(gpt2 + "/vocab.json", gpt2 + "/merges.txt", ["<|endoftext|>"])

    def stream(source):
        count = digest = 0
        with open(source, encoding="utf-8") as fh:
            for token in tok.encode_iterable(fh):
                count += 1
                digest = (digest * 1000003 + token) & 0xFFFFFFFFFFFF
        return count, digest

    # Warm up on other text: the allocator's free lists and the caches reach their working size.
    stream(warm_path)
    base = vm_size()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (base + int(extra), hard))
    try:
        count, digest = stream(path)
        ok = True
    except MemoryError:
        count, digest, ok = -1, -1, False
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    cache = tok._native.cache_info() if tok.uses_native else {"entries": len(tok._cache),
                                                              "max_entries": tokenizer_module.CACHE_LIMIT}
    print(json.dumps({"ok": ok, "count": count, "digest": digest, "native": tok.uses_native, "cache": cache}))
""")


def digest_of(ids) -> int:
    """The probe's running digest of a token stream."""
    digest = 0
    for token in ids:
        digest = (digest * 1000003 + int(token)) & 0xFFFFFFFFFFFF
    return digest


def run_probe(corpus, warm, extra_bytes: int, native: bool, cache_limit: int = 0):
    import os

    env = {k: v for k, v in os.environ.items() if k != "CS336_NO_NATIVE"}
    if not native:
        env["CS336_NO_NATIVE"] = "1"
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(GPT2_DIR), str(corpus), str(warm),
                             str(extra_bytes), str(cache_limit)], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["native"] == native
    return probe


@pytest.fixture(scope="module")
def warm_text(tmp_path_factory):
    """Warm-up text for the probes: real stories, none of the generated words."""
    path = tmp_path_factory.mktemp("warm") / "stories.txt"
    path.write_bytes(fixture_bytes(TINYSTORIES_VALID))
    return path


@pytest.mark.linux  # /proc/self/status and RLIMIT_AS
def test_streaming_5mb_of_new_words_needs_less_than_1mb_of_new_address_space(tmp_path, warm_text):
    """The C encoder's cache lives in arenas allocated up front: filling and clearing it costs no memory."""
    tok = gpt2(True, (EOT,))
    data = distinct_words(5 << 20, 1, newline_every=40)
    corpus = tmp_path / "words.txt"
    corpus.write_bytes(data)
    probe = run_probe(corpus, warm_text, 1 << 20, native=True)
    assert probe["ok"], "streaming needed more than 1 MB of new address space"
    assert probe["cache"]["entries"] <= probe["cache"]["max_entries"]
    expected = tok.encode_to_array(data)
    assert probe["count"] == expected.size > 1_000_000 and probe["digest"] == digest_of(expected.tolist())


PYTHON_CACHE_LIMIT = 1 << 12


@pytest.mark.linux  # /proc/self/status and RLIMIT_AS
def test_python_pre_token_cache_is_bounded_while_streaming_new_words(tmp_path):
    """The fallback's cache is cleared at CACHE_LIMIT entries (set small here), so ~120,000 new words
    (~25 MB of cache entries if it grew) stream in 2 MB of new address space."""
    tok = gpt2(False, (EOT,))
    warm, corpus = tmp_path / "warm.txt", tmp_path / "words.txt"
    warm.write_bytes(distinct_words(300_000, 2, newline_every=40))  # fills and clears the small cache
    data = distinct_words(1 << 20, 3, newline_every=40)
    corpus.write_bytes(data)
    probe = run_probe(corpus, warm, 2 << 20, native=False, cache_limit=PYTHON_CACHE_LIMIT)
    assert probe["ok"], "streaming new words needed more than 2 MB of new address space"
    assert probe["cache"]["max_entries"] == PYTHON_CACHE_LIMIT >= probe["cache"]["entries"]
    expected = tok.encode(data.decode())
    assert probe["count"] == len(expected) and probe["digest"] == digest_of(expected)


@pytest.mark.slow
def test_python_pre_token_cache_never_exceeds_its_limit():
    """With the real CACHE_LIMIT: more new pre-tokens than it allows, and the cache never holds more."""
    tok = gpt2(False, (EOT,))
    limit = tokenizer_module.CACHE_LIMIT
    text = distinct_words(10 * (limit + (limit >> 3)), 4, newline_every=40).decode()
    tok._cache.clear()
    largest = 0
    for i, _ in enumerate(tok.encode_iterable(io.StringIO(text))):
        if i % 4096 == 0:
            largest = max(largest, len(tok._cache))
    assert len(set(text.split())) > limit  # more distinct pre-tokens than the cache may hold
    assert limit // 2 < largest <= limit


@pytest.mark.slow
@pytest.mark.linux  # /proc/self/status and RLIMIT_AS
def test_100mb_file_without_newlines_streams_in_bounded_memory(tmp_path, warm_text):
    """A single 100 MB line of new words: read in fixed pieces, cut at safe boundaries; memory stays ~constant.

    The file is one 20 MB block of distinct words five times over: 20 MB is far more new words than
    either pre-token cache holds, so the caches never see a repeated word as one they remember.
    """
    tok = gpt2(True, (EOT,))
    block = distinct_words(20 << 20, 5)
    assert block.startswith(b" ") and b"\n" not in block
    path = tmp_path / "one_line.txt"
    with open(path, "wb") as fh:
        for _ in range(5):
            fh.write(block)  # each block starts with a space after a letter: a true pre-token boundary
    probe = run_probe(path, warm_text, 8 << 20, native=True)
    assert probe["ok"], "streaming needed more than 8 MB of new address space"
    assert probe["count"] == 5 * tok.encode_to_array(block).size > 40_000_000
