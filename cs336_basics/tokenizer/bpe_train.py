"""Byte-level BPE training: ``train_bpe(input_path, vocab_size, special_tokens, **options)``.

Two phases, each with a C fast path and an identical pure-Python fallback:

1. counting (counting.py): the files are cut into chunks at safe positions, worker processes
   pre-tokenize and count each chunk (C: ``_bpe_count``), the parent adds the tables;
2. merging (merging.py): incremental pair counts over the distinct pre-tokens and a max-heap
   (C: ``_bpe_merge``).

Semantics (the course's, made exact): the initial vocabulary is the 256 single bytes; the corpus
is split on the special tokens (longest first) before the GPT-2 regex split, so no pair touches a
special token; each step merges the most frequent adjacent pair within pre-tokens, weighted by
their counts, ties going to the lexicographically greatest ``(bytes, bytes)``; merges continue
until ``vocab_size`` (specials included) is reached or no pair is left. Invalid UTF-8 is kept as
bytes: an undecodable byte is a one-byte "other" character (surrogateescape semantics).

Vocabulary layout: ids 0-255 = bytes, 256 + k = the k-th merge, then the special tokens in order.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.progress import progress
from cs336_basics.tokenizer.counting import (
    DEFAULT_CHUNK_BYTES,
    count_pretokens,
    native_count_available,
    safe_cut_at_or_after,
)
from cs336_basics.tokenizer.merging import merge, native_merge_available
from cs336_basics.tokenizer.pretokenize import GPT2_PATTERN, special_token_list
from cs336_basics.tokenizer.vocabulary import check_vocab_size_trainable
from cs336_basics.tokenizer.workers import clamp_workers

INVALID_UTF8_POLICY = "kept as bytes (each undecodable byte is a one-byte 'other' character, as with surrogateescape)"


@dataclass
class TrainSummary:
    input_bytes: int
    distinct_pretokens: int
    pretoken_occurrences: int
    num_merges: int
    vocab_size: int
    workers: int
    native_count: bool
    native_merge: bool
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_rss_children_mb: float = 0.0
    invalid_utf8: str = INVALID_UTF8_POLICY
    special_tokens: list[str] = field(default_factory=list)
    heldout: dict[str, Any] | None = None
    """{"path", "start", "end"}: the tail of the last file kept out of training (holdout_bytes)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        engines = f"counting {'C' if self.native_count else 'Python'}, merging {'C' if self.native_merge else 'Python'}"
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        return "\n".join([
            f"trained {self.num_merges:,} merges (vocab {self.vocab_size:,}) on {self.input_bytes / 1e6:,.1f} MB: "
            f"{self.pretoken_occurrences:,} pre-tokens, {self.distinct_pretokens:,} distinct",
            f"time: {phases}",
            f"peak RSS: {self.peak_rss_mb:,.0f} MB (main process), "
            f"{self.peak_rss_children_mb:,.0f} MB (largest child process, e.g. a counting worker)",
            f"engines: {engines} ({workers})",
            f"special tokens: {', '.join(map(repr, self.special_tokens)) or 'none'}",
            f"invalid UTF-8: {self.invalid_utf8}",
        ])


@dataclass
class TrainResult:
    vocab: dict[int, bytes]
    merges: list[tuple[bytes, bytes]]
    summary: TrainSummary


def _check_inputs(paths: list[Path], vocab_size: int, special_tokens: list[str]) -> None:
    if not paths:
        raise UserError("no input file given; pass --input FILE")
    for path in paths:
        if not path.exists():
            raise UserError(f"input file not found: {path}")
        if path.is_dir():
            raise UserError(f"input is a directory, not a file: {path}")
        if path.stat().st_size == 0:
            raise UserError(f"input file is empty: {path}; give a file with training text")
    check_vocab_size_trainable(vocab_size, special_tokens)


def _peak_rss_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


