"""The training loop: ``train(cfg, resume=None) -> TrainResult``, the engine behind ``cs336 train``.

One optimizer step is :class:`~cs336_basics.training.step.TrainStep` (learning
rate from the schedule, micro-batches under autocast, clipping, a finiteness
check, the AdamW update). Around it, at configured intervals: logging
(metrics.jsonl always, progress bar, optional W&B/TensorBoard), validation over
the validation file (:func:`~cs336_basics.evaluation.evaluate_loss`), generated
samples, checkpoints.

What makes the loop trustworthy:

- **Exact resume.** A checkpoint holds the model, the optimizer, the step, the
  batch sampler's RNG and every global RNG, so N steps + ``--resume auto`` + N
  steps reproduces 2N uninterrupted steps bit for bit on CPU in float32.
  metrics.jsonl records written after the checkpoint are dropped on resume, so
  the log never holds two versions of a step.
- **Divergence is a result, not a crash.** A non-finite loss or gradient skips
  the update; ``train.max_nonfinite`` in a row, a loss far above the run's
  own start after real updates (:mod:`.divergence`), or a validation loss
  that is not finite ends the run with ``diverged=True`` and a
  ``stop_reason`` starting with ``diverged``; the last good checkpoint stays.
- **Signals.** SIGINT/SIGTERM finish the step, save, and return
  ``stop_reason="sigint"/"sigterm"`` (see :mod:`.signals` for exit codes).
- **Only rank 0 writes** under DDP; every rank reaches the same skip/stop
  decisions because they use the all-reduced loss and the (identical) clipped
  gradient norm.

stop_reason values: ``completed``, ``time_budget`` (``train.max_minutes`` ended the
run before the steps asked for, or before its planned schedule ended; exit 0),
``stop_at_step``, ``sigint``, ``sigterm``, ``diverged_nonfinite``, ``diverged_loss``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cs336_basics.config import ModelConfig, from_dict, to_dict
from cs336_basics.config.accounting import flops_per_token
from cs336_basics.errors import UserError
from cs336_basics.evaluation import bytes_per_token_from_manifest, evaluate_loss
from cs336_basics.evaluation.samples import write_training_samples
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.outputs import check_output_dir
from cs336_basics.progress import info, progress
from cs336_basics.runs.checkpoint import (
    CheckpointManager,
    check_finite,
    first_nonfinite,
    load_model_weights,
    model_state_dict,
    optimizer_tensors,
    read_checkpoint,
    remove_stale_temp_files,
    unwrap_model,
)
from cs336_basics.runs.layout import RUN_DIR, RunDir, resolve_data
from cs336_basics.runs.lock import RunLock
from cs336_basics.runs.metrics import MetricsLog
from cs336_basics.runs.trained import export_safetensors
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.tokenizer.token_files import read_manifest
from cs336_basics.training import console, placement
from cs336_basics.training.budget import BudgetPlanner, TimeBudget
from cs336_basics.training.data import open_tokens
from cs336_basics.training.divergence import DivergenceRule
from cs336_basics.training.memory import check_fits, out_of_memory_is_user_error
from cs336_basics.training.distributed import (
    DistInfo,
    any_rank,
    barrier,
    init_distributed,
    min_over_ranks,
    rank_device,
    shutdown_distributed,
)
from cs336_basics.training.resolve import (
    check_optimizer_resumable,
    check_split_sizes,
    prepare_fresh_run_dir,
    require_validation,
    resolve_vocab_size,
    resume_source,
    total_steps,
    truncate_metrics,
)
from cs336_basics.training.rng import preserved_rng, rng_state, set_rng_state
from cs336_basics.training.schedule import build_schedule
from cs336_basics.training.signals import StopRequest
from cs336_basics.training.step import StepTimings, TrainStep, build_training_parts
from cs336_basics.training.trackers import Tracker, build_trackers, require_available


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports to its caller."""

    run_dir: Path
    steps: int
    tokens: int
    final_val_loss: float | None
    best_val_loss: float | None
    diverged: bool
    stop_reason: str
    wallclock: float
    exit_code: int = 0
    """What ``cs336 train`` exits with: 0 completed, 3 diverged, 130 SIGINT, 143 SIGTERM."""


