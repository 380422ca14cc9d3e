"""Turning a RunConfig into concrete things before the first step.

The number of steps (``total_steps`` or ``total_tokens / (batch x world x context)``), which
checkpoint a run resumes from (``--resume auto|PATH`` or ``train.checkpoint``),
whether the configured optimizer can take that checkpoint's optimizer state
(decided before anything is written), and the run directory's state: a fresh run refuses to mix itself into an
existing one unless ``train.overwrite`` is set, and a resumed run drops the
metrics records written after its checkpoint, so ``metrics.jsonl`` never holds
two versions of a step.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_text
from cs336_basics.runs.checkpoint import CheckpointManager
from cs336_basics.runs.layout import DatasetDir, RunDir
from cs336_basics.runs.metrics import Field, read_jsonl
from cs336_basics.runs.trained import find_checkpoint
from cs336_basics.tokenizer.vocabulary import check_vocab_agreement
from cs336_basics.training.step import optimizer_layout


def resolve_vocab_size(cfg, tokenizer, tokenizer_dir: Path | None):
    """``cfg`` with ``model.vocab_size`` taken from the tokenizer when unset; a one-line error when they differ.

    A model whose vocabulary is larger than its tokenizer's trains rows no token ever uses, and a
    smaller one cannot embed the tokenizer's ids: both mean the wrong tokenizer or a typo.
    """
    vocab = cfg.model.vocab_size
    if tokenizer is None:
        if vocab is None:
            raise UserError("model.vocab_size is unset and no tokenizer was found (data.tokenizer_dir, or "
                            "tokenizer/ in data.dataset_dir); set model.vocab_size or point the run at its tokenizer")
        return cfg
    if vocab is None:
        return dataclasses.replace(cfg, model=cfg.model.with_changes(vocab_size=tokenizer.vocab_size))
    check_vocab_agreement(vocab, tokenizer.vocab_size, model="model.vocab_size",
                          tokenizer=f"the tokenizer in {tokenizer_dir}", exact=True,
                          fix=f"set model.vocab_size={tokenizer.vocab_size} (or leave it unset to take the "
                              "tokenizer's)")
    return cfg


def require_validation(cfg, valid: Path | None) -> None:
    """A run validates unless ``train.eval_interval = 0`` says it must not; a missing validation file is an error.

    Training without validation is a choice the config states: a valid.npy that was deleted (or is a
    directory) must not turn into a run that reports no validation loss, keeps no best.pt and exits 0.
    """
    if valid is not None or cfg.train.eval_interval == 0:
        return
    off = "or pass --set train.eval_interval=0 to train without validation"
    data = cfg.data
    if data.dataset_dir:
        expected = DatasetDir(Path(data.dataset_dir)).tokens("valid")
        state = "is a directory, not a token file" if expected.is_dir() else "does not exist"
        raise UserError(f"no validation data: {expected} {state}; make it with 'cs336 prepare --data "
                        f"{data.dataset_dir}' (or 'cs336 tokenize'), point data.valid_path at a validation token "
                        f"file, {off}")
    raise UserError(f"no validation data: set data.valid_path (or data.dataset_dir with a valid.npy), {off}")


def check_split_sizes(train_tokens, valid_tokens, cfg, train_path: Path, valid_path: Path | None) -> None:
    """Both splits must hold at least one training window (context_length + 1 tokens), checked before step 1."""
    need = cfg.model.context_length + 1
    if len(train_tokens) < need:
        raise UserError(f"{train_path} holds {len(train_tokens):,} tokens, fewer than one window of "
                        f"context_length + 1 = {need:,}; use more training text or a shorter model.context_length")
    if valid_tokens is not None and len(valid_tokens) < need:
        raise UserError(f"validation file {valid_path} holds {len(valid_tokens):,} tokens, fewer than one window "
                        f"of context_length + 1 = {need:,}, so the run could never be evaluated; use a larger "
                        "validation split")
    if cfg.train.eval_tokens is not None and cfg.train.eval_tokens < need:
        raise UserError(f"train.eval_tokens = {cfg.train.eval_tokens:,} is less than one window "
                        f"(context_length + 1 = {need:,}); raise it or unset it to evaluate the whole file")


def total_steps(cfg, world_size: int) -> int | None:
    """Steps from train.total_steps or train.total_tokens; None when only train.max_minutes bounds the run."""
    t = cfg.train
    if t.total_steps is not None:
        return t.total_steps
    if t.total_tokens is not None:
        return max(1, t.total_tokens // cfg.tokens_per_step(world_size))
    if t.max_minutes is not None:
        return None
    raise UserError("set train.total_steps, train.total_tokens (steps = tokens / (batch_size * context_length)) "
                    "or train.max_minutes")


def resume_source(cfg, run: RunDir, resume: str | None) -> Path | None:
    """The checkpoint to start from: the run's latest (auto), an explicit one, or train.checkpoint; None: fresh."""
    if resume == "auto":
        latest = CheckpointManager(run.checkpoints).latest()
        if latest is not None:
            return latest
        return Path(cfg.train.checkpoint) if cfg.train.checkpoint else None
    if resume:
        return find_checkpoint(resume)[0] if Path(resume).is_dir() else Path(resume)
    if cfg.train.checkpoint:
        return Path(cfg.train.checkpoint)
    return None


