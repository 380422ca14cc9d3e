"""The merge phase of BPE training: incremental pair counts and a max-heap, in Python or in C.

Input: the distinct pre-tokens with their counts. Output: the merges, as pairs of token ids
(0-255 = bytes, 256 + k = the k-th merge).

Each step takes the pair with the highest count, ties going to the lexicographically greatest
``(bytes, bytes)``. Only words that contain the chosen pair are touched (an index pair -> words
finds them), and in each such word only the pairs next to a merge site change:

- merge sites are found left to right, non-overlapping (``a a a a`` with pair (a, a) has sites at
  0 and 2, giving ``z z``);
- the old pairs whose positions touch a site are removed once each (sites two apart share a
  neighbour, which is why a window per site, not a recount, must deduplicate), the new pairs touching
  a ``z`` are added once each. Removed pairs contain no ``z`` and added ones all do, so the two sets
  never cancel and the result equals a full recount. That is exactly where the classic over-count in
  runs of one symbol comes from, and the tests cover it against the recount-everything oracle.

Max structure (Python path): a heap of ``(-count, inverted(a), inverted(b), a, b)`` with lazy
invalidation. ``inverted`` maps a token's bytes to a string that sorts in the opposite order
(prefixes after their extensions), so the heap's minimum is the maximum pair. Entries are pushed
only when a pair's count grows (new pairs) and are upper bounds of the true count: a popped entry
whose count is stale is re-pushed with the true count; the first popped entry whose count is
current is the true maximum.

The C engine (``_bpe_merge``) implements the same algorithm with an indexed heap; both are compared
with the slow oracle in tests/tokenizer/bpe_reference.py.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable

from cs336_basics.runtime import native as native_ext

_bpe_merge = native_ext.loaded("_bpe_merge")  # None without a compiler: the Python path gives identical results


def native_merge_available() -> bool:
    return _bpe_merge is not None and not native_ext.disabled()


def _inverted(token: bytes) -> str:
    # chr(256 - byte) reverses byte order; the terminator chr(257) sorts after every byte,
    # so a prefix ("ab") comes after its extensions ("abc"), the reverse of bytes order.
    return "".join(chr(256 - b) for b in token) + chr(257)


def _sites_merge(word: list[int], a: int, b: int, z: int) -> tuple[list[int], list[int], list[int]]:
    """Merge (a, b) -> z left to right; return (new word, old pair indices touched, new pair indices touched)."""
    old_touched: list[int] = []
    new_word: list[int] = []
    new_touched: list[int] = []
    n = len(word)
    i = 0
    last_old = -1
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            for k in (i - 1, i, i + 1):
                if 0 <= k < n - 1 and k > last_old:
                    old_touched.append(k)
                    last_old = k
            new_word.append(z)
            i += 2
        else:
            new_word.append(word[i])
            i += 1
    last_new = -1
    m = len(new_word)
    for q, tok in enumerate(new_word):
        if tok == z:
            for k in (q - 1, q):
                if 0 <= k < m - 1 and k > last_new:
                    new_touched.append(k)
                    last_new = k
    return new_word, old_touched, new_touched


def merge_python(words: list[bytes], counts: list[int], num_merges: int,
                 on_merge: Callable[[int], None] | None = None) -> list[tuple[int, int]]:
    """The Python merge engine (fallback); returns merges as id pairs."""
    token_bytes = [bytes([i]) for i in range(256)]
    inverted = [_inverted(t) for t in token_bytes]
    seqs = [list(w) for w in words]
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (seq, count) in enumerate(zip(seqs, counts)):
        for pair in zip(seq, seq[1:]):
            pair_counts[pair] += count
            where[pair].add(wi)
    heap = [(-c, inverted[a], inverted[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges:
        best = None
        while heap:
            negc, _, _, a, b = heap[0]
            actual = pair_counts.get((a, b), 0)
            if actual == -negc:
                best = (a, b)
                break
            heapq.heappop(heap)
            if actual > 0:
                heapq.heappush(heap, (-actual, inverted[a], inverted[b], a, b))
        if best is None:
            break
        heapq.heappop(heap)
        a, b = best
        z = len(token_bytes)
        token_bytes.append(token_bytes[a] + token_bytes[b])
        inverted.append(_inverted(token_bytes[z]))
        merges.append(best)
        grown: set[tuple[int, int]] = set()
        for wi in where.pop(best):
            seq = seqs[wi]
            new_seq, old_touched, new_touched = _sites_merge(seq, a, b, z)
            if not old_touched:
                continue  # stale index entry: this word no longer holds the pair
            count = counts[wi]
            for k in old_touched:
                pair_counts[(seq[k], seq[k + 1])] -= count
            for k in new_touched:
                pair = (new_seq[k], new_seq[k + 1])
                pair_counts[pair] += count
                where[pair].add(wi)
                grown.add(pair)
            seqs[wi] = new_seq
        del pair_counts[best]
        for pair in grown:
            heapq.heappush(heap, (-pair_counts[pair], inverted[pair[0]], inverted[pair[1]], pair[0], pair[1]))
        if on_merge is not None:
            on_merge(len(merges))
    return merges


def merge(words: list[bytes], counts: list[int], num_merges: int, on_merge: Callable[[int], None] | None = None,
          native: bool | None = None) -> list[tuple[int, int]]:
    """Run ``num_merges`` merges (fewer if no pair is left) with the C engine when available."""
    use_native = native_merge_available() if native is None else native
    if use_native:
        if _bpe_merge is None:
            raise RuntimeError("the C merge engine is not built (python setup.py build_ext --inplace)")
        return _bpe_merge.merge(words, counts, num_merges, on_merge)
    return merge_python(words, counts, num_merges, on_merge)
