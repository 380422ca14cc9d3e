"""What a run evaluates while it trains: validation passes, the whole file at the end, samples, the budget's probe.

- The periodic passes score the first ``train.eval_tokens`` tokens of the file
  (the same subset each time, so the values compare) or, unset, the whole file;
  each writes an ``eval`` record and keeps the run's final and best validation loss.
- With a subset and ``train.final_eval`` a completed run ends with one pass
  over the whole file (:attr:`Evaluations.ends_with_whole_file`; the
  ``eval_full`` record).
- After each periodic pass, with ``train.samples`` and a tokenizer, samples from
  fixed prompts go to ``samples/`` (:func:`~cs336_basics.evaluation.write_training_samples`)
  and their metrics into a ``samples`` record; a failure there is logged, not raised,
  so a sampling bug cannot end a long run.
- Under a time budget, a few batches are timed before the first step
  (:meth:`Evaluations.probe`): the planner then knows what an evaluation costs
  on this machine instead of guessing.

Every pass runs under :func:`~.rng.preserved_rng`: evaluating must not move the
RNG streams the training steps use, or a resumed run would not repeat an
uninterrupted one exactly.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from cs336_basics.evaluation import EvalResult, evaluate_loss, write_training_samples
from cs336_basics.progress import info
from cs336_basics.runs.checkpoint import unwrap_model
from cs336_basics.runs.layout import RunDir
from cs336_basics.runs.metrics import Event, eval_fields
from cs336_basics.training.budget import BudgetPlanner
from cs336_basics.training.rng import preserved_rng
from cs336_basics.training.run_log import RunLog

PROBE_BATCHES = 3
"""Validation batches the time budget's probe scores before the first step."""


class Evaluations:
    """Scores ``model`` on the validation tokens with the run's context length, batch size and autocast dtype, and
    writes its samples; every pass is recorded in ``log``, its time in ``log.timings``."""

    def __init__(self, model: nn.Module, tokens: np.ndarray, cfg, device: torch.device, dtype: torch.dtype,
                 bytes_per_token: float | None, log: RunLog, tokenizer=None, rundir: RunDir | None = None) -> None:
        self.model, self.tokens, self.device, self.log = model, tokens, device, log
        self.tokenizer, self.rundir = (tokenizer, rundir) if cfg.train.samples else (None, None)
        """Samples need both (None: no samples)."""
        self.context_length = cfg.model.context_length
        self.batch_size = cfg.train.eval_batch_size
        self.eval_tokens: int | None = cfg.train.eval_tokens
        """The periodic passes' subset (None: the whole file)."""
        self.ends_with_whole_file = cfg.train.eval_tokens is not None and cfg.train.final_eval
        """Whether a completed run ends with a pass over the whole file."""
        self.autocast_dtype = None if dtype == torch.float32 else dtype
        self.bytes_per_token = bytes_per_token

    def score(self, max_tokens: int | None) -> EvalResult:
        """One pass over the file's first ``max_tokens`` tokens (None: all of them)."""
        with preserved_rng():
            return evaluate_loss(unwrap_model(self.model), self.tokens, self.context_length, self.batch_size,
                                 self.device, max_tokens=max_tokens, bytes_per_token=self.bytes_per_token,
                                 autocast_dtype=self.autocast_dtype, show_progress=False)

    def periodic(self, progress: Any) -> tuple[EvalResult, bool]:
        """A periodic pass and its ``eval`` record; ``progress`` (the trainer's counters: step, tokens, final and
        best validation loss) is updated. Returns the result and whether it improved on the best loss."""
        started = time.perf_counter()
        result = self.score(self.eval_tokens)
        progress.final_val_loss = result.loss
        improved = math.isfinite(result.loss) and (progress.best_val_loss is None
                                                   or result.loss < progress.best_val_loss)
        if improved:
            progress.best_val_loss = result.loss
        self.log.timings.eval += time.perf_counter() - started
        self.log.event(Event.EVAL, progress.step, progress.tokens,
                       **eval_fields(Event.EVAL, result, progress.best_val_loss))
        return result, improved

    def whole_file(self, progress: Any) -> EvalResult:
        """The end-of-run pass over the whole file and its ``eval_full`` record (``progress.full_val_loss``)."""
        started = time.perf_counter()
        result = self.score(None)
        progress.full_val_loss = result.loss
        self.log.timings.eval += time.perf_counter() - started
        self.log.event(Event.EVAL_FULL, progress.step, progress.tokens, **eval_fields(Event.EVAL_FULL, result))
        return result

    def write_samples(self, step: int, tokens: int) -> None:
        """Samples of the model at ``step`` into ``samples/`` and their metrics into a ``samples`` record."""
        if self.tokenizer is None:
            return
        started = time.perf_counter()
        try:
            with preserved_rng():
                metrics = write_training_samples(unwrap_model(self.model), self.tokenizer, self.rundir, step,
                                                 device=str(self.device))
        except Exception as exc:  # noqa: BLE001 - a sampling bug must not end a long run; it is logged instead
            info(f"warning: writing samples at step {step} failed: {type(exc).__name__}: {exc}")
            self.log.event(Event.SAMPLES_ERROR, step, tokens, error=f"{type(exc).__name__}: {exc}")
            return
        self.log.timings.samples += time.perf_counter() - started
        self.log.event(Event.SAMPLES, step, tokens,
                       **{k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))})

    def is_subset(self, result: EvalResult) -> bool:
        """Whether ``result`` scored less than the whole file."""
        return result.num_tokens < len(self.tokens) - 1

    def probe(self, planner: BudgetPlanner | None) -> None:
        """Under a time budget, time a few validation batches: the measured cost of evaluating, not a guess."""
        if planner is None:
            return
        tokens = PROBE_BATCHES * self.batch_size * self.context_length + 1
        planner.probe(self.score, min(tokens, len(self.tokens)))
