"""Byte-level BPE encoding and decoding: the ``Tokenizer`` class.

Encoding follows the CS336 handout's definition exactly: cut the text at
special tokens (longest first, never split), split each remaining segment into
GPT-2 pre-tokens, and within each pre-token apply the merges in creation order
(the *rank of the pair*, not of the merged bytes; a merge whose rank is below
one already applied is never applied again, as in the handout's
"for each merge in order" loop). ``tests/tokenizer/encode_reference.py`` is that loop,
written plainly, and every fast path here is tested against it.

Fast paths, all giving identical ids:

- a pre-token -> ids cache (most pre-tokens of real text repeat);
- merging inside one pre-token by repeated "lowest-rank pair" scans for short
  pre-tokens, and per-rank buckets over a linked list of symbols for long ones,
  so a 1 MB run of one character costs linear time, not O(n^2);
- an optional C extension (``_encode_native.c`` + ``encode_merges.h``) that
  pre-tokenizes raw UTF-8 with the shared ``pretok.h`` and does the cache and
  the same merges in C. It is used when it was built and ``CS336_NO_NATIVE``
  is unset.

Text with lone surrogates (not encodable as UTF-8) is treated as ``tiktoken``
treats it: ``text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")``,
i.e. surrogate pairs are joined and lone surrogates become U+FFFD.
``encode_bytes`` on raw bytes instead keeps invalid UTF-8 as raw bytes (the
surrogateescape convention of ``pretokenize.py``), which is what file
tokenization uses, so no byte of a corpus is lost.

Reference: Sennrich et al. 2016 (BPE); Radford et al. 2019 (GPT-2 byte-level BPE); CS336 Assignment 1 handout, section 2.6.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from cs336_basics.errors import UserError
from cs336_basics.runtime import native as native_ext
from cs336_basics.tokenizer.boundaries import safe_chunks
from cs336_basics.tokenizer.detokenize import IncrementalDecoder, decode_ids
from cs336_basics.tokenizer.gpt2_format import MAX_TOKEN_ID, load_vocab_merges
from cs336_basics.tokenizer.pretokenize import (
    char_class_table,
    compiled_pattern,
    special_bytes_regex,
    special_token_list,
    split_on_special,
)
from cs336_basics.tokenizer.tokenizer_dir import load_tokenizer_dir

EOS = "<|endoftext|>"
LONG_MIN_LEN = 32  # pre-tokens longer than this (in bytes) use the bucket merge
CACHE_LIMIT = 1 << 19  # pre-token cache entries before the cache is cleared
CACHE_MAX_KEY = 256  # longer pre-tokens are not cached (rare, and would bloat the cache)
STREAM_CHUNK = 1 << 16  # characters per encode call in encode_iterable


def _native_module():
    return native_ext.module("_encode_native")


def fix_surrogates(text: str) -> str:
    """tiktoken's repair of text that is not valid UTF-8: join surrogate pairs, lone ones -> U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ----------------------------------------------------------------------------- merging within a pre-token
def merge_scan(ids: list[int], pairs: dict[tuple[int, int], tuple[int, int]]) -> list[int]:
    """Apply merges to one pre-token's ids by repeated scans for the lowest-rank pair (short inputs)."""
    last = -1
    while len(ids) > 1:
        best_rank, best_i = None, -1
        for i in range(len(ids) - 1):
            hit = pairs.get((ids[i], ids[i + 1]))
            if hit is not None and hit[0] > last and (best_rank is None or hit[0] < best_rank):
                best_rank, best_i = hit[0], i
        if best_rank is None:
            break
        a, b = ids[best_i], ids[best_i + 1]
        merged = pairs[(a, b)][1]
        out = ids[:best_i]
        i, n = best_i, len(ids)
        while i < n:  # every occurrence, left to right, as the handout's loop does
            if i + 1 < n and ids[i] == a and ids[i + 1] == b:
                out.append(merged)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids, last = out, best_rank
    return ids


