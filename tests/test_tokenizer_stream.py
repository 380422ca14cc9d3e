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
from tests.conftest import REPO, shared_file
from tests.encode_reference import gpt2_tokenizer

EOT = "<|endoftext|>"
SPECIALS = [EOT, EOT + EOT, "<|a b|>"]  # the last one contains a space: cuts inside it must be refused
ALPHABET = list("ab cA \n\t9'sltr.,!-") + ["é", "中", "😀", "\u00a0", "\u2028", "\ud83d", "\ude00", "\udc80",
                                          EOT, "<|", "|>", "<|a b|>", "<|a", " b|>"]
text_st = st.lists(st.sampled_from(ALPHABET), max_size=50).map("".join)
PATHS = [pytest.param(True, id="native"), pytest.param(False, id="python")]


def gpt2(native=True, specials=(EOT, EOT + EOT, "<|a b|>")):
    return gpt2_tokenizer(shared_file("gpt2/vocab.json").parent, native, specials)


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


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    from cs336_basics.tokenizer.tokenizer import Tokenizer

    def vm_size():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))

    tok = Tokenizer.from_files(sys.argv[1] + "/vocab.json", sys.argv[1] + "/merges.txt", ["<|endoftext|>"])
    path = sys.argv[2]
    def stream(limit=None):
        count = 0
        with open(path, encoding="utf-8") as fh:
            source = fh if limit is None else iter([fh.read(limit)])
            for _ in tok.encode_iterable(source):
                count += 1
        return count
    # Warm up (fills the pre-token cache and the allocator's free lists) on at most the first 8 MB.
    warm = stream(8 << 20)
    base = vm_size()
    limit = base + int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        count = stream()
        ok = True
    except MemoryError:
        count, ok = -1, False
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(json.dumps({"ok": ok, "count": count, "warm": warm, "native": tok.uses_native}))
""")


def run_probe(corpus, extra_bytes: int, env=None):
    import os

    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(shared_file("gpt2/vocab.json").parent),
                             str(corpus), str(extra_bytes)], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("native", [pytest.param(True, id="native"),
                                    pytest.param(False, id="python", marks=pytest.mark.slow)])
def test_streaming_5mb_needs_less_than_1mb_of_new_address_space(native):
    corpus = shared_file("tinystories/tinystories_5M_mixedcase.txt")
    if native:
        pytest.importorskip("cs336_basics.tokenizer._encode_native")
    probe = run_probe(corpus, 1 << 20, env=None if native else {"CS336_NO_NATIVE": "1"})
    assert probe["native"] == native
    assert probe["ok"], "streaming needed more than 1 MB of new address space"
    assert probe["count"] == probe["warm"] > 1_000_000  # the whole 5 MB file both times


@pytest.mark.slow
def test_100mb_file_without_newlines_streams_in_bounded_memory(tmp_path):
    """A single 100 MB line: read in fixed pieces, cut at safe boundaries; memory stays ~constant."""
    import random

    rng = random.Random(0)
    words = [w for w in shared_file("tinystories/tinystories_valid_head1k.txt").read_text().split() if w][:20000]
    block = " ".join(rng.choice(words) for _ in range(200_000)).encode()
    path = tmp_path / "one_line.txt"
    with open(path, "wb") as fh:
        while fh.tell() < 100 * 2**20:
            fh.write(block + b" ")
    assert b"\n" not in block
    probe = run_probe(path, 8 << 20)
    assert probe["ok"] and probe["count"] > 20_000_000