def train_bpe_detailed(input_path: str | Path | list[str | Path], vocab_size: int,
                       special_tokens: list[str] | None = None,
                       *, workers: int | None = None, show_progress: bool | None = None, pattern: str = GPT2_PATTERN,
                       memory_budget: int | None = None, chunk_bytes: int | None = None,
                       native: bool | None = None, holdout_bytes: int = 0) -> TrainResult:
    """Train and also return a :class:`TrainSummary` (times per phase, peak memory, engines used).

    ``holdout_bytes > 0`` keeps about that many bytes at the end of the last file out of training
    (cut at a safe boundary), for measuring compression on unseen text; see ``summary.heldout``.
    """
    paths = [Path(p) for p in (input_path if isinstance(input_path, (list, tuple)) else [input_path])]
    specials = special_token_list(special_tokens)
    _check_inputs(paths, vocab_size, specials)
    workers = clamp_workers(workers)
    if chunk_bytes is None:
        if memory_budget is not None:
            # Text in flight is a few chunks per worker (being read, counted, and its table sent back).
            chunk_bytes = max(1 << 20, memory_budget // (4 * workers))
        else:
            # At least ~4 chunks per worker on mid-sized inputs (load balance, a moving progress bar),
            # at most 32 MiB each (memory), at least 1 MiB (per-chunk overhead).
            total = sum(p.stat().st_size for p in paths)
            chunk_bytes = min(DEFAULT_CHUNK_BYTES, max(1 << 20, total // (4 * workers)))
    native_count = native_count_available(pattern) if native is None else (native and native_count_available(pattern))
    native_merge = native_merge_available() if native is None else native

    ends, heldout = {}, None
    if holdout_bytes > 0:
        last = paths[-1]
        size = last.stat().st_size
        with open(last, "rb") as fh:
            cut = safe_cut_at_or_after(fh, max(1, size - holdout_bytes), size, tuple(specials))
        if 0 < cut < size:
            ends[str(last)] = cut
            heldout = {"path": str(last), "start": cut, "end": size}

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    counts = count_pretokens(paths, specials, workers=workers, pattern=pattern, chunk_bytes=chunk_bytes,
                             native=native_count, show_progress=show_progress, ends=ends)
    seconds["counting"] = time.perf_counter() - start

    start = time.perf_counter()
    words = list(counts)
    freqs = list(counts.values())
    occurrences = sum(freqs)
    distinct = len(words)
    del counts
    num_merges = vocab_size - 256 - len(specials)
    with progress(total=num_merges, desc="merging", unit="merge", enabled=show_progress) as bar:
        done = [0]

        def on_merge(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        id_merges = merge(words, freqs, num_merges, on_merge=on_merge, native=native_merge)
    del words, freqs
    vocab = {i: bytes([i]) for i in range(256)}
    merges: list[tuple[bytes, bytes]] = []
    for a, b in id_merges:
        merges.append((vocab[a], vocab[b]))
        vocab[len(vocab)] = vocab[a] + vocab[b]
    for special in specials:
        vocab[len(vocab)] = special.encode("utf-8")
    seconds["merging"] = time.perf_counter() - start

    summary = TrainSummary(
        input_bytes=sum(p.stat().st_size for p in paths) - (heldout["end"] - heldout["start"] if heldout else 0),
        distinct_pretokens=distinct,
        pretoken_occurrences=occurrences, num_merges=len(merges), vocab_size=len(vocab), workers=workers,
        native_count=native_count, native_merge=native_merge, seconds=seconds, special_tokens=specials,
        peak_rss_mb=_peak_rss_mb(resource.RUSAGE_SELF), peak_rss_children_mb=_peak_rss_mb(resource.RUSAGE_CHILDREN),
        heldout=heldout)
    return TrainResult(vocab, merges, summary)


def train_bpe(input_path: str | Path | list[str | Path], vocab_size: int, special_tokens: list[str] | None = None,
              **options: Any) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer.

    Options: ``workers`` (processes for counting; default all CPUs), ``show_progress`` (None = on a TTY),
    ``pattern`` (pre-tokenization regex; the C path only for the GPT-2 one), ``memory_budget`` (bytes of
    text in flight, sets the chunk size), ``chunk_bytes``, ``native`` (False forces the Python paths),
    ``holdout_bytes``.
    """
    result = train_bpe_detailed(input_path, vocab_size, special_tokens, **options)
    return result.vocab, result.merges
