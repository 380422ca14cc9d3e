"""The handout's definition of BPE encoding, written as plainly as possible: the oracle for every fast path.

Slow on purpose (for each pre-token, every merge in creation order scans the
whole pre-token), so tests use it on small vocabularies or short texts only.
Nothing here is shared with the implementation except the pre-tokenization
oracle of ``pretokenize.py`` (itself tested against the ``regex`` module).
"""

from __future__ import annotations

from cs336_basics.tokenizer.pretokenize import pretokenize_reference, split_on_special


def reference_encode(text: str, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                     special_tokens: list[str] | None = None, errors: str = "strict") -> list[int]:
    """Encode ``text`` by the handout's loop; special tokens missing from ``vocab`` get ids after the largest."""
    vocab = dict(vocab)
    token_id: dict[bytes, int] = {}
    for idx in sorted(vocab):
        token_id.setdefault(vocab[idx], idx)
    for special in special_tokens or []:
        raw = special.encode("utf-8")
        if raw not in token_id:
            new_id = max(vocab) + 1
            vocab[new_id] = raw
            token_id[raw] = new_id
    ids: list[int] = []
    for segment, is_special in split_on_special(text, special_tokens):
        if is_special:
            ids.append(token_id[segment.encode("utf-8")])
            continue
        for pretoken in pretokenize_reference(segment):
            parts = [bytes([b]) for b in pretoken.encode("utf-8", errors)]
            for left, right in merges:
                merged, i = [], 0
                while i < len(parts):
                    if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                        merged.append(left + right)
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            ids.extend(token_id[p] for p in parts)
    return ids
