"""Token ids back to text: whole-sequence decoding and an incremental decoder for streaming output.

Byte-level BPE tokens are byte strings, and a multi-byte UTF-8 character is
often split across tokens (an emoji may take three tokens). So decoding joins
the bytes first and only then decodes, with ``errors="replace"``: a sequence
that is not valid UTF-8 (a model can emit any ids) becomes U+FFFD instead of
raising. Ids outside the vocabulary are a caller bug and raise
:class:`UnknownTokenId` (a ``ValueError`` naming the id).

The incremental decoder wraps Python's stateful UTF-8 decoder: ``feed`` returns
only completed characters and holds a trailing partial character back, so
``"".join(feed(...) for each piece) + flush()`` equals ``decode(all ids)``
however the ids are split into pieces (tested with hypothesis).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping

from cs336_basics.errors import UserError


class UnknownTokenId(UserError, ValueError):
    """A token id that is not in the vocabulary."""


def ids_to_bytes(vocab: Mapping[int, bytes], ids: Iterable[int]) -> bytes:
    """The concatenated bytes of ``ids``; :class:`UnknownTokenId` names the first id not in ``vocab``."""
    try:
        return b"".join([vocab[i] for i in ids])
    except (KeyError, TypeError):
        pass
    # Slow path only to name the culprit precisely.
    for i in ids:
        try:
            if i in vocab:
                continue
        except TypeError:
            pass
        raise UnknownTokenId(f"token id {i!r} is not in the vocabulary (valid ids: 0..{max(vocab)})")
    raise AssertionError("unreachable: every id was found on the second pass")


def decode_ids(vocab: Mapping[int, bytes], ids: Iterable[int]) -> str:
    """Decode ``ids`` to text; malformed UTF-8 becomes U+FFFD, unknown ids raise :class:`UnknownTokenId`."""
    return ids_to_bytes(vocab, list(ids)).decode("utf-8", errors="replace")


class IncrementalDecoder:
    """Turns a stream of ids into text, emitting only completed characters.

    ``feed(ids)`` returns the text that is complete so far; ``flush()`` returns
    what is left (a dangling partial character becomes U+FFFD) and resets.
    """

    def __init__(self, vocab: Mapping[int, bytes]) -> None:
        self._vocab = vocab
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: Iterable[int] | int) -> str:
        """Add ids (or one id); return the characters they complete."""
        if not hasattr(ids, "__iter__"):  # one id (int or numpy integer)
            ids = [ids]
        return self._decoder.decode(ids_to_bytes(self._vocab, list(ids)), final=False)

    def flush(self) -> str:
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
