"""Validation loss, perplexity, bits per byte and next-token accuracy over a whole token file.

Two ways to cut a long token stream into model-sized windows (the original
author's question "sliding window vs chunking?"):

- **non-overlapping windows** (default, ``stride=None``): windows of
  ``context_length`` inputs laid end to end. Every token after the first is
  predicted exactly once; the last, shorter window is included. Cheap (one
  forward per ``context_length`` tokens), but a token at the start of a window
  sees almost no history, so the loss is pessimistic compared with what the
  model achieves mid-context.
- **sliding window** (``stride=S``): windows of ``context_length`` inputs
  starting every ``S`` tokens; each window scores only targets no earlier
  window scored (its last ``S`` positions, all of them for the first window),
  so every token is still scored exactly once but with at least
  ``context_length - S`` tokens of history. Costs ``context_length / S`` times
  more compute. This is the "strided perplexity" of Hugging Face's perplexity
  guide and of the GPT-2 paper's evaluations.

Numerical choices: per-token losses come from a float32 log-sum-exp and are
summed in float64, and full-length windows are batched while the one partial
window (if any) runs on its own, so the result does not depend on the batch
size beyond float32 matmul rounding (relative difference well below 1e-6).
Top-k accuracy is the expected hit rate under random tie-breaking: with g
logits strictly above the target's and e logits equal to it (itself
included) a target counts (k - g) / e, clipped to [0, 1]. Without ties this is
the usual 0/1 hit; with ties it does not depend on how ``topk`` orders them,
and a uniform model scores exactly k / V. A position whose logits hold NaN or inf
scores no hit (its comparisons mean nothing), so a broken model never reaches 1.0.

The model is switched to eval mode (dropout off) under ``torch.no_grad`` and
every submodule's previous training flag is restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cs336_basics.errors import UserError
from cs336_basics.progress import progress
from cs336_basics.runtime.precision import autocast
from cs336_basics.tokenizer.vocabulary import check_ids_in_vocabulary

LN2 = math.log(2.0)


@dataclass
class EvalResult:
    """Summary of one evaluation pass; ``num_tokens`` is the number of scored (predicted) tokens."""

    loss: float
    """Mean next-token cross entropy in nats."""
    perplexity: float
    """exp(loss)."""
    bits_per_byte: float | None
    """loss / ln 2 / bytes_per_token: comparable across tokenizers; None when bytes_per_token is unknown."""
    top1: float
    """Fraction of targets that are the model's most likely next token."""
    top5: float
    """Fraction of targets among the model's five most likely next tokens."""
    num_tokens: int
    """Scored tokens (every token of the evaluated range except the first)."""
    context_length: int = 0
    stride: int | None = None
    num_windows: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """Inputs ``tokens[start:end]``, targets ``tokens[start+1:end+1]``; positions ``>= score_from`` are scored."""

    start: int
    end: int
    score_from: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(num_tokens: int, context_length: int, stride: int | None = None) -> list[Window]:
    """The windows that score every target index 1..num_tokens-1 exactly once (see the module docstring)."""
    if context_length < 1:
        raise UserError(f"context length must be at least 1, got {context_length}")
    last = num_tokens - 1  # the last input index whose successor exists is last - 1; targets run to `last`
    if last < 1:
        return []
    if stride is None:
        return [Window(s, min(s + context_length, last), 0) for s in range(0, last, context_length)]
    if not 1 <= stride <= context_length:
        raise UserError(f"stride must be between 1 and the context length {context_length}, got {stride}")
    windows = []
    scored_to = 0  # inputs [0, scored_to) have had their successor scored
    while scored_to < last:
        end = min(scored_to + stride, last) if windows else min(context_length, last)
        start = max(0, end - context_length)
        windows.append(Window(start, end, scored_to - start))
        scored_to = end
    return windows


def _capture_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """eval() + no_grad for the block; each submodule's own training flag comes back afterwards."""
    modes = _capture_modes(model)
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def _check_tokens(tokens: np.ndarray) -> None:
    if not isinstance(tokens, (np.ndarray, torch.Tensor)) or tokens.ndim != 1:
        raise UserError("evaluation tokens must be a one-dimensional array of token ids (a .npy token file)")
    if isinstance(tokens, np.ndarray) and not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"evaluation tokens must be integer token ids, got dtype {tokens.dtype}")


