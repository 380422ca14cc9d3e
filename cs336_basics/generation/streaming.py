"""Turning generated ids into text as they arrive: whole characters only, stop strings honoured.

Each row of a batch gets one :class:`TextStream`. It feeds ids to the
tokenizer's incremental decoder (which returns only completed characters, so a
multi-byte character split across two byte-level tokens is never shown as
U+FFFD mid-stream), appends the text, and looks for user stop strings. Text that
could still turn out to be the beginning of a stop string is held back from the
stream until it is decided, so what a streaming caller prints is always a
prefix of the final text and never shows part of a stop string.
"""

from __future__ import annotations


class TextStream:
    """Incremental text of one generated sequence, cut before the first stop string."""

    def __init__(self, tokenizer, stop: list[str] | None = None) -> None:
        self._decoder = tokenizer.incremental_decoder()
        self.stop = [s for s in (stop or []) if s]
        self._longest_stop = max((len(s) for s in self.stop), default=0)
        self.text = ""
        """Everything decoded so far (after a stop: the text before the stop string)."""
        self.emitted = 0
        """Characters of ``text`` already handed out by :meth:`feed`/:meth:`finish`."""
        self.stopped = False
        """True once a stop string was found."""

    def feed(self, token_id: int) -> str:
        """Add one id; return the new text that is safe to show (possibly empty)."""
        if self.stopped:
            return ""
        self._append(self._decoder.feed([token_id]))
        return self._release(final=False)

    def finish(self) -> str:
        """End of generation: flush incomplete bytes (as U+FFFD) and release all held-back text."""
        if not self.stopped:
            self._append(self._decoder.flush())
        return self._release(final=True)

    def _append(self, piece: str) -> None:
        if not piece:
            return
        start = max(0, len(self.text) - self._longest_stop + 1)
        self.text += piece
        # the stop string that completes first wins (as if the text arrived one character at a time)
        hits = [(i + len(s), i) for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[:min(hits)[1]]
            self.stopped = True

    def _release(self, final: bool) -> str:
        end = len(self.text)
        if not final and not self.stopped:
            end -= self._held_back()
        piece = self.text[self.emitted:end]
        self.emitted = max(self.emitted, end)
        return piece

    def _held_back(self) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stop:
            for n in range(min(len(stop) - 1, len(self.text)), best, -1):
                if self.text.endswith(stop[:n]):
                    best = n
                    break
        return best
