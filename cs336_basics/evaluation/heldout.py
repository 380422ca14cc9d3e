"""A held-out test half of a validation token file, cut at a document boundary.

A figure reported as a model's quality should come from text that nothing was chosen on.
:func:`split_at_document` cuts a validation token array into a development half (the
leading tokens: evaluations during training, checkpoint selection, recipe choices) and a
test half (the rest: scored once, at the end). The cut lies just after the document
delimiter token closest to the middle, so no story is shared by the two halves.
:func:`bytes_per_token` counts the UTF-8 bytes that a stretch of tokens decodes to, so each
half's bits per byte uses its own text rather than the whole file's average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeldOutSplit:
    """The validation tokens ``[0, cut)`` are the development half, ``[cut, total)`` the test half."""

    cut: int
    total: int

    def dev(self, tokens: np.ndarray) -> np.ndarray:
        return tokens[:self.cut]

    def test(self, tokens: np.ndarray) -> np.ndarray:
        return tokens[self.cut:self.total]

    @property
    def dev_tokens(self) -> int:
        return self.cut

    @property
    def test_tokens(self) -> int:
        return self.total - self.cut


def split_at_document(tokens: np.ndarray, delimiter_id: int | None, min_tokens: int) -> HeldOutSplit | None:
    """The split of ``tokens`` just after the ``delimiter_id`` closest to the middle (the delimiter ends the
    development half), or None when there is no delimiter or either half would have fewer than ``min_tokens``."""
    total = len(tokens)
    if delimiter_id is None or total < 2 * min_tokens:
        return None
    ends = np.flatnonzero(np.asarray(tokens) == delimiter_id) + 1  # candidate cuts: just after each delimiter
    if len(ends) == 0:
        return None
    cut = int(ends[np.argmin(np.abs(2 * ends - total))])  # the cut nearest the middle keeps the shorter half longest
    if min(cut, total - cut) < min_tokens:
        return None
    return HeldOutSplit(cut, total)


def token_byte_lengths(vocab: dict[int, bytes]) -> np.ndarray:
    """Bytes per token id (ids missing from ``vocab`` count 0)."""
    lengths = np.zeros(max(vocab) + 1 if vocab else 0, dtype=np.int64)
    for token_id, raw in vocab.items():
        lengths[token_id] = len(raw)
    return lengths


def bytes_per_token(tokens: np.ndarray, lengths: np.ndarray) -> float | None:
    """Mean UTF-8 bytes per token of ``tokens`` given :func:`token_byte_lengths` (None for no tokens)."""
    if len(tokens) == 0:
        return None
    return float(lengths[np.asarray(tokens, dtype=np.int64)].sum()) / len(tokens)
