"""Evaluating a saved checkpoint (``cs336 eval``): whole-file loss metrics, optionally generation metrics.

Loads the model with :func:`cs336_basics.runs.trained.load_trained_model`,
finds the run's validation file and tokenizer by the run-directory lookup rule
(:func:`cs336_basics.runs.layout.resolve_data`), scores the whole token file
with :func:`~cs336_basics.evaluation.token_file_loss.evaluate_loss`, and with sample
settings also generates from fixed prompts with a fixed seed and reports the
generation metrics of :mod:`.text_metrics` (with the samples' perplexity under
a second, reference checkpoint when one is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cs336_basics.errors import UserError
from cs336_basics.evaluation.token_file_loss import bytes_per_token_from_manifest, evaluate_loss, evaluation_mode
from cs336_basics.evaluation.samples import training_vocabulary
from cs336_basics.evaluation.text_metrics import generation_metrics, reference_perplexity
from cs336_basics.generation import DEFAULT_PROMPTS, READING_TEMPERATURE, READING_TOP_P, SamplingParams, generate
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.config.variants import POSITION
from cs336_basics.runtime.precision import choose_inference_dtype
from cs336_basics.runs.layout import RunDir, resolve_data
from cs336_basics.runs.trained import LoadedModel, load_trained_model
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.tokenizer.token_files import open_token_file, read_manifest


def _default_valid_path(loaded: LoadedModel) -> Path:
    found = resolve_data(loaded.config, loaded.run_dir).valid
    if found is None:
        raise UserError(f"no validation token file found for {loaded.checkpoint_path} (its config names "
                        "neither data.valid_path nor a data.dataset_dir with valid.npy that exists here); "
                        "pass --data FILE")
    return found


def _tokenizer_or_none(loaded: LoadedModel) -> Tokenizer | None:
    """The run's tokenizer (checked against the checkpoint's), or None when the run has none to find."""
    return loaded.tokenizer() if loaded.tokenizer_dir is not None else None


@dataclass
class SampleSettings:
    """What ``cs336 eval --samples`` generates: prompts, how many per prompt, length and seed."""

    prompts: list[str] | None = None
    """None: :data:`~cs336_basics.generation.DEFAULT_PROMPTS`."""
    per_prompt: int = 1
    max_new_tokens: int = 128
    seed: int = 0


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, *, device: str = "auto",
                        batch_size: int = 16, context_length: int | None = None, stride: int | None = None,
                        max_tokens: int | None = None, samples: SampleSettings | None = None,
                        reference_checkpoint: str | Path | None = None, dtype: str = "auto") -> dict[str, Any]:
    """The work of ``cs336 eval``: loss, perplexity, bits/byte and top-k accuracy of a checkpoint over a whole
    token file (default: the run's validation file), plus generation metrics when ``samples`` is given (or a
    reference checkpoint). ``dtype`` is resolved like ``train.dtype`` (:mod:`cs336_basics.runtime.precision`), timed on
    this evaluation's own forward pass. Returns JSON-able results."""
    run_device = resolve_device(device, option="--device")
    loaded = load_trained_model(checkpoint, device=run_device)
    model, mcfg = loaded.model, loaded.config.model
    tokenizer = _tokenizer_or_none(loaded)
    path = Path(data) if data is not None else _default_valid_path(loaded)
    tokens = open_token_file(path, vocab_size=mcfg.vocab_size,
                             tokenizer_fingerprint=getattr(tokenizer, "fingerprint", None))
    context = context_length or mcfg.context_length
    if context > mcfg.context_length and POSITION[mcfg.position].learned_table:
        raise UserError(f"--context-length {context} exceeds the model's learned position table "
                        f"({mcfg.context_length}); use at most {mcfg.context_length}")
    if stride is not None and stride > context:
        raise UserError(f"--stride {stride} is larger than the context length {context}; use 1..{context}")
    bpt = bytes_per_token_from_manifest(read_manifest(path))
    choice = choose_inference_dtype(dtype, model, mcfg, run_device, batch_size, context)
    result = evaluate_loss(model, tokens, context, batch_size, run_device, stride=stride, max_tokens=max_tokens,
                           bytes_per_token=bpt, autocast_dtype=choice.dtype,
                           refuse_nonfinite=f"the model in {loaded.checkpoint_path}")
    out: dict[str, Any] = {"checkpoint": str(loaded.checkpoint_path), "step": loaded.step, "data": str(path),
                           "bytes_per_token": bpt, "dtype": choice.name, "dtype_reason": choice.reason,
                           **result.to_dict()}
    if samples is not None or reference_checkpoint is not None:
        out["samples"] = sample_metrics(loaded, tokenizer, samples or SampleSettings(), run_device,
                                        reference_checkpoint, choice.dtype)
    return out


def sample_metrics(loaded: LoadedModel, tokenizer: Tokenizer | None, settings: SampleSettings,
                   device: torch.device, reference_checkpoint: str | Path | None = None,
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Generation-quality metrics of samples from fixed prompts (and their perplexity under a reference model)."""
    model = loaded.model
    if tokenizer is None:
        raise UserError(f"--samples needs the run's tokenizer, and none was found for {loaded.checkpoint_path}; "
                        "set data.tokenizer_dir in its config.toml")
    prompts = list(settings.prompts or DEFAULT_PROMPTS) * settings.per_prompt  # rows draw independently
    with evaluation_mode(model):
        sampling = SamplingParams(max_new_tokens=settings.max_new_tokens, temperature=READING_TEMPERATURE,
                                  top_p=READING_TOP_P)
        results = generate(model, tokenizer, prompts, sampling, seed=settings.seed, device=device, dtype=dtype)
    ref_ppl = None
    if reference_checkpoint is not None:
        ref = load_trained_model(reference_checkpoint, device=device)
        ref_tok = _tokenizer_or_none(ref) or tokenizer
        ref_ppl = reference_perplexity(ref.model, ref_tok, prompts, [r.text for r in results], device=device)
    vocab = training_vocabulary(RunDir(loaded.run_dir) if loaded.run_dir else None, tokenizer)
    metrics = generation_metrics(results, vocabulary=vocab, reference_ppl=ref_ppl)
    metrics["texts"] = [{"prompt": r.prompt, "text": r.text, "stopped_by": r.stopped_by} for r in results]
    return metrics