RESUME_OPTIMIZER_KEYS = ("name", "decay_all")
"""Optimizer settings that decide the optimizer's state (its kind and its parameter groups): a resume keeps them."""


def _setting(value: Any) -> str:
    """A setting as ``--set`` spells it (true/false for booleans)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _describe_layout(layout: list[tuple[int, bool]]) -> str:
    sizes = ", ".join(f"{n}{' (Muon)' if muon else ''}" for n, muon in layout)
    return f"{len(layout)} parameter group(s) of {sizes} tensors"


def check_optimizer_resumable(cfg, saved_config: Any, optimizer_state: Any, source: Path) -> None:
    """A UserError when the configured optimizer cannot continue a checkpoint's optimizer state.

    The checkpoint's own config names its optimizer (``optimizer.name``, ``optimizer.decay_all``); the state
    itself must also have the parameter groups the configured optimizer builds (this catches checkpoints
    without a config, or written by another version). Nothing is built or written: the groups come from a
    model on the meta device.
    """
    saved = saved_config.get("optimizer") if isinstance(saved_config, dict) else None
    if isinstance(saved, dict):
        for key in RESUME_OPTIMIZER_KEYS:
            if key in saved and saved[key] != getattr(cfg.optimizer, key):
                value, configured = _setting(saved[key]), _setting(getattr(cfg.optimizer, key))
                raise UserError(f"checkpoint {source} was trained with optimizer.{key}={value} (config says "
                                f"{configured}); its optimizer state fits only that optimizer: resume with "
                                f"--set optimizer.{key}={value}")
    groups = optimizer_state.get("param_groups") if isinstance(optimizer_state, dict) else None
    if not isinstance(groups, list):
        return
    found = [(len(g.get("params", ())), bool(g.get("muon", False))) if isinstance(g, dict) else (-1, False)
             for g in groups]
    expected = optimizer_layout(cfg)
    if found != expected:
        raise UserError(f"checkpoint {source} holds optimizer state for {_describe_layout(found)}, but "
                        f"optimizer.name={cfg.optimizer.name} with optimizer.decay_all="
                        f"{_setting(cfg.optimizer.decay_all)} builds {_describe_layout(expected)}; resume with "
                        "the optimizer settings the checkpoint was trained with")


def prepare_fresh_run_dir(run: RunDir, overwrite: bool) -> None:
    has_ckpt = run.checkpoints.is_dir() and any(run.checkpoints.glob("*.pt"))
    has_metrics = run.metrics_path.exists() and run.metrics_path.stat().st_size > 0
    if not (has_ckpt or has_metrics):
        return
    if not overwrite:
        raise UserError(f"run directory {run.root} already holds a run; continue it with --resume auto, "
                        "pick another --run-name, or pass --set train.overwrite=true to replace it")
    run.metrics_path.unlink(missing_ok=True)
    for folder, pattern in ((run.checkpoints, "*.pt"), (run.samples, "step_*")):
        for path in folder.glob(pattern) if folder.is_dir() else ():
            if path.is_file():  # only the trainer's own files: anything else put there stays
                path.unlink()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records of steps after ``step`` (written after the checkpoint we resume from)."""
    records = read_jsonl(path)
    kept = [r for r in records if not (isinstance(r.get(Field.STEP), (int, float)) and r[Field.STEP] > step)]
    if len(kept) != len(records):
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
