"""GPT-2 byte-to-unicode files round-trip every byte string exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.tokenizer.gpt2_format import bytes_to_unicode, load_vocab_merges, save_vocab_merges


def test_map_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=30, unique=True))
def test_round_trip(tmp_path_factory, tokens):
    tmp = tmp_path_factory.mktemp("fmt")
    vocab = {i: bytes([i]) for i in range(256)}
    extra = [t for t in tokens if len(t) > 1]
    for t in extra:
        vocab[len(vocab)] = t
    merges = [(t[:1], t[1:]) for t in extra]
    save_vocab_merges(vocab, merges, tmp / "vocab.json", tmp / "merges.txt")
    assert load_vocab_merges(tmp / "vocab.json", tmp / "merges.txt") == (vocab, merges)


def test_loads_openai_gpt2_files(gpt2_dir):
    vocab, merges = load_vocab_merges(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt")
    assert len(vocab) == 50257 and len(merges) == 50000
    assert vocab[50256] == b"<|endoftext|>"
    assert merges[0] == (b" ", b"t")