def _score_batch(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[float, float, float, int]:
    """Sums over masked positions: (nll, top-1 hits, top-5 hits) in float64, and the count.

    Scored one row at a time so the temporaries are (T, V), not (B, T, V): with a 50k vocabulary and
    long contexts a whole batch of float32 log-probabilities would cost gigabytes on top of the logits.
    """
    nll_sum = top1 = top5 = 0.0
    for row_logits, row_targets, row_mask in zip(logits, targets, mask):
        row = row_logits[row_mask].float()  # (S, V): only the scored positions
        tgt = row_targets[row_mask].unsqueeze(-1)  # (S, 1)
        target_logit = row.gather(-1, tgt)  # (S, 1)
        nll = torch.logsumexp(row, dim=-1) - target_logit.squeeze(-1)  # (S,)
        above = (row > target_logit).sum(dim=-1).double()  # (S,): logits strictly above the target's
        tied = (row == target_logit).sum(dim=-1).double()  # (S,): includes the target itself
        finite = torch.isfinite(row).all(dim=-1).double()  # (S,): a position with a NaN/inf logit is a miss
        nll_sum += nll.double().sum().item()
        top1 += (((1 - above) / tied).clamp(0.0, 1.0) * finite).nan_to_num(0.0).sum().item()
        top5 += (((5 - above) / tied).clamp(0.0, 1.0) * finite).nan_to_num(0.0).sum().item()
    return nll_sum, top1, top5, int(mask.sum().item())


def evaluate_loss(model: nn.Module, tokens: np.ndarray, context_length: int, batch_size: int,
                  device: str | torch.device = "cpu", *, stride: int | None = None, max_tokens: int | None = None,
                  bytes_per_token: float | None = None, autocast_dtype: torch.dtype | None = None,
                  show_progress: bool | None = None, refuse_nonfinite: str | None = None) -> EvalResult:
    """Mean next-token loss of ``model`` over ``tokens`` (a 1-D id array, e.g. a memory-mapped .npy).

    ``max_tokens`` restricts the pass to the file's first ``max_tokens`` tokens (a fixed subset, so
    values stay comparable between evaluations). ``bytes_per_token`` (UTF-8 bytes of the source text
    per token, from the token file's manifest) enables bits per byte. ``refuse_nonfinite`` names the model
    (e.g. its checkpoint) for a UserError when the first batch's logits hold NaN or inf; without it such a
    pass returns a NaN loss (the training loop decides what that means).
    """
    _check_tokens(tokens)
    if batch_size < 1:
        raise UserError(f"evaluation batch size must be at least 1, got {batch_size}")
    if max_tokens is not None:
        if max_tokens < 2:
            raise UserError(f"max_tokens must be at least 2 (one input and one target), got {max_tokens}")
        tokens = tokens[:max_tokens]
    windows = plan_windows(len(tokens), context_length, stride)
    if not windows:
        raise UserError(f"need at least 2 tokens to evaluate, got {len(tokens)}; use a larger validation file")
    device = torch.device(device)
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    full = [w for w in windows if w.length == context_length]
    # at most one window is shorter than the context; it runs alone so batches never need padding
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    batches += [[w] for w in windows if w.length != context_length]

    nll_sum, top1, top5, count = 0.0, 0.0, 0.0, 0
    started = time.perf_counter()
    with evaluation_mode(model), progress(total=sum(len(b) for b in batches), desc="eval", unit="win",
                                          enabled=show_progress) as bar:
        for index, batch in enumerate(batches):
            rows = np.stack([np.asarray(tokens[w.start:w.end + 1], dtype=np.int64) for w in batch])  # (B, T+1)
            ids = torch.from_numpy(rows).to(device)
            if vocab_size is not None:
                check_ids_in_vocabulary((int(ids.min()), int(ids.max())), vocab_size, where="the token data",
                                        vocabulary="the model's vocabulary", fix="the token file was made with a "
                                        "different tokenizer than the model was trained on")
            inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, T) each
            positions = torch.arange(inputs.shape[1], device=device)  # (T,)
            score_from = torch.tensor([w.score_from for w in batch], device=device)  # (B,)
            mask = positions.unsqueeze(0) >= score_from.unsqueeze(1)  # (B, T)
            with autocast(device, autocast_dtype or torch.float32):
                logits = model(inputs)  # (B, T, V)
            if refuse_nonfinite is not None and index == 0 and not bool(torch.isfinite(logits).all()):
                raise UserError(f"{refuse_nonfinite} produces logits that are not finite (NaN or inf) on the first "
                                "batch: its weights come from a diverged run; evaluate an earlier checkpoint")
            s, t1, t5, n = _score_batch(logits, targets, mask)
            nll_sum, top1, top5, count = nll_sum + s, top1 + t1, top5 + t5, count + n
            bar.update(len(batch))
    loss = nll_sum / count
    return EvalResult(
        loss=loss,
        perplexity=math.inf if loss >= 700 else math.exp(loss),  # NaN stays NaN (a diverged model)
        bits_per_byte=loss / LN2 / bytes_per_token if bytes_per_token else None,
        top1=top1 / count,
        top5=top5 / count,
        num_tokens=count,
        context_length=context_length,
        stride=stride,
        num_windows=len(windows),
        seconds=time.perf_counter() - started,
    )


def bytes_per_token_from_manifest(manifest: dict | None) -> float | None:
    """UTF-8 bytes of source text per token from a token file's manifest (None when it does not say)."""
    if not manifest:
        return None
    num_bytes, num_tokens = manifest.get("num_bytes"), manifest.get("num_tokens")
    if not num_bytes or not num_tokens:
        return None
    return float(num_bytes) / float(num_tokens)