class _NonFiniteState(Exception):
    """A weight or optimizer moment became NaN/inf, or the validation loss did: the run stops without writing
    anything from the weights. ``tensor`` names the tensor, or is None for the validation loss."""

    def __init__(self, tensor: str | None) -> None:
        super().__init__(tensor)
        self.tensor = tensor


@dataclass
class _State:
    step: int = 0  # optimizer steps completed
    tokens: int = 0
    best_val_loss: float | None = None
    final_val_loss: float | None = None
    full_val_loss: float | None = None  # whole validation file at the end, when eval_tokens picks a subset
    last_eval_step: int = -1
    last_ckpt_step: int = -1
    wallclock_offset: float = 0.0
    nonfinite_in_a_row: int = 0
    nonfinite_total: int = 0
    wandb_run_id: str | None = None
    window_losses: list[float] = field(default_factory=list)


class Trainer:
    """One run: builds everything from a RunConfig, then ``run()`` trains it. ``train()`` is the public entry."""

    def __init__(self, cfg, resume: str | None = None) -> None:
        self.cfg = cfg
        t = cfg.train
        require_available(cfg.logging)
        self.device = resolve_device(t.device)
        self.dist: DistInfo = init_distributed(self.device.type)
        self._owns_group = self.dist.enabled
        self.lock: RunLock | None = None
        try:
            self._build(cfg, resume)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            if self._owns_group:  # a bad config must not leave the process group (and its peers) hanging
                shutdown_distributed(self.dist)
            raise

    def _build(self, cfg, resume: str | None) -> None:
        # 1. Everything that can reject the run, before anything in the run directory is created or changed.
        t = cfg.train
        self.device = rank_device(self.device, self.dist)
        placement.configure_backends(self.device)
        paths = resolve_data(cfg, strict=True)
        check_output_dir(Path(t.runs_dir) / t.run_name, RUN_DIR, flag="the run directory",
                         fix="choose another --run-name or --runs-dir",
                         inputs=[cfg.data.dataset_dir, paths.train, paths.valid, paths.tokenizer])
        self.tokenizer = Tokenizer.from_dir(paths.tokenizer) if paths.tokenizer is not None else None
        cfg = self.cfg = resolve_vocab_size(cfg, self.tokenizer, paths.tokenizer)
        self.fingerprint = getattr(self.tokenizer, "fingerprint", None)
        vocab = cfg.model.vocab_size
        step_cap = total_steps(cfg, self.dist.world_size)
        self.budget = TimeBudget(t.max_minutes * 60.0, cap=step_cap) if t.max_minutes is not None else None
        self.total_steps = step_cap if self.budget is None else self.budget.plan(0, 0.0, None)
        self.tokens_per_step = cfg.tokens_per_step(self.dist.world_size)
        self.rundir = RunDir(Path(t.runs_dir) / t.run_name)
        self.main = self.dist.is_main
        self.train_tokens = open_tokens(paths.train, vocab_size=vocab, tokenizer_fingerprint=self.fingerprint)
        require_validation(cfg, paths.valid)
        if t.eval_interval == 0:  # validation turned off: the validation file, if any, is not read
            paths = dataclasses.replace(paths, valid=None)
        self.valid_tokens = (open_tokens(paths.valid, vocab_size=vocab, tokenizer_fingerprint=self.fingerprint)
                             if paths.valid is not None else None)
        check_split_sizes(self.train_tokens, self.valid_tokens, cfg, paths.train, paths.valid)
        check_fits(cfg, self.device)
        self.planner = self._budget_planner()
        self.valid_bytes_per_token = (bytes_per_token_from_manifest(read_manifest(paths.valid))
                                      if paths.valid is not None else None)
        source = resume_source(cfg, self.rundir, resume)
        if source is None and resume not in (None, "auto"):
            raise UserError(f"nothing to resume at {resume}")
        checkpoint = self._checked_checkpoint(source) if source is not None else None

        # 2. Claim the run directory (one trainer at a time), clear what killed saves left, then write.
        self.lock = RunLock(self.rundir.lock_path)
        if self.main:
            self.lock.acquire()
            stale = remove_stale_temp_files(self.rundir.root)
            if stale:
                info(f"removed {len(stale)} temp file(s) left by interrupted saves in {self.rundir.root}")
            if source is None:  # --resume auto without a checkpoint: nothing worth keeping, start over
                prepare_fresh_run_dir(self.rundir, t.overwrite or resume == "auto")
            self.rundir.create()
            self.rundir.write_config(cfg)
        barrier(self.dist)

        # 3. Build the model and everything the step needs, then load the checkpoint into them.
        with out_of_memory_is_user_error(cfg, self.device):
            self.parts = build_training_parts(cfg, self.train_tokens, self.device, self.total_steps, self.dist)
        self.model, self.optimizer, self.sampler = self.parts.model, self.parts.optimizer, self.parts.sampler
        self.schedule = self.parts.schedule
        self.state = _State()
        self.divergence = DivergenceRule(vocab, t.divergence_loss)
        self.resumed_from = source
        if checkpoint is not None:
            self._restore(checkpoint, source)
        self.ckpts = CheckpointManager(self.rundir.checkpoints, t.keep_last)
        self.parts.wrap(t.compile, self.dist, self.device)
        self.dtype = self.parts.dtype
        self.timings = StepTimings()
        self.train_step = TrainStep(self.parts, self.device, t.grad_accum_steps, cfg.optimizer.grad_clip, self.dist,
                                    self.timings)
        self.flops_per_token = flops_per_token(cfg.model)["train"]
        self.peak = placement.peak_flops(self.device, self.dtype, t.peak_tflops)
        self.stop = StopRequest(announce=self.main)
        self._bar = None
        self._last_train: tuple[float | None, float] = (None, float("nan"))
        self._last_eval = None
        self._loop_started, self._loop_start_step = time.perf_counter(), 0

    # ------------------------------------------------------------------ setup helpers

    def _checked_checkpoint(self, source: Path) -> dict[str, Any]:
        """Read the checkpoint to resume from and check that this run can continue it (nothing is written)."""
        obj = read_checkpoint(source)
        saved = obj.get("config")
        if isinstance(saved, dict) and isinstance(saved.get("model"), dict):
            saved_model = from_dict(ModelConfig, saved["model"], prefix="model")
            if saved_model != self.cfg.model:
                diff = [f"model.{k}={getattr(saved_model, k)!r} (config says {getattr(self.cfg.model, k)!r})"
                        for k in vars(saved_model) if getattr(saved_model, k) != getattr(self.cfg.model, k)]
                raise UserError(f"checkpoint {source} was trained with {diff[0]}; resume with the same model config")
        check_optimizer_resumable(self.cfg, saved, obj.get("optimizer"), source)
        if self.fingerprint and obj.get("tokenizer_fingerprint") not in (None, self.fingerprint):
            raise UserError(f"checkpoint {source} was trained with a different tokenizer than data.tokenizer_dir; "
                            "resume with the run's original dataset")
        step = int(obj.get("iteration", 0))
        limit = self.total_steps if self.budget is None else self.budget.cap
        if limit is not None and step > limit:
            raise UserError(f"checkpoint {source} is at step {step}, past the run's {limit} steps; "
                            "raise train.total_steps/total_tokens to continue")
        if self.budget is not None:
            self.total_steps = max(int(obj.get("planned_total_steps") or self.total_steps), step)
        check_finite(obj, str(source), "resume from an earlier checkpoints/step_*.pt with --resume PATH")
        return obj

    def _restore(self, obj: dict[str, Any], source: Path) -> None:
        load_model_weights(self.model, obj["model"], str(source))
        if obj.get("optimizer") is not None:
            self.optimizer.load_state_dict(obj["optimizer"])
        s = self.state
        s.step = int(obj.get("iteration", 0))
        s.tokens = int(obj.get("tokens", s.step * self.tokens_per_step))
        s.best_val_loss = obj.get("best_val_loss")
        s.final_val_loss = obj.get("final_val_loss")
        s.wallclock_offset = float(obj.get("wallclock", 0.0))
        s.wandb_run_id = obj.get("wandb_run_id")
        s.last_ckpt_step = s.last_eval_step = s.step
        self.divergence.start_loss = obj.get("start_loss")
        self.divergence.moved = any(self.schedule(i) > 0
                                    for i in range(min(s.step, self.cfg.optimizer.warmup_iters + 2)))
        if "sampler" in obj:
            self.sampler.load_state_dict(obj["sampler"])
        if "rng" in obj:
            set_rng_state(obj["rng"])

    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {"format": 1, "model": model_state_dict(self.model), "optimizer": self.optimizer.state_dict(),
                "iteration": s.step, "tokens": s.tokens, "config": to_dict(self.cfg),
                "lr": self.schedule(max(s.step - 1, 0)), "rng": rng_state(), "sampler": self.sampler.state_dict(),
                "best_val_loss": s.best_val_loss, "final_val_loss": s.final_val_loss, "tokenizer_fingerprint": self.fingerprint,
                "wandb_run_id": s.wandb_run_id, "wallclock": self._wallclock(), "planned_total_steps": self.total_steps,
                "start_loss": self.divergence.start_loss}

    def _elapsed(self) -> float:
        """Seconds since this process started its training loop."""
        return time.perf_counter() - self._loop_started

    def _say(self, line: str) -> None:
        """A line for the person watching: above the progress bar on a terminal, on stderr otherwise."""
        if not self.main or self.cfg.logging.quiet:
            return
        if self._bar is not None and not self._bar.disable:
            self._bar.write(line, file=sys.stderr)
        else:
            info(line)

    def _budget_planner(self) -> BudgetPlanner | None:
        """The planner of a run under train.max_minutes, told what each evaluation and the end of the run score."""
        if self.budget is None:
            return None
        if self.valid_tokens is None:
            return BudgetPlanner(self.budget, 0, 0, 0)
        n = len(self.valid_tokens)
        eval_tokens = self.cfg.train.eval_tokens
        periodic = min(eval_tokens or n, n)
        whole = n if eval_tokens is not None and self.cfg.train.final_eval else 0  # the end: a subset pass, the file
        return BudgetPlanner(self.budget, self.cfg.train.eval_interval, periodic, periodic + whole)

    def _replan(self, bar, window_seconds: float, window_steps: int) -> None:
        """Fit the step count (and the schedule) to the time budget after one more logging window."""
        planned = self.planner.replan(self.state.step, self._wallclock(), window_seconds, window_steps)
        # ranks time themselves (and only rank 0 evaluates): all of them follow the shortest plan
        planned = min_over_ranks(planned if planned is not None else self.total_steps, self.dist, self.device)
        if planned != self.total_steps:
            self.total_steps = planned
            self.schedule = self.parts.schedule = build_schedule(self.cfg.optimizer, planned)
            bar.total = planned
            bar.refresh()

    def _wallclock(self) -> float:
        return self.state.wallclock_offset + (time.time() - self._started)

    # ------------------------------------------------------------------ periodic work

    def _log(self, event: str, **values: Any) -> None:
        if not self.main:
            return
        t0 = time.perf_counter()
        record = self.metrics.log(event, step=self.state.step, tokens=self.state.tokens, wallclock=self._wallclock(),
                                  **values)
        for tracker in self.trackers:
            tracker.log(event, self.state.step, record)
        self.timings.logging += time.perf_counter() - t0

    def _evaluate(self) -> None:
        if self.valid_tokens is None:
            return
        t0 = time.perf_counter()
        nonfinite = False
        if self.main:
            result = self._validation_loss(self.cfg.train.eval_tokens)
            s = self.state
            s.final_val_loss = result.loss
            improved = math.isfinite(result.loss) and (s.best_val_loss is None or result.loss < s.best_val_loss)
            if improved:
                s.best_val_loss = result.loss
            self.timings.eval += time.perf_counter() - t0
            self._log("eval", val_loss=result.loss, val_ppl=result.perplexity, val_bpb=result.bits_per_byte,
                      val_top1=result.top1, val_top5=result.top5, val_tokens=result.num_tokens,
                      best_val_loss=s.best_val_loss, eval_seconds=result.seconds)
            self._last_eval = result
            nonfinite = not math.isfinite(result.loss)
        if any_rank(nonfinite, self.dist, self.device):
            raise _NonFiniteState(None)
        if self.main:
            s, result = self.state, self._last_eval
            subset = result.num_tokens < len(self.valid_tokens) - 1
            self._say(console.progress_line(s.step, self.total_steps, self._last_train[0], self._last_train[1],
                                            self._elapsed(), self._loop_start_step, val_loss=result.loss,
                                            val_tokens=self.cfg.train.eval_tokens if subset else result.num_tokens,
                                            val_is_subset=subset))
            if improved:
                self._guard_finite()
                t1 = time.perf_counter()
                with self.stop.deferred():
                    self.ckpts.save_best(self._checkpoint_state(), s.step)
                self.timings.checkpoint += time.perf_counter() - t1
            self._write_samples()
            if self.planner is not None:
                self.planner.record_eval(time.perf_counter() - t0, result.seconds, result.num_tokens)
        self.state.last_eval_step = self.state.step
        barrier(self.dist)

    def _probe_evaluation(self) -> None:
        """Under a time budget, time a few validation batches: the measured cost of evaluating, not a guess."""
        if self.planner is None or self.valid_tokens is None or not self.main:
            return
        batches = 3 * self.cfg.train.eval_batch_size * self.cfg.model.context_length + 1
        self.planner.probe(self._validation_loss, min(batches, len(self.valid_tokens)))

    def _validation_loss(self, max_tokens: int | None):
        # evaluation must not perturb the training RNG streams (dropout), or resume would not be exact
        with preserved_rng():
            return evaluate_loss(unwrap_model(self.model), self.valid_tokens, self.cfg.model.context_length,
                                 self.cfg.train.eval_batch_size, self.device, max_tokens=max_tokens,
                                 bytes_per_token=self.valid_bytes_per_token,
                                 autocast_dtype=None if self.dtype == torch.float32 else self.dtype,
                                 show_progress=False)

    def _evaluate_full(self) -> None:
        """With ``train.eval_tokens`` the periodic passes see a fixed subset; the run ends with the whole file."""
        if self.valid_tokens is None or self.cfg.train.eval_tokens is None or not self.cfg.train.final_eval \
                or not self.main:
            return
        t0 = time.perf_counter()
        result = self._validation_loss(None)
        self.state.full_val_loss = result.loss
        self.timings.eval += time.perf_counter() - t0
        self._log("eval_full", val_loss=result.loss, val_ppl=result.perplexity, val_bpb=result.bits_per_byte,
                  val_top1=result.top1, val_top5=result.top5, val_tokens=result.num_tokens,
                  eval_seconds=result.seconds)
        self._last_eval = result
        if not math.isfinite(result.loss):
            raise _NonFiniteState(None)

    def _write_samples(self) -> None:
        if not (self.cfg.train.samples and self.tokenizer is not None):
            return
        t0 = time.perf_counter()
        try:
            with preserved_rng():
                metrics = write_training_samples(unwrap_model(self.model), self.tokenizer, self.rundir, self.state.step,
                                                 device=str(self.device))
        except Exception as exc:  # noqa: BLE001 - a sampling bug must not end a long run; it is logged instead
            info(f"warning: writing samples at step {self.state.step} failed: {type(exc).__name__}: {exc}")
            self._log("samples_error", error=f"{type(exc).__name__}: {exc}")
            return
        self.timings.samples += time.perf_counter() - t0
        self._log("samples", **{k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))})

    def _stop_requested(self) -> bool:
        """A signal seen by any rank stops every rank after the same step (torchrun signals ranks separately)."""
        return any_rank(self.stop.requested, self.dist, self.device)

    def _guard_finite(self) -> None:
        """Raise :class:`_NonFiniteState` when a weight or an optimizer moment is NaN or infinite.

        The loss and gradient checks of each step cannot see this: an update from a finite loss can
        still overflow the weights (a NaN learning rate, a zero epsilon). Checked at every logged
        step and before anything is written from the weights.
        """
        bad = first_nonfinite(model_state_dict(self.model)) or first_nonfinite(
            optimizer_tensors(self.optimizer.state_dict()))
        if bad is not None:
            raise _NonFiniteState(bad)

    def _save(self) -> None:
        self._guard_finite()
        if self.main:
            t0 = time.perf_counter()
            with self.stop.deferred():
                self.ckpts.save(self._checkpoint_state(), self.state.step)
            self.timings.checkpoint += time.perf_counter() - t0
        self.state.last_ckpt_step = self.state.step
        barrier(self.dist)

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        cfg, s = self.cfg, self.state
        self._started = time.time()
        self.metrics: MetricsLog | None = None
        self.trackers: list[Tracker] = []
        stop_reason = "completed"
        try:
            if self.main:
                if self.resumed_from is not None:
                    truncate_metrics(self.rundir.metrics_path, s.step)
                self.metrics = MetricsLog(self.rundir.metrics_path, start_time=time.time() - s.wallclock_offset)
                self.trackers = build_trackers(cfg.logging, cfg.train.run_name, self.rundir.root, to_dict(cfg),
                                               s.wandb_run_id)
                s.wandb_run_id = next((t.run_id for t in self.trackers if t.run_id), s.wandb_run_id)
                self._log("start" if self.resumed_from is None else "resume", total_steps=self.total_steps,
                          world_size=self.dist.world_size, device=str(self.device),
                          **self.parts.dtype_choice.record(),
                          num_params=sum(p.numel() for p in self.model.parameters()),
                          resumed_from=str(self.resumed_from) if self.resumed_from else None)
                length = (f"{self.total_steps} steps" if self.budget is None else
                          f"{console.duration(self.budget.seconds)} budget (steps re-planned from the measured speed)")
                info(f"training {cfg.train.run_name}: {length} x {self.tokens_per_step:,} tokens on "
                     f"{self.device}, {self.parts.dtype_choice.describe()}"
                     + (f", resuming at step {s.step}" if self.resumed_from else "") + f" -> {self.rundir.root}")
            self._probe_evaluation()
            self._loop_started, self._loop_start_step = time.perf_counter(), s.step
            with self.stop, progress(total=self.total_steps, initial=s.step, desc=cfg.train.run_name, unit="step",
                                     enabled=None if self.main and not cfg.logging.quiet else False,
                                     leave=True) as bar:
                self._bar = bar
                try:
                    with out_of_memory_is_user_error(cfg, self.device):
                        loop_started = time.perf_counter()
                        try:
                            stop_reason = self._loop(bar)
                        finally:
                            self.timings.loop += time.perf_counter() - loop_started
                        if stop_reason in ("completed", "time_budget"):
                            self._complete()
                except _NonFiniteState as exc:
                    stop_reason = self._nonfinite_stop(exc.tensor)
            result = self._finish(stop_reason)
        finally:
            for tracker in self.trackers:
                tracker.close()
            if self.metrics is not None:
                self.metrics.close()
            if self.lock is not None:
                self.lock.release()
            if self._owns_group:
                shutdown_distributed(self.dist)
        return result

    def _loop(self, bar) -> str:
        cfg, s = self.cfg, self.state
        log_every = cfg.logging.log_interval
        window_start, window_tokens, skipped_in_window = time.perf_counter(), 0, 0
        excluded = 0.0  # eval/sample time inside the logging window (not training throughput)
        stop_at = cfg.train.stop_at_step
        while s.step < self.total_steps:
            result = self.train_step(s.step)
            lr, loss, aux, grad_norm = result.lr, result.loss, result.aux_loss, result.grad_norm
            s.step += 1
            s.tokens += self.tokens_per_step
            window_tokens += self.tokens_per_step
            bar.update(1)
            if self.planner is not None and any_rank(
                    self.planner.out_of_time(self._wallclock(), s.step, self.total_steps), self.dist, self.device):
                self.planner.cut = True
                self.total_steps = s.step  # time is up (on any rank): this step is the last
            if math.isfinite(loss) and math.isfinite(grad_norm):
                s.nonfinite_in_a_row = 0
                s.window_losses.append(loss)
            else:
                s.nonfinite_in_a_row += 1
                s.nonfinite_total += 1
                skipped_in_window += 1
                self._log("nonfinite", loss=loss, grad_norm=grad_norm, in_a_row=s.nonfinite_in_a_row)
                if s.nonfinite_in_a_row >= cfg.train.max_nonfinite:
                    info(f"stopping: {s.nonfinite_in_a_row} non-finite losses/gradients in a row at step {s.step} "
                         f"(train.max_nonfinite); the last good checkpoint is kept. Try a lower optimizer.lr_max.")
                    return "diverged_nonfinite"
            if self.divergence.exceeded(loss, lr, applied=math.isfinite(loss) and math.isfinite(grad_norm)):
                if self.main:
                    info(self.divergence.advice(loss, s.step, cfg.optimizer))
                self._log("train", loss=loss, lr=lr, grad_norm=grad_norm)
                return "diverged_loss"
            if s.step % log_every == 0 or s.step == self.total_steps:
                # A window runs from one log point to the next, so this window's logging and finiteness guard
                # below count in the next window: every second of the loop is in some window except the
                # evaluations and checkpoints, which are timed on their own.
                log_point = time.perf_counter()
                elapsed = max(log_point - window_start - excluded, 1e-9)
                if self.planner is not None and s.step < self.total_steps:
                    self._replan(bar, elapsed, window_tokens // self.tokens_per_step)
                tok_s = window_tokens / elapsed
                values: dict[str, Any] = {"loss": sum(s.window_losses) / len(s.window_losses) if s.window_losses
                                          else float("nan"), "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tok_s}
                if aux:
                    values["aux_loss"] = aux
                if skipped_in_window:
                    values["skipped_steps"] = skipped_in_window
                if self.flops_per_token and self.peak:
                    values["mfu"] = self.flops_per_token * tok_s / self.peak
                self._log("train", **values)
                self._guard_finite()
                self._last_train = (values["loss"], tok_s)
                if bar.disable and self.main and not cfg.logging.quiet:
                    info(console.progress_line(s.step, self.total_steps, values["loss"], tok_s, self._elapsed(),
                                               self._loop_start_step, lr=lr))
                bar.set_postfix_str(f"train {console.loss(values['loss'])} | lr {lr:.1e} | {console.rate(tok_s)}",
                                    refresh=False)
                s.window_losses.clear()
                window_start, window_tokens, skipped_in_window, excluded = log_point, 0, 0, 0.0
            t_extra = time.perf_counter()
            if cfg.train.eval_interval and s.step % cfg.train.eval_interval == 0 and s.step < self.total_steps:
                self._evaluate()
                self.timings.loop_eval += time.perf_counter() - t_extra
            if s.step % cfg.train.checkpoint_interval == 0 and s.step < self.total_steps:
                self._save()
            excluded += time.perf_counter() - t_extra
            if self._stop_requested():
                self._save()
                return self.stop.name.lower() if self.stop.requested else "sigterm"
            if stop_at is not None and s.step >= stop_at and s.step < self.total_steps:
                self._save()
                return "stop_at_step"
        return self.planner.end_reason(s.step) if self.planner is not None else "completed"

    def _complete(self) -> None:
        """The end of a completed run: last evaluation and checkpoint, the whole-file evaluation, the weights file."""
        s = self.state
        self._guard_finite()
        if s.last_eval_step != s.step:
            self._evaluate()
        if s.last_ckpt_step != s.step:
            self._save()
        self._evaluate_full()
        result = self._last_eval
        if result is not None and result.num_tokens >= len(self.valid_tokens) - 1:
            self._say(console.whole_file_line(result.loss, result.perplexity, result.bits_per_byte,
                                              result.num_tokens))
        if self.main:
            export_safetensors(self.model, self.rundir.weights_path,
                               metadata={"step": str(s.step), "run_name": self.cfg.train.run_name})

    def _nonfinite_stop(self, tensor: str | None) -> str:
        s = self.state
        kept = self.ckpts.latest()
        if tensor is not None:
            self._log("nonfinite_weights", tensor=tensor)
            what = f"the weights are not finite after step {s.step} (NaN or inf in {tensor})"
        else:
            self._log("nonfinite_validation")
            what = (f"the validation loss is not finite at step {s.step} (the model's logits overflow to NaN or "
                    "inf)")
        if self.main:
            info(f"stopping: {what}; nothing is saved from these weights"
                 + (f", {kept} stays the last {'good ' if tensor else ''}checkpoint" if kept else "")
                 + ". Try a lower optimizer.lr_max.")
        return "diverged_nonfinite"

    def _finish(self, stop_reason: str) -> TrainResult:
        s = self.state
        diverged = stop_reason.startswith("diverged")
        t = self.timings
        self._log("end", stop_reason=stop_reason, diverged=diverged, final_val_loss=s.final_val_loss,
                  best_val_loss=s.best_val_loss, full_val_loss=s.full_val_loss,
                  nonfinite_steps=s.nonfinite_total,
                  time_data=t.data, time_compute=t.compute, time_logging=t.logging, time_checkpoint=t.checkpoint,
                  time_eval=t.eval, time_samples=t.samples, overhead_fraction=t.overhead_fraction())
        if self.main and stop_reason == "time_budget":
            info(self.planner.end_message(s.step, self.cfg.train.max_minutes))
        if self.main:
            info(f"{self.cfg.train.run_name}: {stop_reason} at step {s.step} ({s.tokens:,} tokens) in "
                 f"{console.duration(self._elapsed())}; loop overhead {100 * t.overhead_fraction():.1f}% of step time")
        exit_code = {"sigint": 130, "sigterm": 143}.get(stop_reason, 3 if diverged else 0)
        return TrainResult(run_dir=self.rundir.root, steps=s.step, tokens=s.tokens, final_val_loss=s.final_val_loss,
                           best_val_loss=s.best_val_loss, diverged=diverged, stop_reason=stop_reason,
                           wallclock=self._wallclock(), exit_code=exit_code)


def train(cfg, resume: str | None = None) -> TrainResult:
    """Train the model ``cfg`` describes; ``resume`` is None (fresh), ``"auto"`` (latest checkpoint of the run) or a path."""
    return Trainer(cfg, resume).run()
