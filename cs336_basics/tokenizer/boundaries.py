"""Where a text may be cut so that encoding the pieces equals encoding the whole.

Streaming (``Tokenizer.encode_iterable``) and parallel file tokenization both
encode a long text piece by piece. That is exact only if every cut falls on a
position that is a pre-token boundary of the *whole* text, whatever follows,
and that no special token spans. This module finds such positions.

Why the rules are safe (GPT-2 pattern
``'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``).
Its alternatives cover every character, so the matches tile the text and a
position is a boundary iff no match contains both the character before it and
the one after it. The pattern has no look-behind, so the matches after a
boundary depend only on the text after it; the match that ends at the boundary
stops there both in the whole text and in the prefix (checked per rule below).

R1. ``text[k] == " "`` and ``text[k-1]`` is not whitespace. The only
    alternatives that contain a space are the whitespace runs (which cannot
    contain ``text[k-1]``) and the ``" ?"`` forms, where the space is the
    *first* character. So no match contains both. The match that ends at ``k``
    is not a whitespace run, so its ``(?!\\S)`` look-ahead is never consulted at
    ``k``; a greedy class run stops at ``k`` in the whole text (space is in none
    of its classes) as it does at the end of the prefix.
R2. A class change inside a run of non-whitespace: letter -> number/other,
    number -> letter/other, other -> letter/number where the other character is
    not an apostrophe. A greedy run covers one class only; a contraction
    (``'s``, ``'ll``, ...) is the only match that mixes classes (apostrophe, then
    letters), which is why an apostrophe before a letter is excluded.
    R2 matters for text without spaces (long URLs, CJK, code); a single run of
    one class (``"aaaa..."``, a long digit or whitespace run) has no safe cut
    at all: it is one pre-token and has to be held whole.

Special tokens: a cut is also rejected when any occurrence of a special token
starts before it and ends after it. With that, the special-token scan
(left to right, longest first) makes the same decisions on both sides of the
cut as on the whole text, since the decision at a position depends only on the
occurrences starting there. Checking needs ``max_len - 1`` characters after the
cut, so cuts are only proposed that far from the end of the known text.

Byte-level twin (``find_byte_cut``) for splitting raw files between worker
processes: R1 restricted to an ASCII non-space byte before the space. ASCII
bytes never occur inside a multi-byte UTF-8 sequence and the surrogateescape
decoding of invalid bytes resynchronises at every ASCII byte, so the two byte
ranges decode to exactly the two halves of the whole decoded text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np
import regex

from cs336_basics.tokenizer.pretokenize import char_class_table

_BYTE_CUT = regex.compile(rb"(?<=[\x21-\x7e])(?= )")
_APOSTROPHE, _SPACE = ord("'"), ord(" ")


@lru_cache(maxsize=1)
def _classes() -> np.ndarray:
    """Class of every code point (1 letter, 2 number, 4 whitespace, 0 other), as the regex module sees it."""
    return np.frombuffer(char_class_table(), dtype=np.uint8) & 7


def cut_candidates(text: str, lo: int, end: int) -> np.ndarray:
    """Positions k in [lo, end) that satisfy R1 or R2 (ignoring special tokens), ascending; lo >= 1.

    Vectorised over code points with the pre-tokenizer's own class table, so a
    long stretch without any cut costs ~10 ns per character, not a regex step.
    """
    if end <= lo:
        return np.zeros(0, dtype=np.int64)
    cp = np.frombuffer(text[lo - 1:end].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cls = _classes()[cp]
    prev, cur = cls[:-1], cls[1:]
    r1 = (cp[1:] == _SPACE) & ((prev & 4) == 0)
    r2 = (((prev | cur) & 4) == 0) & (prev != cur) & (cp[:-1] != _APOSTROPHE)
    return np.flatnonzero(r1 | r2) + lo


def _spans_special(text, k: int, specials: Sequence) -> bool:
    """Does an occurrence of a special token start before ``k`` and end after it?"""
    for s in specials:
        n = len(s)
        pos = text.find(s, max(0, k - n + 1), k + n - 1)
        while pos != -1 and pos < k:
            if pos + n > k:
                return True
            pos = text.find(s, pos + 1, k + n - 1)
    return False


def find_text_cut(text: str, specials: Sequence[str], lo: int = 1, hi: int | None = None) -> int:
    """The last safe cut ``k`` with ``lo <= k`` and ``k + lookahead <= len(text)``, or -1 if none.

    ``hi`` caps the search (cuts ``< hi``). The caller must know that ``text`` is
    followed by more text it has not seen: cuts are kept ``max_len - 1``
    characters away from the end so the special-token check sees enough.
    """
    lookahead = max((len(s) for s in specials), default=1) - 1
    end = len(text) - max(lookahead, 0)
    if hi is not None:
        end = min(end, hi)
    lo = max(lo, 1)
    # The last cut is almost always near the end: look at a short tail first, the whole range only if needed.
    tail_lo = max(lo, end - 4096)
    for start, stop in ((tail_lo, end), (lo, tail_lo)):
        for k in cut_candidates(text, start, stop)[::-1].tolist():
            if not specials or not _spans_special(text, k, specials):
                return k
    return -1


def find_byte_cut(data: bytes, specials: Sequence[bytes], lo: int = 1) -> int:
    """The first safe byte cut at or after ``lo`` (R1 with an ASCII byte before the space), or -1."""
    lookahead = max((len(s) for s in specials), default=1) - 1
    end = len(data) - max(lookahead, 0)
    while lo < end:
        m = _BYTE_CUT.search(data, lo, end)
        if m is None:
            return -1
        k = m.start()
        if not specials or not _spans_special(data, k, specials):
            return k
        lo = k + 1
    return -1


class SafeChunker:
    """Collects text pieces and releases prefixes that end at a safe cut.

    Only the newly arrived text (plus a short tail of the old) is searched for a
    cut, so a long stretch without any safe cut costs linear time; the pieces of
    such a stretch are kept in a list and joined once, when a cut finally comes.
    """

    def __init__(self, specials: Sequence[str], min_chunk: int = 1 << 16) -> None:
        self.specials = list(specials)
        self.min_chunk = min_chunk
        self.tail_len = max((len(s) for s in self.specials), default=1) + 1
        self.parts: list[str] = []
        self.size = 0
        self.unsearched = 0  # absolute position before which no new cut can appear

    def feed(self, piece: str) -> str | None:
        """Add ``piece``; return a chunk ready for encoding (ending at a safe cut) or None."""
        if not piece:
            return None
        self.parts.append(piece)
        self.size += len(piece)
        if self.size < self.min_chunk:
            return None
        # Search window: the tail of what was already searched plus everything new.
        # Cuts from lo_abs on were not checkable before (the look-ahead was missing); the window
        # reaches far enough back for the special-token check of those cuts.
        lo_abs = max(1, self.unsearched - self.tail_len + 1)
        window, offset = self._suffix_from(max(0, lo_abs - self.tail_len - 1))
        k = find_text_cut(window, self.specials, lo=max(1, lo_abs - offset))
        self.unsearched = self.size
        if k < 0:
            return None
        cut = offset + k
        whole = "".join(self.parts)
        self.parts = [whole[cut:]] if cut < len(whole) else []
        self.size = len(whole) - cut
        self.unsearched = self.size
        return whole[:cut]

    def finish(self) -> str:
        """Everything still held (the end of the text is always a boundary)."""
        rest = "".join(self.parts)
        self.parts, self.size, self.unsearched = [], 0, 0
        return rest

    def _suffix_from(self, start: int) -> tuple[str, int]:
        """The held text from absolute position ``start`` on (approximately: whole parts), and its offset."""
        pos = self.size
        i = len(self.parts)
        while i > 0 and pos > start:
            i -= 1
            pos -= len(self.parts[i])
        return "".join(self.parts[i:]), pos


def safe_chunks(pieces: Iterable[str], specials: Sequence[str], min_chunk: int = 1 << 16) -> Iterator[str]:
    """Re-cut a stream of text pieces into chunks that can be encoded independently."""
    chunker = SafeChunker(specials, min_chunk)
    for piece in pieces:
        chunk = chunker.feed(piece)
        if chunk:
            yield chunk
    rest = chunker.finish()
    if rest:
        yield rest
