"""The slow, obviously-correct BPE trainer: the oracle every fast path is compared with (test-only).

It follows the definition literally: pre-tokenize with the regex module after splitting on
special tokens (both in ``tests/tokenizer/pretokenize_reference.py``, not the package's code), then, for
every merge, recount every adjacent pair of every distinct pre-token from scratch (weighted by
its frequency), take the pair with the highest count, ties going to the lexicographically
greatest ``(bytes, bytes)``, and merge it left to right, non-overlapping, in every pre-token.
No incremental bookkeeping, so nothing to get wrong in runs like ``"aaaa"``: "aaaa" holds the
pair (a, a) three times, and merging it gives [aa, aa].

Vocabulary layout (same as the fast trainer): ids 0-255 are the single bytes, then one id per merge
in order, then the special tokens in the order given.
"""

from __future__ import annotations

from collections import Counter

from tests.tokenizer.pretokenize_reference import GPT2_PATTERN, pretokenize_bytes


def merge_word(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    out: list[bytes] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def pretoken_counts_reference(data: bytes, special_tokens: list[str], pattern: str = GPT2_PATTERN) -> Counter:
    return Counter(pretokenize_bytes(data, special_tokens, pattern))


def train_bpe_reference(data: bytes | str, vocab_size: int, special_tokens: list[str],
                        pattern: str = GPT2_PATTERN) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    counts = pretoken_counts_reference(data, special_tokens, pattern)
    words = Counter({tuple(bytes([b]) for b in tok): c for tok, c in counts.items()})
    vocab = {i: bytes([i]) for i in range(256)}
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) + len(special_tokens) < vocab_size:
        pairs: Counter = Counter()
        for word, count in words.items():
            for left, right in zip(word, word[1:]):
                pairs[(left, right)] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        merged: Counter = Counter()
        for word, count in words.items():
            # a word without the left symbol cannot hold the pair: skip the (slow) rewrite
            merged[merge_word(word, best) if best[0] in word else word] += count
        words = merged
    for special in special_tokens:
        vocab[len(vocab)] = special.encode("utf-8")
    return vocab, merges
