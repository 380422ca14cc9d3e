"""Samples from fixed prompts with a fixed seed during training, written with their metrics.

The original author asked "how can I check during training that the decoder
quality is good?": every eval interval the training loop calls
:func:`write_training_samples`, which continues the same prompts with the same
seed and sampling settings, so successive ``samples/step_XXXXXXX.md`` files
differ only because the weights changed. The returned metrics (see
:mod:`.text_metrics`) go into ``metrics.jsonl`` as a "samples" event, so they
can be plotted next to the loss; ``samples/step_XXXXXXX.json`` keeps the raw
texts for ``cs336 report``'s sample table.

The in-vocabulary rate needs a word list of the training text. It is built
once per training text (cached by path, size and mtime) from the first
``VOCAB_SOURCE_BYTES`` of ``train.txt`` when the dataset directory has one,
else by decoding the first ``VOCAB_SOURCE_TOKENS`` tokens of the training
token file.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from cs336_basics.config import load_config
from cs336_basics.errors import UserError
from cs336_basics.evaluation.text_metrics import generation_metrics, reference_perplexity, word_vocabulary
from cs336_basics.evaluation.token_file_loss import evaluation_mode
from cs336_basics.fileio import atomic_write_text
from cs336_basics.generation import READING_TEMPERATURE, READING_TOP_P, Sampler, results_to_markdown
from cs336_basics.runs.layout import RunDir, resolve_data

VOCAB_SOURCE_BYTES = 10_000_000
VOCAB_SOURCE_TOKENS = 5_000_000


@functools.lru_cache(maxsize=4)
def _vocabulary_from_text(path: str, size: int, mtime: float) -> frozenset[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return frozenset(word_vocabulary([fh.read(VOCAB_SOURCE_BYTES)]))


_TOKEN_VOCAB_CACHE: dict[tuple, frozenset[str]] = {}


def _vocabulary_from_tokens(path: str, size: int, mtime: float, tokenizer) -> frozenset[str]:
    key = (path, size, mtime, str(getattr(tokenizer, "fingerprint", id(tokenizer))))
    if key not in _TOKEN_VOCAB_CACHE:
        ids = np.load(path, mmap_mode="r")[:VOCAB_SOURCE_TOKENS]
        _TOKEN_VOCAB_CACHE.clear()  # one training set per process is the normal case; do not grow
        _TOKEN_VOCAB_CACHE[key] = frozenset(word_vocabulary([tokenizer.decode(np.asarray(ids).tolist())]))
    return _TOKEN_VOCAB_CACHE[key]


def training_vocabulary(run_dir: RunDir | None, tokenizer=None, text_path: str | Path | None = None) -> set[str] | None:
    """The word list of a run's training text (see the module docstring), or None when none can be found.

    The run's data is found by :func:`cs336_basics.runs.layout.resolve_data`, the same rule every
    command uses: from the working directory, then from the run directory and its two parents.
    """
    text = Path(text_path) if text_path is not None and Path(text_path).is_file() else None
    token_file = None
    if run_dir is not None and run_dir.config_path.exists():
        try:
            paths = resolve_data(load_config(run_dir.config_path), run_dir.root)
        except UserError:  # an unreadable config only disables this one metric
            paths = None
        if paths is not None:
            text = text or paths.train_text
            token_file = paths.train
    if text is not None:
        st = text.stat()
        return set(_vocabulary_from_text(str(text.resolve()), st.st_size, st.st_mtime))
    if token_file is not None and tokenizer is not None:
        st = token_file.stat()
        return set(_vocabulary_from_tokens(str(token_file.resolve()), st.st_size, st.st_mtime, tokenizer))
    return None


def samples_markdown(step: int, results, metrics: dict[str, Any], settings: dict[str, Any]) -> str:
    """The metrics as a table, then the samples as rendered by the generation package."""
    lines = [f"# Samples at step {step}", "", f"Settings: {settings}", "", "| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        lines.append(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")
    return "\n".join(lines) + "\n\n" + results_to_markdown(results)


def write_training_samples(model, tokenizer, run_dir: RunDir, step: int, *, prompts: list[str] | None = None,
                           max_new_tokens: int = 128, seed: int = 0, device: str = "cpu",
                           temperature: float = READING_TEMPERATURE, top_p: float | None = READING_TOP_P, vocabulary: set[str] | None = None,
                           reference_model=None, reference_tokenizer=None) -> dict[str, Any]:
    """Continue fixed prompts with a fixed seed; write ``samples/step_XXXXXXX.{md,json}``; return the metrics.

    The model's training flag is left as it was (generation runs in eval mode under no_grad).
    """
    sampler = Sampler(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, device=device)
    prompts = sampler.prompts
    with evaluation_mode(model):
        results = sampler.sample(seed=seed)
    if vocabulary is None:
        vocabulary = training_vocabulary(run_dir, tokenizer)
    ref_ppl = None
    if reference_model is not None:
        ref_ppl = reference_perplexity(reference_model, reference_tokenizer or tokenizer, prompts,
                                       [r.text for r in results], device=device)
    metrics = generation_metrics(results, vocabulary=vocabulary, reference_ppl=ref_ppl)
    records = [{"prompt": r.prompt, "text": r.text, "stopped_by": r.stopped_by, "num_tokens": len(r.token_ids)}
               for r in results]
    run_dir.samples.mkdir(parents=True, exist_ok=True)
    stem = run_dir.samples / f"step_{step:07d}"
    settings = {"seed": seed, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(
        {"step": step, "settings": settings, "metrics": metrics, "samples": records}, indent=1, ensure_ascii=False))
    atomic_write_text(stem.with_suffix(".md"), samples_markdown(step, results, metrics, settings))
    return metrics


def read_samples(run_dir: RunDir) -> list[dict[str, Any]]:
    """Every ``samples/step_*.json`` of a run, in step order (unreadable files skipped)."""
    out = []
    for path in sorted(run_dir.samples.glob("step_*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda d: d.get("step", 0))