def merge_buckets(ids: list[int], pairs: dict[tuple[int, int], tuple[int, int]]) -> list[int]:
    """Same result as :func:`merge_scan` in linear time (plus sorts of nearly sorted lists), for long inputs.

    The symbols form a linked list; candidate pairs wait in one bucket per rank
    and a small heap holds the ranks that have a bucket. A bucket is complete
    when its rank comes up (a merge never creates a pair of its own rank), so
    sorting it by position and sweeping left to right is exactly "merge every
    occurrence, left to right". A stale entry (the pair at its position changed)
    is recognised by looking the current pair up again. The C encoder uses the
    same algorithm (``encode_merges.h``); a heap over all positions was slower in
    both languages (cache misses), and not linear.
    """
    n = len(ids)
    tok = list(ids)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    buckets: dict[int, list[int]] = {}
    ranks: list[int] = []

    def add(rank: int, pos: int) -> None:
        bucket = buckets.get(rank)
        if bucket is None:
            buckets[rank] = [pos]
            heapq.heappush(ranks, rank)
        else:
            bucket.append(pos)

    for i in range(n - 1):
        hit = pairs.get((tok[i], tok[i + 1]))
        if hit is not None:
            add(hit[0], i)
    last = -1
    while ranks:
        rank = heapq.heappop(ranks)
        positions = buckets.pop(rank)
        if rank < last:
            continue  # below a merge already applied: never fires (the handout's order)
        positions.sort()
        for i in positions:
            j = nxt[i]
            if j < 0 or tok[i] < 0:
                continue
            hit = pairs.get((tok[i], tok[j]))
            if hit is None or hit[0] != rank:
                continue
            merged = hit[1]
            tok[i], tok[j] = merged, -1
            k = nxt[j]
            nxt[i] = k
            if k >= 0:
                prv[k] = i
                hit = pairs.get((merged, tok[k]))
                if hit is not None:
                    add(hit[0], i)
            p = prv[i]
            if p >= 0:
                hit = pairs.get((tok[p], merged))
                if hit is not None:
                    add(hit[0], p)
        last = rank
    out, i = [], 0
    while i >= 0:
        out.append(tok[i])
        i = nxt[i]
    return out


