"""Setting a run up, in the order that keeps a refused run from touching anything: check, then claim.

:func:`check_inputs` resolves and checks everything a run reads before anything
in its run directory is created or changed: the data files and the tokenizer
(their vocabulary against the model's), the output directory, the split sizes,
the memory the model needs, the number of steps (:class:`~.step_plan.StepPlan`),
and the checkpoint to resume from (:func:`~.resume.read_resumable`). A bad
setting is a one-line error with nothing written.

:func:`claim_run_dir` then takes the run directory's lock (one trainer at a
time), removes the temp files that killed saves left, clears an earlier run a
fresh one may replace, and writes ``config.toml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cs336_basics.errors import UserError
from cs336_basics.evaluation import bytes_per_token_from_manifest
from cs336_basics.outputs import check_output_dir
from cs336_basics.progress import info
from cs336_basics.runs.checkpoint import remove_stale_temp_files
from cs336_basics.runs.layout import RUN_DIR, RunDir, resolve_data
from cs336_basics.runs.lock import RunLock
from cs336_basics.runs.train_state import TrainState
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.tokenizer.token_files import read_manifest
from cs336_basics.training.data import open_tokens
from cs336_basics.training.distributed import DistInfo, barrier
from cs336_basics.training.memory import check_fits
from cs336_basics.training.resolve import (check_split_sizes, prepare_fresh_run_dir, require_validation,
                                           resolve_vocab_size, resume_source)
from cs336_basics.training.resume import read_resumable
from cs336_basics.training.step_plan import StepPlan


@dataclass
class RunInputs:
    """What a run reads, resolved and checked."""

    cfg: Any
    """The RunConfig, ``model.vocab_size`` taken from the tokenizer when it was unset."""
    rundir: RunDir
    tokenizer: Tokenizer | None
    train_tokens: np.ndarray
    valid_tokens: np.ndarray | None
    """None when validation is off (``train.eval_interval = 0``)."""
    valid_bytes_per_token: float | None
    plan: StepPlan
    resumed_from: Path | None
    """The checkpoint the run continues (None: a fresh run)."""
    checkpoint: TrainState | None

    @property
    def fingerprint(self) -> str | None:
        """The tokenizer's fingerprint (checkpoints and token files carry it)."""
        return getattr(self.tokenizer, "fingerprint", None)


def check_inputs(cfg, resume: str | None, dist: DistInfo, device: torch.device) -> RunInputs:
    """Everything that can reject the run, before anything in the run directory is created or changed."""
    t = cfg.train
    paths = resolve_data(cfg, strict=True)
    check_output_dir(Path(t.runs_dir) / t.run_name, RUN_DIR, flag="the run directory",
                     fix="choose another --run-name or --runs-dir",
                     inputs=[cfg.data.dataset_dir, paths.train, paths.valid, paths.tokenizer])
    tokenizer = Tokenizer.from_dir(paths.tokenizer) if paths.tokenizer is not None else None
    cfg = resolve_vocab_size(cfg, tokenizer, paths.tokenizer)
    fingerprint = getattr(tokenizer, "fingerprint", None)
    plan = StepPlan(cfg, dist, device)
    rundir = RunDir(Path(t.runs_dir) / t.run_name)
    vocab = cfg.model.vocab_size
    train_tokens = open_tokens(paths.train, vocab_size=vocab, tokenizer_fingerprint=fingerprint)
    require_validation(cfg, paths.valid)
    if t.eval_interval == 0:  # validation turned off: the validation file, if any, is not read
        paths = dataclasses.replace(paths, valid=None)
    valid_tokens = (open_tokens(paths.valid, vocab_size=vocab, tokenizer_fingerprint=fingerprint)
                    if paths.valid is not None else None)
    check_split_sizes(train_tokens, valid_tokens, cfg, paths.train, paths.valid)
    check_fits(cfg, device)
    plan.plan_evaluations(len(valid_tokens) if valid_tokens is not None else None, t.eval_interval, t.eval_tokens,
                          t.final_eval)
    valid_bytes_per_token = (bytes_per_token_from_manifest(read_manifest(paths.valid))
                             if paths.valid is not None else None)
    source = resume_source(cfg, rundir, resume)
    if source is None and resume not in (None, "auto"):
        raise UserError(f"nothing to resume at {resume}")
    checkpoint = read_resumable(source, cfg, fingerprint, plan.limit) if source is not None else None
    if checkpoint is not None:
        plan.resume(checkpoint.step, checkpoint.planned_total_steps)
    return RunInputs(cfg=cfg, rundir=rundir, tokenizer=tokenizer, train_tokens=train_tokens,
                     valid_tokens=valid_tokens, valid_bytes_per_token=valid_bytes_per_token, plan=plan,
                     resumed_from=source, checkpoint=checkpoint)


def claim_run_dir(inputs: RunInputs, lock: RunLock, main: bool, replace: bool, dist: DistInfo) -> None:
    """Take ``lock`` (on rank 0, which writes), clear what killed saves left, prepare the directory, write the config.

    A fresh run refuses a directory that holds a run unless ``replace`` (``train.overwrite``, or
    ``--resume auto`` that found no checkpoint: nothing there is worth keeping).
    """
    rundir = inputs.rundir
    if main:
        lock.acquire()
        stale = remove_stale_temp_files(rundir.root)
        if stale:
            info(f"removed {len(stale)} temp file(s) left by interrupted saves in {rundir.root}")
        if inputs.resumed_from is None:
            prepare_fresh_run_dir(rundir, replace)
        rundir.create()
        rundir.write_config(inputs.cfg)
    barrier(dist)
