"""The reference trainer on hand-made corpora, and the fast trainer against it on the same corpora.

Hand-checked cases: the handout's ``low lower widest newest`` example, ties, runs of one repeated
symbol (where incremental updaters classically over-count), special tokens inside words, non-ASCII
and invalid UTF-8.
"""

from __future__ import annotations

import random

import pytest

from cs336_basics.tokenizer.bpe_train import train_bpe
from cs336_basics.tokenizer.merging import merge_python
from tests.conftest import require_native
from tests.tokenizer.bpe_reference import pretoken_counts_reference, train_bpe_reference

EOT = "<|endoftext|>"


@pytest.fixture(params=["python", "c"])
def engine(request):
    """The trainer's engines: pure Python, or the C counting and merging extensions."""
    if request.param == "c":
        require_native("_bpe_count")
        require_native("_bpe_merge")
    return request.param


def fast(tmp_path, data: bytes | str, vocab_size: int, specials: list[str], engine: str = "c", **kw):
    path = tmp_path / "corpus.txt"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return train_bpe(path, vocab_size, specials, native=(engine == "c"), workers=1, show_progress=False, **kw)


HANDOUT = "low low low low low\nlower lower widest widest widest\nnewest newest newest newest newest newest"


def test_handout_example_whitespace_pretokenization():
    # The handout splits on whitespace for this example; the pattern is configurable, so use \S+.
    vocab, merges = train_bpe_reference(HANDOUT, 256 + 1 + 6, [EOT], pattern=r"\S+")
    assert merges == [(b"s", b"t"), (b"e", b"st"), (b"o", b"w"), (b"l", b"ow"), (b"w", b"est"), (b"n", b"e")]
    assert set(vocab.values()) == {bytes([i]) for i in range(256)} | {
        b"st", b"est", b"ow", b"low", b"west", b"ne", EOT.encode()}


def test_handout_example_fast(tmp_path, engine):
    expected = train_bpe_reference(HANDOUT, 256 + 1 + 12, [EOT], pattern=r"\S+")
    assert fast(tmp_path, HANDOUT, 256 + 1 + 12, [EOT], engine, pattern=r"\S+") == expected
    # With the GPT-2 pattern the words carry their leading space: " low" etc.
    assert fast(tmp_path, HANDOUT, 300, [EOT], engine) == train_bpe_reference(HANDOUT, 300, [EOT])


def test_ties_go_to_the_lexicographically_greatest_pair(engine):
    # Every pair occurs once: the greatest (bytes, bytes) wins, comparing the first element first
    # (pairs: (a, b), (" ", b), (b, a), (" ", c), (c, d)).
    _, merges = train_bpe_reference("ab ba cd", 257, [])
    assert merges == [(b"c", b"d")]
    # Second element decides when the first is equal, and a longer token beats its prefix:
    # after (a, b) is merged, (x, ab) and (x, a) tie at 1 and ("x", "ab") > ("x", "a").
    counts = {b"ab": 5, b"xab": 1, b"xa": 1}
    run = merge_python if engine == "python" else _native_merge
    assert run(list(counts), list(counts.values()), 2) == [(ord("a"), ord("b")), (ord("x"), 256)]


def _native_merge(words, counts, n):
    from cs336_basics.tokenizer import _bpe_merge

    return _bpe_merge.merge(words, counts, n)


def test_runs_of_one_symbol_hand_counted():
    # "aaaa" holds (a, a) three times; merging it left to right gives [aa, aa], then (aa, aa) once.
    _, merges = train_bpe_reference("aaaa", 258, [])
    assert merges == [(b"a", b"a"), (b"aa", b"aa")]
    # "aaa": (a, a) twice, then [aa, a] -> (aa, a).
    _, merges = train_bpe_reference("aaa", 258, [])
    assert merges == [(b"a", b"a"), (b"aa", b"a")]
    # "aaaaa" x1 and "ab" x2: (a, a) = 4 beats (a, b) = 2; then [aa, aa, a] has (aa, aa) = 1, (aa, a) = 1
    # and " a"... the counts after the merge must not keep the overlapping (a, a) pairs.
    _, merges = train_bpe_reference("aaaaa ab ab", 258, [])
    assert merges[0] == (b"a", b"a")
    assert merges[1] == (b"a", b"b")  # 2 occurrences of (a, b) beat 1 of (aa, aa)


