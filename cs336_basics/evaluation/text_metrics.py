"""Cheap quality metrics for generated text, computed on samples from fixed prompts with a fixed seed.

Validation loss says how well the model predicts human text; it does not say
whether the model's *own* text is any good (the original author's question
"what are good eval metrics for generated text?"). Each metric here catches
one failure mode and misses others (docs/evaluation.md discusses them):

- ``distinct_1/2/3`` (Li et al. 2016, "A Diversity-Promoting Objective..."):
  distinct word n-grams / all word n-grams over all samples. Low values mean
  the model says the same things again and again (degenerate loops, one stock
  story). Gibberish scores *high*, so it must be read next to a fluency metric.
- ``repetition_4gram``: per sample, the fraction of word 4-grams that already
  occurred earlier in the same sample (Welleck et al. 2019 measure repeats the
  same way), averaged over samples. Catches "the dog was happy. the dog was
  happy." loops that greedy or low-temperature decoding produces.
- ``eos_rate`` / ``mean_tokens_to_eos``: how often a sample ends itself with
  end-of-text and after how many tokens. A TinyStories model that never ends a
  story has not learnt document structure; one that ends after 5 tokens is
  broken. Misses whether the ending makes sense.
- ``mean_words`` / ``mean_tokens``: length, to read the others against.
- ``in_vocab_rate``: the fraction of generated words (lower-cased letter runs)
  that occur in the training text's word list. A cheap fluency proxy: an
  undertrained byte-level model invents words ("bigglywoo"); misses grammar,
  coherence and copying (a model that copies training text scores 1.0).
- ``reference_ppl``: the perplexity of the continuations under another
  checkpoint (a bigger or better-trained model). Catches incoherence the
  word-level metrics cannot see, but rewards bland, repetitive text (which is
  why it is read next to distinct-n and repetition).

Words are ``\\w+`` runs (apostrophes inside words kept) plus single punctuation
marks, lower-cased, so the metrics do not depend on the tokenizer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import regex
import torch

from cs336_basics.evaluation.token_file_loss import evaluation_mode

_WORD = regex.compile(r"\w+(?:'\w+)*|[^\w\s]")
_LETTERS = regex.compile(r"\p{L}+")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``: the unit of distinct-n and repetition."""
    return _WORD.findall(text.lower())


def ngrams(items: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Distinct word n-grams / all word n-grams over all texts (None when there is no n-gram at all)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        grams += ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else None


def repetition_rate(text: str, n: int = 4) -> float | None:
    """Fraction of word n-grams of ``text`` that already occurred earlier in it (None when it has none)."""
    grams = ngrams(words(text), n)
    if not grams:
        return None
    return 1.0 - len(set(grams)) / len(grams)


def letter_words(text: str) -> list[str]:
    """Lower-cased runs of letters: the unit of the in-vocabulary rate (numbers and punctuation excluded)."""
    return _LETTERS.findall(text.lower())


def word_vocabulary(texts: Iterable[str], min_count: int = 1) -> set[str]:
    """The set of letter words occurring at least ``min_count`` times in ``texts`` (e.g. training text)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(letter_words(text))
    return {w for w, c in counts.items() if c >= min_count}


def in_vocab_rate(texts: Iterable[str], vocabulary: set[str]) -> float | None:
    """Fraction of the letter words of ``texts`` found in ``vocabulary`` (None when the texts have no words)."""
    total = hits = 0
    for text in texts:
        for word in letter_words(text):
            total += 1
            hits += word in vocabulary
    return hits / total if total else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def generation_metrics(texts: Sequence[Any], *, num_tokens: Sequence[int] | None = None,
                       stopped_by: Sequence[str] | None = None, vocabulary: set[str] | None = None,
                       reference_ppl: float | None = None) -> dict[str, Any]:
    """Metrics of a set of generated continuations (the generated part only, without the prompts).

    ``texts`` are strings or generation results (anything with ``.text``, ``.token_ids`` and
    ``.stopped_by``, such as :class:`cs336_basics.generation.GenerationResult`), from which the token
    counts and stop reasons are taken. ``stopped_by`` values: "eos", "stop" or "length".
    """
    if texts and not isinstance(texts[0], str):
        results = list(texts)
        texts = [r.text for r in results]
        num_tokens = num_tokens if num_tokens is not None else [len(r.token_ids) for r in results]
        stopped_by = stopped_by if stopped_by is not None else [r.stopped_by for r in results]
    texts = list(texts)
    out: dict[str, Any] = {"num_samples": len(texts)}
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(texts, n)
    out["repetition_4gram"] = _mean(repetition_rate(t, 4) for t in texts)
    out["mean_words"] = _mean(len(words(t)) for t in texts)
    if num_tokens is not None:
        out["mean_tokens"] = _mean(float(n) for n in num_tokens)
    if stopped_by is not None:
        eos = [i for i, why in enumerate(stopped_by) if why == "eos"]
        out["eos_rate"] = len(eos) / len(stopped_by) if stopped_by else None
        out["mean_tokens_to_eos"] = _mean(float(num_tokens[i]) for i in eos) if num_tokens is not None else None
    if vocabulary is not None:
        out["in_vocab_rate"] = in_vocab_rate(texts, vocabulary)
    if reference_ppl is not None:
        out["reference_ppl"] = reference_ppl
    return out


def reference_perplexity(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str],
                         device: str = "cpu") -> float | None:
    """Perplexity of each continuation given its prompt under ``model`` (any checkpoint), pooled over tokens.

    Prompt and continuation are encoded separately and concatenated, so the scored tokens are exactly
    the continuation's under this model's tokenizer; sequences longer than the model's context keep
    their last ``context_length`` tokens. None when no continuation has a token.
    """
    context = getattr(getattr(model, "config", None), "context_length", None)
    total, count = 0.0, 0
    with evaluation_mode(model):
        for prompt, cont in zip(prompts, continuations):
            head, tail = tokenizer.encode(prompt), tokenizer.encode(cont)
            if not tail:
                continue
            ids = head + tail
            if context is not None and len(ids) > context + 1:
                ids = ids[-(context + 1):]
            scored = min(len(tail), len(ids) - 1)  # the first token of a prompt-less text has no prediction
            if scored <= 0:
                continue
            x = torch.tensor(ids, dtype=torch.long, device=device).unsqueeze(0)  # (1, T+1)
            logits = model(x[:, :-1])[0].float()  # (T, V)
            logp = torch.log_softmax(logits[-scored:], dim=-1)  # (scored, V)
            targets = x[0, -scored:]  # (scored,)
            total += -logp.gather(-1, targets.unsqueeze(-1)).double().sum().item()
            count += scored
    if count == 0:
        return None
    return math.exp(total / count) if total / count < 700 else math.inf
