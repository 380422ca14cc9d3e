"""The training loop: ``train(cfg, resume=None) -> TrainResult``, the engine behind ``cs336 train``.

:class:`Trainer` sets a run up (:mod:`.setup`: everything that can reject it before anything is written, then
the run directory claimed; then the model and the step built, the checkpoint loaded into them) and ``run()``
trains it. :meth:`Trainer._loop` names the phases of each step in order: the step (:class:`~.step.TrainStep`),
the time budget (:class:`~.step_plan.StepPlan`), the guard (:mod:`.nonfinite`, :mod:`.divergence`), the log
point (:mod:`.throughput`, :mod:`.run_log`), evaluation and checkpoint when due (:mod:`.evaluations`; a
checkpoint holds a :class:`~cs336_basics.runs.train_state.TrainState`), and the stop requests (:mod:`.signals`,
``train.stop_at_step``). Why a run ended is a :class:`~cs336_basics.runs.metrics.StopReason`, with its exit code.

What makes the loop trustworthy:

- **Exact resume.** A checkpoint holds the model, the optimizer, the step, the batch sampler's RNG and every
  global RNG, so N steps + ``--resume auto`` + N steps reproduces 2N uninterrupted steps bit for bit on CPU in
  float32. metrics.jsonl records written after the checkpoint are dropped on resume, so the log never holds
  two versions of a step.
- **Divergence is a result, not a crash.** A non-finite loss or gradient skips the update;
  ``train.max_nonfinite`` in a row, a loss far above the run's own start after real updates, or a validation
  loss that is not finite ends the run with ``diverged=True``; the last good checkpoint stays.
- **Signals.** SIGINT/SIGTERM finish the step, save, and return ``stop_reason="sigint"/"sigterm"``.
- **Only rank 0 writes** under DDP; every rank reaches the same skip/stop decisions because they use the
  all-reduced loss and the (identical) clipped gradient norm.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs336_basics.config import to_dict
from cs336_basics.config.accounting import flops_per_token
from cs336_basics.errors import ExitCode
from cs336_basics.evaluation import EvalResult
from cs336_basics.progress import info, progress
from cs336_basics.runs.checkpoint import CheckpointManager, model_state_dict
from cs336_basics.runs.lock import RunLock
from cs336_basics.runs.metrics import Event, Field, StopReason
from cs336_basics.runs.train_state import TrainState
from cs336_basics.runs.trained import export_safetensors
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.training import console, placement
from cs336_basics.training.compile_choice import choose_compile
from cs336_basics.training.distributed import (DistInfo, any_rank, barrier, init_distributed, rank_device,
                                               shutdown_distributed)
from cs336_basics.training.divergence import DivergenceRule
from cs336_basics.training.evaluations import Evaluations
from cs336_basics.training.memory import out_of_memory_is_user_error
from cs336_basics.training.nonfinite import NonFiniteGuard, NonFiniteState, check_weights, nonfinite_stop_message
from cs336_basics.training.resolve import truncate_metrics
from cs336_basics.training.resume import restore_parts
from cs336_basics.training.rng import rng_state
from cs336_basics.training.run_log import RunLog
from cs336_basics.training.schedule import build_schedule
from cs336_basics.training.setup import RunInputs, check_inputs, claim_run_dir
from cs336_basics.training.signals import StopRequest
from cs336_basics.training.step import StepResult, StepTimings, TrainStep, build_training_parts
from cs336_basics.training.throughput import ThroughputWindow
from cs336_basics.training.trackers import build_trackers, require_available


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports to its caller."""

    run_dir: Path
    steps: int
    tokens: int
    final_val_loss: float | None
    best_val_loss: float | None
    diverged: bool
    stop_reason: StopReason
    wallclock: float
    exit_code: int = ExitCode.OK
    """What ``cs336 train`` exits with: ``stop_reason.exit_code`` (:class:`~cs336_basics.errors.ExitCode`)."""


@dataclass
class _Progress:
    """The trainer's running counters (what of them a checkpoint keeps is in :class:`TrainState`)."""

    step: int = 0  # optimizer steps completed
    tokens: int = 0
    best_val_loss: float | None = None
    final_val_loss: float | None = None
    full_val_loss: float | None = None  # whole validation file at the end, when eval_tokens picks a subset
    last_eval_step: int = -1
    last_ckpt_step: int = -1
    wallclock_offset: float = 0.0
    wandb_run_id: str | None = None