# ----------------------------------------------------------------------------- the tokenizer
class Tokenizer:
    """Byte-level BPE tokenizer: ``encode``, ``encode_iterable``, ``decode``.

    ``vocab`` maps id -> token bytes and must contain all 256 single bytes;
    ``merges`` are (left, right) byte pairs in creation order, each producing a
    token in the vocabulary. Special tokens missing from the vocabulary get new
    ids after the largest one.
    """

    def __init__(self, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                 special_tokens: list[str] | None = None) -> None:
        self.vocab: dict[int, bytes] = {int(i): bytes(t) for i, t in vocab.items()}
        self.merges: list[tuple[bytes, bytes]] = [(bytes(a), bytes(b)) for a, b in merges]
        self.special_tokens: list[str] = special_token_list(special_tokens)
        by_bytes: dict[bytes, int] = {}
        for idx in sorted(self.vocab):  # the lowest id wins when two ids share bytes
            by_bytes.setdefault(self.vocab[idx], idx)
        next_id = max(self.vocab, default=-1) + 1
        self._special_ids: dict[str, int] = {}
        for special in self.special_tokens:
            raw = special.encode("utf-8")
            if raw not in by_bytes:
                self.vocab[next_id] = raw
                by_bytes[raw] = next_id
                next_id += 1
            self._special_ids[special] = by_bytes[raw]
        self._by_bytes = by_bytes
        self._vocab_size = next_id
        if next_id > MAX_TOKEN_ID:
            raise UserError(f"the vocabulary needs token id {next_id - 1}, beyond the largest id a token file can "
                            f"hold ({MAX_TOKEN_ID - 1}, uint32); renumber the vocabulary from 0 or retrain the "
                            "tokenizer")
        missing = [b for b in range(256) if bytes([b]) not in by_bytes]
        if missing:
            raise UserError(f"the vocabulary lacks the single byte 0x{missing[0]:02x}; a byte-level BPE vocabulary "
                            "needs all 256 (retrain the tokenizer)")
        self._byte_ids = [by_bytes[bytes([b])] for b in range(256)]
        self._pairs: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(self.merges):
            ia, ib, im = by_bytes.get(a), by_bytes.get(b), by_bytes.get(a + b)
            if ia is None or ib is None or im is None:
                raise UserError(f"merge #{rank + 1} ({a!r}, {b!r}) uses or makes a token that is not in the "
                                "vocabulary; vocab and merges do not belong together")
            self._pairs.setdefault((ia, ib), (rank, im))  # a repeated merge keeps its first rank
        self._pattern = compiled_pattern()
        self._cache: dict[str, tuple[int, ...]] = {}
        self._fingerprint: str | None = None
        native = _native_module()
        self._native = None
        if native is not None:
            merges_ids = [(a, b, m, rank) for (a, b), (rank, m) in self._pairs.items()]
            self._native = native.Encoder(self._byte_ids, merges_ids, char_class_table())

    # -- construction helpers
    @classmethod
    def from_files(cls, vocab_filepath: str | Path, merges_filepath: str | Path | None = None,
                   special_tokens: list[str] | None = None) -> "Tokenizer":
        """Load GPT-2 format ``vocab.json`` + ``merges.txt`` (ours, OpenAI's or Hugging Face's).

        A tokenizer directory as the only path works too (see :meth:`from_dir`);
        ``special_tokens`` then replaces the ones in its meta.json.
        """
        if merges_filepath is None:
            if not Path(vocab_filepath).is_dir():
                raise UserError(f"{vocab_filepath} is not a tokenizer directory; give vocab.json and merges.txt")
            tok = cls.from_dir(vocab_filepath)
            return tok if special_tokens is None else cls(tok.vocab, tok.merges, special_tokens)
        vocab, merges = load_vocab_merges(vocab_filepath, merges_filepath)
        return cls(vocab, merges, special_tokens)

    @classmethod
    def from_dir(cls, directory: str | Path) -> "Tokenizer":
        """Load a directory written by ``cs336 tokenizer train`` (special tokens from its meta.json)."""
        vocab, merges, specials, _meta = load_tokenizer_dir(directory)
        return cls(vocab, merges, specials)

    def __reduce__(self):
        # Worker processes rebuild the tables (and the native encoder) from the plain data.
        return (type(self), (self.vocab, self.merges, self.special_tokens))

    # -- properties
    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1; equals ``len(vocab)`` for the usual contiguous ids)."""
        return self._vocab_size

    @property
    def uses_native(self) -> bool:
        return self._native is not None

    def token_to_id(self, token: str) -> int | None:
        """The id of a special token or of a token whose bytes are ``token`` in UTF-8, else None."""
        if token in self._special_ids:
            return self._special_ids[token]
        return self._by_bytes.get(token.encode("utf-8"))

    @property
    def eos_id(self) -> int | None:
        return self.token_to_id(EOS)

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of vocab, merges and special tokens: what a token file's manifest records."""
        if self._fingerprint is None:
            h = hashlib.sha256(b"cs336-bpe-v1\0")
            for idx in sorted(self.vocab):
                tok = self.vocab[idx]
                h.update(b"%d:%d:" % (idx, len(tok)) + tok)
            h.update(b"\0merges\0")
            for a, b in self.merges:
                h.update(b"%d:%d:" % (len(a), len(b)) + a + b)
            h.update(b"\0specials\0")
            for s in self.special_tokens:
                raw = s.encode("utf-8")
                h.update(b"%d:" % len(raw) + raw)
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # -- encoding
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens recognised, longest first)."""
        if self._native is not None:
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                data = fix_surrogates(text).encode("utf-8")
            return self._encode_bytes_native(data)
        try:
            return self._encode_str_python(text, strict=True)
        except UnicodeEncodeError:
            return self._encode_str_python(fix_surrogates(text), strict=True)

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of raw bytes; invalid UTF-8 stays as raw bytes (never replaced or dropped)."""
        if self._native is not None:
            return self._encode_bytes_native(bytes(data))
        return self._encode_str_python(bytes(data).decode("utf-8", "surrogateescape"), strict=False)

    def encode_to_array(self, data: bytes) -> np.ndarray:
        """``encode_bytes`` as a uint32 array, without building a Python int per id (file tokenization)."""
        if self._native is None:
            return np.array(self.encode_bytes(data), dtype=np.uint32)
        if not self.special_tokens:
            return np.frombuffer(self._native.encode_u32(data), dtype=np.uint32)
        parts, pos, view = [], 0, memoryview(data)
        for m in special_bytes_regex(tuple(self.special_tokens)).finditer(data):
            if m.start() > pos:
                parts.append(np.frombuffer(self._native.encode_u32(view[pos:m.start()]), dtype=np.uint32))
            parts.append(np.array([self._special_ids[m.group().decode("utf-8")]], dtype=np.uint32))
            pos = m.end()
        if pos < len(data):
            parts.append(np.frombuffer(self._native.encode_u32(view[pos:]), dtype=np.uint32))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily yield the ids of a stream of text (e.g. an open text file) in bounded memory.

        Equals ``encode("".join(iterable))``. An object with a ``read`` method is
        read in fixed-size pieces (so a file without newlines streams too); the
        pieces are re-cut only at proven pre-token boundaries (``boundaries.py``).
        Memory is bounded by the chunk size plus the longest stretch without a
        safe cut (in practice: the longest pre-token).
        """
        for chunk in safe_chunks(_pieces(iterable), self.special_tokens, STREAM_CHUNK):
            yield from self.encode(chunk)

    def _encode_bytes_native(self, data: bytes) -> list[int]:
        if not self.special_tokens:
            return self._native.encode(data)
        out: list[int] = []
        pos = 0
        view = memoryview(data)
        for m in special_bytes_regex(tuple(self.special_tokens)).finditer(data):
            if m.start() > pos:
                out += self._native.encode(view[pos:m.start()])
            out.append(self._special_ids[m.group().decode("utf-8")])
            pos = m.end()
        if pos < len(data):
            out += self._native.encode(view[pos:])
        return out

    def _encode_str_python(self, text: str, strict: bool) -> list[int]:
        out: list[int] = []
        errors = "strict" if strict else "surrogateescape"
        for segment, is_special in split_on_special(text, self.special_tokens):
            if is_special:
                out.append(self._special_ids[segment])
            else:
                self._encode_ordinary_python(segment, out, errors)
        return out

    def _encode_ordinary_python(self, segment: str, out: list[int], errors: str) -> None:
        cache = self._cache
        get = cache.get
        for piece in self._pattern.findall(segment):
            ids = get(piece)
            if ids is None:
                ids = self.bpe(piece.encode("utf-8", errors))
                if len(piece) <= CACHE_MAX_KEY:
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[piece] = ids
            out.extend(ids)

    def bpe(self, piece: bytes) -> tuple[int, ...]:
        """Ids of one pre-token (its bytes) after merging: pure Python."""
        ids = [self._byte_ids[b] for b in piece]
        merge = merge_buckets if len(ids) > LONG_MIN_LEN else merge_scan
        return tuple(merge(ids, self._pairs))

    # -- decoding
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; malformed UTF-8 becomes U+FFFD; an id not in the vocabulary raises ValueError."""
        return decode_ids(self.vocab, ids)

    def incremental_decoder(self) -> IncrementalDecoder:
        """A decoder for streamed ids: ``.feed(ids) -> str`` (completed characters only), ``.flush()``."""
        return IncrementalDecoder(self.vocab)

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens!r}, native={self.uses_native})")


def _pieces(source: Iterable[str]) -> Iterator[str]:
    """Text pieces of ``source``: fixed-size reads for file-like objects, the items otherwise."""
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            piece = read(STREAM_CHUNK)
            if not piece:
                return
            if not isinstance(piece, str):
                raise UserError("encode_iterable needs text; open the file in text mode ('r', encoding='utf-8')")
            yield piece
    else:
        for piece in source:
            if not isinstance(piece, str):
                raise UserError(f"encode_iterable needs str pieces, got {type(piece).__name__}")
            yield piece
