"""The decode loop, ``generate``: batched autoregressive sampling with a KV cache, stop conditions, streaming.

One loop serves every use: the CLI (one prompt, streamed), the training loop's
periodic samples (a few prompts, seeded) and evaluation. Per step it asks the
decoding strategy (:mod:`.decoding`) for the next-token logits of every row,
masks ids beyond the tokenizer's vocabulary, applies the repetition penalty,
picks one id per row (:mod:`.sampling`), and feeds the id to the row's
:class:`~.streaming.TextStream`. A row finishes at the end-of-text id ("eos"),
when its text contains a stop string ("stop"), or after ``max_new_tokens``
("length"); the loop ends when all rows have finished. What to generate comes
as one :class:`~cs336_basics.config.sampling.SamplingParams`; how (cache, device, dtype,
seed, streaming) as ``generate``'s keyword arguments.

Notable choices:

- An empty prompt starts from the end-of-text token (documents in the training
  data are separated by it, so the model has seen "start of a document" there).
- Prompts longer than the context keep their last ``context_length`` tokens.
- The model is put in eval mode under ``torch.inference_mode`` and its previous
  mode restored afterwards; its forward passes run under the caller's autocast
  dtype, while sampling works on float32 logits.
- Logits that are not finite (the weights of a diverged run) are a UserError,
  never a crash inside the sampler.
- With a seed, a private ``torch.Generator`` drives sampling, so the same seed
  gives the same samples and the global RNG is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from cs336_basics.errors import UserError
from cs336_basics.runtime.precision import autocast
from cs336_basics.generation.decoding import make_decoder
from cs336_basics.generation.sampling import apply_repetition_penalty, choose_next, make_generator
from cs336_basics.config.sampling import SamplingParams
from cs336_basics.generation.streaming import TextStream
from cs336_basics.tokenizer.vocabulary import check_vocab_agreement


@dataclass
class GenerationResult:
    """One generated continuation."""

    prompt: str
    text: str
    """The generated text (without the prompt), cut before a stop string."""
    token_ids: list[int]
    """Generated ids; the end-of-text id is not included, the id that completed a stop string is."""
    stopped_by: str
    """"eos", "stop" or "length"."""
    prompt_ids: list[int] = field(default_factory=list)
    """The ids the model was conditioned on (after truncation to the context)."""
    logits: torch.Tensor | None = None
    """(len(token_ids) (+1 at eos), V) float: raw model logits at each step, only with ``return_logits=True``."""


TokenCallback = Callable[[int, str], None]
"""``on_token(row, text_piece)``: called with each new piece of completed text of row ``row``."""


def check_tokenizer_fits(model: torch.nn.Module, tokenizer) -> None:
    """UserError when the tokenizer has ids the model cannot produce (it belongs to another model)."""
    check_vocab_agreement(model.config.vocab_size, tokenizer.vocab_size, model="the model's vocabulary size",
                          tokenizer="the tokenizer",
                          fix="use the tokenizer the model was trained with (--tokenizer DIR)")


def _model_device(model: torch.nn.Module, fallback: str | torch.device | None) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device(fallback if fallback is not None else "cpu")


def _encode_prompts(tokenizer, prompts: Sequence[str], context_length: int) -> list[list[int]]:
    encoded = []
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise UserError(f"prompts must be strings, got {type(prompt).__name__}")
        ids = list(tokenizer.encode(prompt))
        if not ids:
            if tokenizer.eos_id is None:
                raise UserError("empty prompt and the tokenizer has no <|endoftext|> token to start from; give a prompt")
            ids = [tokenizer.eos_id]
        encoded.append(ids[-context_length:])
    return encoded


def generate(model: torch.nn.Module, tokenizer, prompts: str | Sequence[str],
             sampling: SamplingParams = SamplingParams(), *, seed: int | None = None, use_cache: bool = True,
             on_token: TokenCallback | None = None, device: str | torch.device | None = None,
             return_logits: bool = False, dtype: torch.dtype = torch.float32) -> list[GenerationResult]:
    """Continue each prompt; one :class:`GenerationResult` per prompt, in order.

    ``sampling`` says what to generate (:class:`~cs336_basics.config.sampling.SamplingParams`:
    temperature, top-k/top-p, repetition penalty, ``max_new_tokens``, stop
    strings, whether end-of-text ends a row). ``seed`` makes sampling
    reproducible. ``on_token(row, piece)`` streams completed text.
    ``use_cache=False`` recomputes the whole context at every step (the slow
    reference). Inputs go to the model's device (``device`` is used only for a
    model without parameters). ``dtype`` is the autocast dtype of the forward
    passes (sampling itself is always float32).
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        return []
    cfg = model.config
    vocab_size = tokenizer.vocab_size
    check_tokenizer_fits(model, tokenizer)
    # the inputs must live where the weights are; ``device`` only matters for a parameterless model
    device = _model_device(model, device)
    eos_id = tokenizer.eos_id if sampling.stop_at_eos else None

    histories = _encode_prompts(tokenizer, prompts, cfg.context_length)
    results = [GenerationResult(prompt=p, text="", token_ids=[], stopped_by="length", prompt_ids=list(h))
               for p, h in zip(prompts, histories)]
    streams = [TextStream(tokenizer, list(sampling.stop)) for _ in prompts]
    done = [False] * len(prompts)
    step_logits: list[list[torch.Tensor]] = [[] for _ in prompts]
    generator = make_generator(seed, device)
    seen = None
    if sampling.repetition_penalty != 1.0:
        seen = torch.zeros((len(prompts), vocab_size), dtype=torch.bool, device=device)  # (B, V_tokenizer)
        for row, ids in enumerate(histories):
            seen[row, torch.tensor(ids, dtype=torch.long, device=device)] = True

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, dtype):
            decoder = make_decoder(model, use_cache, device)
            logits = decoder.prefill(histories) if sampling.max_new_tokens > 0 else None
            for step in range(sampling.max_new_tokens):
                raw = logits.float()  # (B, V_model)
                _check_finite_logits(raw)
                # ids beyond the tokenizer (rows of a model built with a larger vocab_size) are not candidates
                scores = raw[:, :vocab_size]  # (B, V_tokenizer)
                if seen is not None:
                    scores = apply_repetition_penalty(scores, seen, sampling.repetition_penalty)
                next_ids = choose_next(scores, sampling, generator)  # (B,)
                if seen is not None:
                    seen[torch.arange(len(prompts), device=device), next_ids] = True
                for row, token in enumerate(next_ids.tolist()):
                    histories[row].append(token)  # finished rows too, so every decoder sees aligned rows
                    if done[row]:
                        continue
                    if return_logits:
                        step_logits[row].append(raw[row].cpu())
                    _advance_row(row, token, results[row], streams[row], eos_id, on_token)
                    done[row] = results[row].stopped_by != "length"
                if all(done) or step == sampling.max_new_tokens - 1:
                    break
                logits = decoder.step(next_ids, histories)
    finally:
        model.train(was_training)

    for row, (result, stream) in enumerate(zip(results, streams)):
        tail = stream.finish()
        if tail and on_token is not None:
            on_token(row, tail)
        result.text = stream.text
        if stream.stopped:
            result.stopped_by = "stop"
        if return_logits:
            result.logits = torch.stack(step_logits[row]) if step_logits[row] else torch.empty(0, cfg.vocab_size)
    return results


def _check_finite_logits(raw: torch.Tensor) -> None:
    """UserError when the model's logits hold NaN or inf: its weights are broken, no token can be chosen."""
    if not bool(torch.isfinite(raw).all()):
        raise UserError("the model's next-token logits are not finite (NaN or inf), so it cannot generate: its "
                        "weights come from a diverged run; use an earlier checkpoint or retrain with a lower "
                        "optimizer.lr_max")


def _advance_row(row: int, token: int, result: GenerationResult, stream: TextStream, eos_id: int | None,
                 on_token: TokenCallback | None) -> None:
    """Record one sampled id for a still-running row and stream its text."""
    if token == eos_id:
        result.stopped_by = "eos"
        return
    result.token_ids.append(token)
    piece = stream.feed(token)
    if piece and on_token is not None:
        on_token(row, piece)
    if stream.stopped:
        result.stopped_by = "stop"
