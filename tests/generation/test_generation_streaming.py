"""TextStream: incremental decoding never splits characters, stop strings cut the text and never leak."""

from __future__ import annotations

import codecs

from hypothesis import given
from hypothesis import strategies as st

from cs336_basics.generation.streaming import TextStream

EOS = "<|endoftext|>"


class ByteTokenizer:
    """A byte-level test tokenizer: ids 0..255 are bytes, 256 is <|endoftext|> (the contract's surface only)."""

    def __init__(self, eos_id: int | None = 256) -> None:
        self.eos_id = eos_id
        self.vocab_size = 257
        self.special_tokens = [EOS]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, part in enumerate(text.split(EOS)):
            if i:
                ids.append(256)
            ids.extend(part.encode("utf-8"))
        return ids

    def decode(self, ids) -> str:
        return b"".join(EOS.encode() if i == 256 else bytes([i]) for i in ids).decode("utf-8", errors="replace")

    def incremental_decoder(self):
        tokenizer = self

        class Decoder:
            def __init__(self) -> None:
                self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

            def feed(self, ids) -> str:
                return self._utf8.decode(b"".join(
                    EOS.encode() if i == 256 else bytes([i]) for i in ids), final=False)

            def flush(self) -> str:
                return self._utf8.decode(b"", final=True)

        assert tokenizer is not None
        return Decoder()


def stream_all(text: str, stop: list[str]) -> tuple[TextStream, list[str]]:
    tokenizer = ByteTokenizer()
    stream = TextStream(tokenizer, stop)
    pieces = []
    for token in tokenizer.encode(text):
        pieces.append(stream.feed(token))
        if stream.stopped:
            break
    pieces.append(stream.finish())
    return stream, pieces


def test_multibyte_characters_never_split():
    text = "héllo 世界 🎉 naïve — ok"
    stream, pieces = stream_all(text, [])
    assert "".join(pieces) == text == stream.text
    assert all("\ufffd" not in piece for piece in pieces)
    assert sum(1 for piece in pieces if piece) < len(text.encode())  # bytes of one character came out together


def test_incomplete_tail_is_flushed_as_replacement():
    tokenizer = ByteTokenizer()
    stream = TextStream(tokenizer)
    pieces = [stream.feed(t) for t in "a€".encode()[:-1]]
    assert "".join(pieces) == "a"
    assert stream.finish() == "\ufffd"


def test_stop_string_cuts_text_and_is_never_streamed():
    stream, pieces = stream_all("The end. THE END and more", ["THE END"])
    assert stream.stopped
    assert stream.text == "The end. "
    assert "".join(pieces) == "The end. "


def test_earliest_of_several_stop_strings_wins():
    stream, _ = stream_all("abc\n\nxyz###", ["###", "\n\n"])
    assert stream.text == "abc"


def test_first_completed_stop_wins_within_one_piece():
    class PieceDecoder:  # a multi-character token that completes two stop strings at once
        def feed(self, ids):
            return "abcd"

        def flush(self):
            return ""

    class OneTokenTokenizer:
        def incremental_decoder(self):
            return PieceDecoder()

    stream = TextStream(OneTokenTokenizer(), ["bcd", "c"])
    assert stream.feed(0) == "ab" and stream.text == "ab"


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    stream, pieces = stream_all("a<b<c", ["<|stop|>"])
    assert not stream.stopped
    assert "".join(pieces) == "a<b<c"
    assert pieces[1] == ""  # "<" was held back until it could not start "<|stop|>"


@given(st.text(max_size=40), st.lists(st.text(min_size=1, max_size=4), max_size=3))
def test_stream_equals_full_decode_cut_at_first_stop(text, stops):
    stream, pieces = stream_all(text, stops)
    expected, hits = text, False
    for end in range(1, len(text) + 1):  # the shortest prefix holding a stop string decides the cut
        found = [text[:end].find(s) for s in stops if s in text[:end]]
        if found:
            expected, hits = text[: min(found)], True
            break
    assert stream.text == expected
    assert "".join(pieces) == expected
    assert stream.stopped == bool(hits)