RUN_SYMBOLS = [" ", "-", ".", "a", "=", "\n", "é"]


def _runs_corpus(seed: int) -> str:
    rng = random.Random(seed)
    parts = []
    for _ in range(200):
        sym = rng.choice(RUN_SYMBOLS)
        parts.append(sym * rng.randint(1, 17))
        parts.append(rng.choice(["", " ", "x", "ab", "\n", " word", EOT, "..", "-a-"]))
    return "".join(parts)


@pytest.mark.parametrize("seed", range(4))
def test_runs_inside_and_across_pretokens_match_reference(tmp_path, engine, seed):
    corpus = _runs_corpus(seed)
    expected = train_bpe_reference(corpus, 340, [EOT])
    assert fast(tmp_path, corpus, 340, [EOT], engine) == expected


def test_special_tokens_in_the_middle_of_words(tmp_path, engine):
    corpus = f"hel{EOT}lo wor{EOT}ld " * 20 + f"a{EOT}b" * 30
    vocab, merges = train_bpe_reference(corpus, 300, [EOT])
    assert fast(tmp_path, corpus, 300, [EOT], engine) == (vocab, merges)
    # no pair touches the special token: "lo" is a pre-token but "llo" never forms
    assert all(b"<" not in a + b and b"llo" != a + b for a, b in merges)
    counts = pretoken_counts_reference(corpus.encode(), [EOT])
    assert counts[b"lo"] == 20 and counts[b"ld"] == 20 and counts[b"hel"] + counts[b" hel"] == 20
    assert counts[b"ba"] == 29 and not any(b"<" in tok or b">" in tok for tok in counts)


def test_only_specials_between_single_bytes_gives_no_merges(tmp_path):
    corpus = f"a{EOT}b{EOT}" * 10
    vocab, merges = fast(tmp_path, corpus, 1000, [EOT])
    assert merges == [] and len(vocab) == 257 and vocab[256] == EOT.encode()


def test_longest_special_token_wins(tmp_path):
    specials = ["<|a|>", "<|a|><|a|>"]
    corpus = "x<|a|><|a|>y<|a|>z " * 10
    expected = train_bpe_reference(corpus, 300, specials)
    assert fast(tmp_path, corpus, 300, specials) == expected
    counts = pretoken_counts_reference(corpus.encode(), specials)
    assert all(b"|" not in tok for tok in counts)


def test_non_ascii_and_invalid_utf8_kept_as_bytes(tmp_path, engine):
    rng = random.Random(7)
    pieces = ["héllo", " naïve", " 日本語", " 😀😀", " Ωμέγα", "\xa0", b"\xff\xfe".decode("latin-1"),
              " 123", "\u3000x"]
    raw = []
    for _ in range(300):
        raw.append(rng.choice(pieces).encode("utf-8"))
        raw.append(rng.choice([b"\xff", b"\xe2\x82", b"\x80\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"", b" ",
                               b"\xf4\x90\x80\x80", EOT.encode()]))
    data = b"".join(raw)
    vocab, merges = train_bpe_reference(data, 400, [EOT])
    assert fast(tmp_path, data, 400, [EOT], engine) == (vocab, merges)
    # invalid bytes take part in merges as bytes (e.g. the run "\xff\xff" never decodes)
    counts = pretoken_counts_reference(data, [EOT])
    assert sum(c for tok, c in counts.items() if b"\xff" in tok) == data.count(b"\xff")


def test_vocab_layout_and_size(tmp_path):
    corpus = "the cat sat on the mat " * 50
    vocab, merges = fast(tmp_path, corpus, 270, [EOT, "<pad>"])
    assert len(vocab) == 270 and len(merges) == 270 - 256 - 2
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert vocab[268] == EOT.encode() and vocab[269] == b"<pad>"
    for k, (a, b) in enumerate(merges):
        assert vocab[256 + k] == a + b