class Trainer:
    """One run: builds everything from a RunConfig, then ``run()`` trains it. ``train()`` is the public entry."""

    def __init__(self, cfg, resume: str | None = None) -> None:
        require_available(cfg.logging)
        self.device = resolve_device(cfg.train.device)
        self.dist: DistInfo = init_distributed(self.device.type)
        self._owns_group = self.dist.enabled
        self.main = self.dist.is_main
        self.lock: RunLock | None = None
        try:
            self.device = rank_device(self.device, self.dist)
            placement.configure_backends(self.device)
            inputs = check_inputs(cfg, resume, self.dist, self.device)  # 1. nothing is written before this passes
            self.lock = RunLock(inputs.rundir.lock_path)
            claim_run_dir(inputs, self.lock, self.main, cfg.train.overwrite or resume == "auto", self.dist)  # 2.
            self._build(inputs)  # 3. the model and the step, the checkpoint loaded into them
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            if self._owns_group:  # a bad config must not leave the process group (and its peers) hanging
                shutdown_distributed(self.dist)
            raise

    def _build(self, inputs: RunInputs) -> None:
        """Build the model and everything the step needs, then load the checkpoint into them."""
        cfg, t = inputs.cfg, inputs.cfg.train
        self.cfg, self.rundir, self.plan, self.resumed_from = cfg, inputs.rundir, inputs.plan, inputs.resumed_from
        self.tokenizer, self.fingerprint = inputs.tokenizer, inputs.fingerprint
        self.tokens_per_step = cfg.tokens_per_step(self.dist.world_size)
        with out_of_memory_is_user_error(cfg, self.device):
            self.parts = build_training_parts(cfg, inputs.train_tokens, self.device, self.plan.total, self.dist)
        self.model, self.optimizer = self.parts.model, self.parts.optimizer
        self.progress = _Progress()
        self.divergence = DivergenceRule(cfg.model.vocab_size, t.divergence_loss)
        if inputs.checkpoint is not None:
            self._restore(inputs.checkpoint)
        self.ckpts = CheckpointManager(self.rundir.checkpoints, t.keep_last)
        self.compile_choice = choose_compile(t.compile, self.device, self.plan.total)
        self.parts.wrap(self.compile_choice.compiled, self.dist, self.device)
        self.timings = StepTimings()
        self.train_step = TrainStep(self.parts, self.device, t.grad_accum_steps, cfg.optimizer.grad_clip, self.dist,
                                    self.timings)
        self.flops_per_token = flops_per_token(cfg.model)["train"]
        self.peak = placement.peak_flops(self.device, self.parts.dtype, t.peak_tflops)
        self.stop = StopRequest(announce=self.main)
        self.guard = NonFiniteGuard(t.max_nonfinite)
        self.window = ThroughputWindow(self.tokens_per_step)
        self.log = RunLog(self.main, cfg.logging.quiet, self.timings, self.progress.wallclock_offset)
        self.evaluations = (Evaluations(self.model, inputs.valid_tokens, cfg, self.device, self.parts.dtype,
                                        inputs.valid_bytes_per_token, self.log, self.tokenizer, self.rundir)
                            if inputs.valid_tokens is not None else None)
        self._last_eval: EvalResult | None = None

    def _restore(self, checkpoint: TrainState) -> None:
        restore_parts(checkpoint, self.parts, self.resumed_from)
        s = self.progress
        s.step = checkpoint.step
        s.tokens = int(checkpoint.tokens) if checkpoint.tokens is not None else s.step * self.tokens_per_step
        s.best_val_loss, s.final_val_loss = checkpoint.best_val_loss, checkpoint.final_val_loss
        s.wallclock_offset = checkpoint.wallclock
        # a W&B run continues only when this run directory continues; a run started from another run's
        # checkpoint (train.checkpoint, --resume PATH) logs into a W&B run of its own
        same_run = (self.resumed_from is not None
                    and self.resumed_from.resolve().parent == self.rundir.checkpoints.resolve())
        s.wandb_run_id = checkpoint.wandb_run_id if same_run else None
        s.last_ckpt_step = s.last_eval_step = s.step
        self.divergence.start_loss = checkpoint.start_loss
        self.divergence.moved = any(self.parts.schedule(i) > 0
                                    for i in range(min(s.step, self.cfg.optimizer.warmup_iters + 2)))

    def _train_state(self) -> TrainState:
        """What a checkpoint written now holds."""
        s = self.progress
        return TrainState(model=model_state_dict(self.model), optimizer=self.optimizer.state_dict(), step=s.step,
                          tokens=s.tokens, config=to_dict(self.cfg), lr=self.parts.schedule(max(s.step - 1, 0)),
                          rng=rng_state(), sampler=self.parts.sampler.state_dict(), best_val_loss=s.best_val_loss,
                          final_val_loss=s.final_val_loss, tokenizer_fingerprint=self.fingerprint,
                          wandb_run_id=s.wandb_run_id, wallclock=self.log.wallclock(),
                          planned_total_steps=self.plan.total, start_loss=self.divergence.start_loss)

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.log.start_run()
        try:
            if self.main:
                self._open_logs()
                if self.evaluations is not None:
                    self.evaluations.probe(self.plan.planner)
            self.log.start_loop(self.progress.step)
            with self.stop, progress(total=self.plan.total, initial=self.progress.step, desc=cfg.train.run_name,
                                     unit="step", enabled=None if self.main and not cfg.logging.quiet else False,
                                     leave=True) as bar:
                self.log.bar = bar
                stop_reason = self._train(bar)
            return self._finish(stop_reason)
        finally:
            self.log.close()
            if self.lock is not None:
                self.lock.release()
            if self._owns_group:
                shutdown_distributed(self.dist)

    def _open_logs(self) -> None:
        """metrics.jsonl (cut back to the checkpoint's step on resume), the trackers, the first record and line."""
        cfg, s = self.cfg, self.progress
        if self.resumed_from is not None:
            truncate_metrics(self.rundir.metrics_path, s.step)
        trackers = build_trackers(cfg.logging, cfg.train.run_name, self.rundir.root, to_dict(cfg), s.wandb_run_id)
        self.log.open(self.rundir.metrics_path, trackers)
        s.wandb_run_id = next((t.run_id for t in trackers if t.run_id), s.wandb_run_id)
        self._log(Event.START if self.resumed_from is None else Event.RESUME, total_steps=self.plan.total,
                  world_size=self.dist.world_size, device=str(self.device), **self.parts.dtype_choice.record(),
                  **self.compile_choice.record(),
                  num_params=sum(p.numel() for p in self.model.parameters()),
                  resumed_from=str(self.resumed_from) if self.resumed_from else None)
        info(f"training {cfg.train.run_name}: {self.plan.describe()} x {self.tokens_per_step:,} tokens on "
             f"{self.device}, {self.parts.dtype_choice.describe()}, {self.compile_choice.describe()}"
             + (f", resuming at step {s.step}" if self.resumed_from else "") + f" -> {self.rundir.root}")

    def _train(self, bar) -> StopReason:
        """The loop (timed as ``StepTimings.loop``), then the end of a run that reached it."""
        try:
            with out_of_memory_is_user_error(self.cfg, self.device):
                loop_started = time.perf_counter()
                try:
                    stop_reason = self._loop(bar)
                finally:
                    self.timings.loop += time.perf_counter() - loop_started
                if stop_reason.reached_end:
                    self._complete()
        except NonFiniteState as exc:
            stop_reason = self._nonfinite_stop(exc.tensor)
        return stop_reason

    def _loop(self, bar) -> StopReason:
        """Optimizer steps until the plan's last one or a stop; each pass runs the phases of one step in order."""
        s = self.progress
        self.window.restart(time.perf_counter())
        while s.step < self.plan.total:
            result = self.train_step(s.step)  # step: batches, forward/backward, clipping, update
            s.step += 1
            s.tokens += self.tokens_per_step
            self.window.count(result)
            bar.update(1)
            self.plan.out_of_time(self.log.wallclock(), s.step)  # budget: once spent, this step is the last
            stop = self._guard_step(result)  # guard: non-finite policy, divergence rule
            if stop is not None:
                return stop
            if s.step % self.cfg.logging.log_interval == 0 or s.step == self.plan.total:
                self._log_point(bar, result)  # log: train record, budget re-plan, weights guard
            self._evaluate_and_save()  # eval and checkpoint, when due
            stop = self._requested_stop()  # signals, train.stop_at_step
            if stop is not None:
                return stop
        return self.plan.end_reason(s.step)

    def _guard_step(self, result: StepResult) -> StopReason | None:
        """The non-finite policy and the divergence rule on one step's loss and gradient norm."""
        s = self.progress
        if not self.guard.record(result.finite):
            self._log(Event.NONFINITE, loss=result.loss, grad_norm=result.grad_norm, in_a_row=self.guard.in_a_row)
            if self.guard.exhausted:
                info(self.guard.stop_message(s.step))
                return StopReason.DIVERGED_NONFINITE
        if self.divergence.exceeded(result.loss, result.lr, applied=result.finite):
            if self.main:
                info(self.divergence.advice(result.loss, s.step, self.cfg.optimizer))
            self._log(Event.TRAIN, loss=result.loss, lr=result.lr, grad_norm=result.grad_norm)
            return StopReason.DIVERGED_LOSS
        return None

    def _log_point(self, bar, result: StepResult) -> None:
        """The window's ``train`` record, the time budget's re-plan, the weights' finiteness, the console line."""
        s, lr = self.progress, result.lr
        window = self.window.close()
        if self.plan.replan(s.step, self.log.wallclock(), window.seconds, window.steps):
            self.parts.schedule = build_schedule(self.cfg.optimizer, self.plan.total)
            bar.total = self.plan.total
            bar.refresh()
        tok_s = window.tokens_per_s
        values: dict[str, Any] = {Field.LOSS: window.loss, Field.LR: lr, Field.GRAD_NORM: result.grad_norm,
                                  Field.TOKENS_PER_S: tok_s}
        if result.aux_loss:
            values[Field.AUX_LOSS] = result.aux_loss
        if window.skipped:
            values[Field.SKIPPED_STEPS] = window.skipped
        if self.flops_per_token and self.peak:
            values[Field.MFU] = self.flops_per_token * tok_s / self.peak
        self._log(Event.TRAIN, **values)
        self._guard_finite()
        self.log.train_line(s.step, self.plan.total, window.loss, tok_s, lr)

    def _evaluate_and_save(self) -> None:
        """The evaluation and the checkpoint when their intervals say so, timed outside the throughput window."""
        s, t = self.progress, self.cfg.train
        with self.window.excluded():
            started = time.perf_counter()
            if t.eval_interval and s.step % t.eval_interval == 0 and s.step < self.plan.total:
                self._evaluate()
                self.timings.loop_eval += time.perf_counter() - started
            if s.step % t.checkpoint_interval == 0 and s.step < self.plan.total:
                self._save()

    def _requested_stop(self) -> StopReason | None:
        """A signal seen by any rank (torchrun signals ranks separately) or ``train.stop_at_step``: save, stop."""
        s, stop_at = self.progress, self.cfg.train.stop_at_step
        if any_rank(self.stop.requested, self.dist, self.device):
            self._save()
            return self.stop.reason
        if stop_at is not None and s.step >= stop_at and s.step < self.plan.total:
            self._save()
            return StopReason.STOP_AT_STEP
        return None

    def _evaluate(self) -> None:
        """A periodic validation pass (rank 0 scores; every rank learns whether it was finite), best.pt when it
        improved, samples, and the pass's measured cost for the time budget."""
        if self.evaluations is None:
            return
        started = time.perf_counter()
        result, improved = self.evaluations.periodic(self.progress) if self.main else (None, False)
        if any_rank(result is not None and not math.isfinite(result.loss), self.dist, self.device):
            raise NonFiniteState(None)
        if self.main:
            self._last_eval, subset = result, self.evaluations.is_subset(result)
            self.log.eval_line(self.progress.step, self.plan.total, result.loss,
                               self.evaluations.eval_tokens if subset else result.num_tokens, subset)
            if improved:
                self._guard_finite()
                self._write_checkpoint(best=True)
            self.evaluations.write_samples(self.progress.step, self.progress.tokens)
            if self.plan.planner is not None:
                self.plan.planner.record_eval(time.perf_counter() - started, result.seconds, result.num_tokens)
        self.progress.last_eval_step = self.progress.step
        barrier(self.dist)

    def _evaluate_full(self) -> None:
        """With ``train.eval_tokens`` the periodic passes see a fixed subset; the run ends with the whole file."""
        if self.evaluations is None or not self.evaluations.ends_with_whole_file or not self.main:
            return
        result = self._last_eval = self.evaluations.whole_file(self.progress)
        if not math.isfinite(result.loss):
            raise NonFiniteState(None)

    def _guard_finite(self) -> None:
        """:func:`~.nonfinite.check_weights`: at every logged step and before anything is written from the weights."""
        check_weights(self.model, self.optimizer)

    def _save(self) -> None:
        """A step checkpoint (and latest.pt) of finite weights, written by rank 0 while every rank waits."""
        self._guard_finite()
        if self.main:
            self._write_checkpoint()
        self.progress.last_ckpt_step = self.progress.step
        barrier(self.dist)

    def _write_checkpoint(self, best: bool = False) -> None:
        """Write the train state as this step's checkpoint (or as best.pt); a second signal waits for it."""
        started = time.perf_counter()
        with self.stop.deferred():
            save = self.ckpts.save_best if best else self.ckpts.save
            save(self._train_state().to_checkpoint(), self.progress.step)
        self.timings.checkpoint += time.perf_counter() - started

    def _complete(self) -> None:
        """The end of a run that reached it: last evaluation and checkpoint, the whole-file pass, the weights file."""
        s = self.progress
        self._guard_finite()
        if s.last_eval_step != s.step:
            self._evaluate()
        if s.last_ckpt_step != s.step:
            self._save()
        self._evaluate_full()
        result = self._last_eval
        if result is not None and not self.evaluations.is_subset(result):
            self.log.say(console.whole_file_line(result.loss, result.perplexity, result.bits_per_byte,
                                              result.num_tokens))
        if self.main:
            export_safetensors(self.model, self.rundir.weights_path,
                               metadata={"step": str(s.step), "run_name": self.cfg.train.run_name})

    def _nonfinite_stop(self, tensor: str | None) -> StopReason:
        kept = self.ckpts.latest()
        if tensor is not None:
            self._log(Event.NONFINITE_WEIGHTS, tensor=tensor)
        else:
            self._log(Event.NONFINITE_VALIDATION)
        if self.main:
            info(nonfinite_stop_message(tensor, self.progress.step, kept))
        return StopReason.DIVERGED_NONFINITE

    def _finish(self, stop_reason: StopReason) -> TrainResult:
        """The ``end`` record, the closing console lines, and the result."""
        s, t = self.progress, self.timings
        self._log(Event.END, **{Field.STOP_REASON: stop_reason, Field.DIVERGED: stop_reason.diverged,
                                Field.FINAL_VAL_LOSS: s.final_val_loss, Field.BEST_VAL_LOSS: s.best_val_loss,
                                Field.FULL_VAL_LOSS: s.full_val_loss},
                  nonfinite_steps=self.guard.total, **t.end_fields())
        if self.main and stop_reason == StopReason.TIME_BUDGET:
            info(self.plan.planner.end_message(s.step, self.cfg.train.max_minutes))
        if self.main:
            info(f"{self.cfg.train.run_name}: {stop_reason} at step {s.step} ({s.tokens:,} tokens) in "
                 f"{console.duration(self.log.elapsed())}; loop overhead {100 * t.overhead_fraction():.1f}% of step time")
        return TrainResult(run_dir=self.rundir.root, steps=s.step, tokens=s.tokens, final_val_loss=s.final_val_loss,
                           best_val_loss=s.best_val_loss, diverged=stop_reason.diverged, stop_reason=stop_reason,
                           wallclock=self.log.wallclock(), exit_code=stop_reason.exit_code)

    def _log(self, event: Event, **values: Any) -> None:
        self.log.event(event, self.progress.step, self.progress.tokens, **values)


def train(cfg, resume: str | None = None) -> TrainResult:
    """Train the model ``cfg`` describes; ``resume`` is None (fresh), ``"auto"`` (latest checkpoint of the run) or a path."""
    return Trainer(cfg, resume).run()
