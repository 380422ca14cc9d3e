"""The unigram baseline: what a model that ignores context scores, to put a trained model's loss in perspective.

It predicts every token with its (add-one smoothed) frequency in the training
token file, and is scored on the same validation targets as the model (every
token after the first), so the two losses are directly comparable. A trained
Transformer must beat it by a wide margin; one that does not has learned
nothing beyond word frequencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UnigramBaseline:
    """Cross-entropy of a context-free token-frequency model (add-one smoothed train counts)."""

    loss: float
    bits_per_byte: float | None


def unigram_baseline(train_tokens: np.ndarray, valid_tokens: np.ndarray, vocab_size: int,
                     bytes_per_token: float | None) -> UnigramBaseline:
    counts = np.zeros(vocab_size, dtype=np.float64)
    chunk = 1 << 24
    for start in range(0, len(train_tokens), chunk):
        counts += np.bincount(np.asarray(train_tokens[start:start + chunk], dtype=np.int64), minlength=vocab_size)
    log_probs = np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)
    targets = np.asarray(valid_tokens[1:], dtype=np.int64)  # the same targets the model is scored on
    loss = float(-log_probs[targets].mean())
    bpb = loss / np.log(2) / bytes_per_token if bytes_per_token else None
    return UnigramBaseline(loss, bpb)
