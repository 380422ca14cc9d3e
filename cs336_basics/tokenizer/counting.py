"""Counting pre-tokens of big files: safe chunk boundaries, worker processes, a C hot loop.

The counting phase streams each input file in chunks of ``chunk_bytes``; worker processes count
the pre-tokens of each chunk and the parent adds the per-chunk tables. Memory is the chunks in
flight plus tables proportional to the number of *distinct* pre-tokens, never the file size.

Chunk boundaries must not change the result, so a chunk may only end at:

1. the start of a special-token occurrence that no other occurrence overlaps: the corpus is cut at
   special tokens before pre-tokenization anyway, and an occurrence found by scanning from the
   boundary is the one the full left-to-right scan finds too (no earlier occurrence reaches into it);
2. inside a long document, a ``\\n`` whose preceding byte is an ASCII character that is not
   whitespace (and no special-token occurrence covers the position). Proof that cutting there
   keeps the GPT-2 pre-tokens: every alternative of the pattern that matches a non-whitespace
   character (contractions, `` ?\\p{L}+``, `` ?\\p{N}+``, `` ?[^\\s\\p{L}\\p{N}]+``) can contain only
   non-whitespace after its optional leading *space* (U+0020), so the pre-token holding byte p-1
   cannot extend over the ``\\n`` at p: p is a pre-token boundary of the whole text. The matches
   before p never look past p: the last one stops at p because ``\\n`` is not in its class, and at
   the end of the chunk it stops for lack of input, at the same place; contractions are fixed
   strings that cannot include ``\\n``; whitespace matches before p end before the non-space byte
   p-1 and look ahead at most to it. The pattern has no look-behind, so matching from p onwards
   is the same whether or not the text before p is present. Hence
   ``pretok(text) == pretok(text[:p]) + pretok(text[p:])`` (test_bpe_chunking checks it on random
   texts). ASCII only, so p-1 is never part of a multi-byte character.

The hot loop (pre-tokenize + count) runs in C (``_bpe_count``, built from ``pretok.h``) for the
GPT-2 pattern; the pure-Python fallback (regex findall + Counter) is used when the extension is
missing, ``CS336_NO_NATIVE=1`` is set, or a custom pattern is given; both give identical counts.
Invalid UTF-8 is kept as bytes in both paths (surrogateescape semantics, see pretokenize.py).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

from cs336_basics.progress import byte_progress
from cs336_basics.runtime import native as native_ext
from cs336_basics.tokenizer.pretokenize import (
    CLASS_SPACE,
    GPT2_PATTERN,
    char_class_table,
    compiled_pattern,
    special_bytes_regex,
)
from cs336_basics.tokenizer.workers import worker_pool

_bpe_count = native_ext.loaded("_bpe_count")  # None without a compiler: the Python path gives identical results

DEFAULT_CHUNK_BYTES = 32 << 20
_WINDOW = 1 << 20


def native_count_available(pattern: str = GPT2_PATTERN) -> bool:
    return _bpe_count is not None and pattern == GPT2_PATTERN and not native_ext.disabled()


def _covered_by_special(buf: bytes, p: int, specials: Sequence[bytes]) -> bool:
    """Does an occurrence of a special token start before ``p`` and reach past it?"""
    for s in specials:
        lo = max(0, p - len(s) + 1)
        for start in range(lo, p):
            if buf.startswith(s, start):
                return True
    return False


def _safe_cut_in(buf: bytes, start: int, at_eof: bool, specials: tuple[str, ...]) -> int | None:
    """The first safe boundary ``i >= start >= 1`` inside ``buf`` (relative), or None."""
    special_bytes = [s.encode("utf-8") for s in specials]
    classes = char_class_table()
    candidates = []
    if specials:
        for m in special_bytes_regex(specials).finditer(buf, start):
            if not _covered_by_special(buf, m.start(), special_bytes):
                candidates.append(m.start())
                break
    nl = buf.find(b"\n", start)
    while nl != -1:
        prev = buf[nl - 1]
        if prev < 0x80 and not classes[prev] & CLASS_SPACE and not _covered_by_special(buf, nl, special_bytes):
            candidates.append(nl)
            break
        nl = buf.find(b"\n", nl + 1)
    # Near the end of buf an occurrence covering the candidate could run past what we read.
    longest = max((len(s) for s in special_bytes), default=0)
    candidates = [c for c in candidates if at_eof or c + longest <= len(buf)]
    return min(candidates) if candidates else None


def safe_cut_at_or_after(fh, target: int, size: int, specials: tuple[str, ...]) -> int:
    """The first safe boundary at or after ``target`` in the open binary file ``fh`` (``size`` if none)."""
    longest = max((len(s.encode("utf-8")) for s in specials), default=0)
    window = _WINDOW
    # Read a little before the target: the byte preceding a newline, and any special-token
    # occurrence that could cover the candidate.
    lo = max(0, target - max(1, longest))
    while True:
        fh.seek(lo)
        buf = fh.read(target - lo + window)
        at_eof = lo + len(buf) >= size
        rel = _safe_cut_in(buf, target - lo, at_eof, specials)
        if rel is not None:
            return min(size, lo + rel)
        if at_eof:
            return size
        window *= 2


def chunk_boundaries(path: str | Path, chunk_bytes: int, specials: Sequence[str], end: int | None = None) -> list[int]:
    """Offsets ``[0, ..., end]`` cutting ``path`` (up to ``end``, a safe cut) into chunks of about ``chunk_bytes``."""
    size = os.path.getsize(path) if end is None else end
    cuts = [0]
    with open(path, "rb") as fh:
        target = chunk_bytes
        while target < size:
            cut = safe_cut_at_or_after(fh, target, size, tuple(specials))
            if cut >= size:
                break
            cuts.append(cut)
            target = cut + chunk_bytes
    cuts.append(size)
    return cuts


def plan_chunks(paths: Sequence[str | Path], chunk_bytes: int, specials: Sequence[str],
                ends: dict[str, int] | None = None) -> list[tuple[str, int, int]]:
    """(path, start, end) tasks; ``ends`` optionally stops a file early (at a safe cut, e.g. a held-out tail)."""
    tasks = []
    for path in paths:
        cuts = chunk_boundaries(path, chunk_bytes, specials, (ends or {}).get(str(path)))
        tasks.extend((str(path), a, b) for a, b in zip(cuts, cuts[1:]) if b > a)
    return tasks


def count_bytes(data: bytes, specials: Sequence[str], pattern: str = GPT2_PATTERN,
                native: bool | None = None) -> dict[bytes, int]:
    """Pre-token counts of one buffer (split on specials first)."""
    use_native = native_count_available(pattern) if native is None else native
    segments = _segments(data, tuple(specials))
    if use_native:
        counter = _bpe_count.PretokenCounter()
        classes = char_class_table()
        for seg in segments:
            counter.feed(seg, classes)
        return counter.to_dict()
    regex_ = compiled_pattern(pattern)
    counts: Counter = Counter()
    for seg in segments:
        counts.update(regex_.findall(bytes(seg).decode("utf-8", "surrogateescape")))
    return {tok.encode("utf-8", "surrogateescape"): n for tok, n in counts.items()}


def _segments(data: bytes, specials: tuple[str, ...]) -> Iterator[memoryview]:
    view = memoryview(data)
    if not specials:
        yield view
        return
    pos = 0
    for m in special_bytes_regex(specials).finditer(data):
        if m.start() > pos:
            yield view[pos:m.start()]
        pos = m.end()
    if pos < len(data):
        yield view[pos:]


def _count_task(args: tuple[str, int, int, tuple[str, ...], str, bool]) -> tuple[int, dict[bytes, int]]:
    path, start, end, specials, pattern, native = args
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    return end - start, count_bytes(data, specials, pattern, native)


class _Totals:
    """Adds per-chunk tables: in C when available (one hash table), else a dict."""

    def __init__(self, native: bool) -> None:
        self.native = native and _bpe_count is not None
        self.table = _bpe_count.PretokenCounter() if self.native else {}

    def add(self, counts: dict[bytes, int]) -> None:
        if self.native:
            self.table.update(counts)
            return
        table = self.table
        for tok, n in counts.items():
            table[tok] = table.get(tok, 0) + n

    def result(self) -> dict[bytes, int]:
        return self.table.to_dict() if self.native else self.table


def count_pretokens(paths: Sequence[str | Path], specials: Sequence[str], *, workers: int = 1,
                    pattern: str = GPT2_PATTERN, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                    native: bool | None = None, show_progress: bool | None = None,
                    ends: dict[str, int] | None = None) -> dict[bytes, int]:
    """Counts of every distinct pre-token over all files (the chunked, parallel result equals one pass)."""
    use_native = native_count_available(pattern) if native is None else native
    specials = tuple(specials)
    tasks = plan_chunks(paths, chunk_bytes, specials, ends)
    total_bytes = sum(end - start for _, start, end in tasks)
    jobs = [(path, start, end, specials, pattern, use_native) for path, start, end in tasks]
    totals = _Totals(use_native)
    char_class_table()  # build once before forking so workers inherit it
    with byte_progress(total_bytes, "counting pre-tokens", enabled=show_progress) as bar:
        # a worker pool stops every worker on Ctrl-C or a worker's error, without draining the queue
        with (nullcontext(None) if workers <= 1 or len(jobs) <= 1
              else worker_pool(min(workers, len(jobs)))) as pool:
            for nbytes, counts in (map if pool is None else pool.imap_unordered)(_count_task, jobs):
                totals.add(counts)
                del counts
                bar.update(nbytes)
    return totals.result()
