"""``cs336 quickstart``: from text (or nothing) to a trained model, its scores, stories and a report.

``run_quickstart`` chains data -> prepare -> train -> evaluate -> generate ->
report (see docs/quickstart.md). The data is a local file, a downloaded
TinyStories prefix, or the sample bundled with the package when there is no
network. The run is sized to a time budget: the run's own training step is
timed on this machine first (:func:`cs336_basics.training.step.measure_step_seconds`)
and the step count and evaluation sizes are fitted to what is left
(:func:`plan_budget`).

The validation tokens are split at a document boundary near the middle
(:func:`cs336_basics.evaluation.heldout.split_at_document`): everything watched or
chosen during training (the evaluations, ``best.pt``) sees only the leading development
half, and the headline figure is scored on the test half, which nothing was chosen on.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from cs336_basics.config import load_config
from cs336_basics.datasets import DOC_DELIMITER, copy_prefix
from cs336_basics.download import download_dataset
from cs336_basics.errors import UserError
from cs336_basics.evaluation import evaluate_loss
from cs336_basics.evaluation.baseline import unigram_baseline
from cs336_basics.evaluation.heldout import HeldOutSplit, bytes_per_token, split_at_document, token_byte_lengths
from cs336_basics.fileio import atomic_write_bytes, atomic_write_text
from cs336_basics.generation import DEFAULT_PROMPTS, READING_TEMPERATURE, READING_TOP_P, SamplingParams, generate
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.hub import NetworkError
from cs336_basics.model.transformer import TransformerLM
from cs336_basics.outputs import DirOutput, check_output_dir, has_marker, write_marker
from cs336_basics.prepare import prepare_dataset
from cs336_basics.progress import Timer, info
from cs336_basics.reporting.run_report import write_run_report
from cs336_basics.runs.checkpoint import CheckpointManager
from cs336_basics.runs.layout import SPLITS, DatasetDir, RunDir
from cs336_basics.runs.metrics import StopReason
from cs336_basics.runs.trained import load_trained_model
from cs336_basics.sample import DESCRIPTION, FULL_DATA_HINT, SAMPLE_NAME, extract_sample
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.tokenizer.token_files import open_token_file
from cs336_basics.training.loop import train
from cs336_basics.training.resolve import total_steps
from cs336_basics.training.budget import measure_eval_seconds_per_token
from cs336_basics.training.step import measure_step_seconds

QUICKSTART_TRAIN_BYTES = 20 * 2**20
QUICKSTART_VALID_BYTES = 2 * 2**20


def _link_or_copy(src: Path, dst: Path) -> None:
    """Place ``src`` at ``dst`` without duplicating a possibly large corpus (symlink; copy where links fail)."""
    src = src.resolve()
    if dst.is_symlink() and dst.resolve() == src:
        return
    dst.unlink(missing_ok=True)
    try:
        dst.symlink_to(src)
    except OSError:
        copy_prefix(src, dst, None)


def split_off_validation(src: Path, train_dst: Path, valid_dst: Path, fraction: float = 0.05) -> None:
    """Hold out the last ``fraction`` of ``src``'s documents (cut at an <|endoftext|>) as validation text."""
    data = src.read_bytes()
    cut = data.rfind(DOC_DELIMITER, 0, int(len(data) * (1 - fraction)))
    if cut < 0:
        raise UserError(f"{src} has no <|endoftext|> document separators; pass a validation file with --valid")
    cut += len(DOC_DELIMITER)
    atomic_write_bytes(train_dst, data[:cut])
    atomic_write_bytes(valid_dst, data[cut:].lstrip(b"\n"))


def _use_sample(data_root: Path, valid: Path | None) -> None:
    extract_sample(data_root)
    if valid is not None:
        _link_or_copy(valid, DatasetDir(data_root).text("valid"))


def gather_data(data_root: Path, data: Path | str | None, valid: Path | None, max_bytes: int | None) -> None:
    """Put train.txt / valid.txt into ``data_root``: linked local files, a split of one file, a download,
    or the sample bundled with the package (``data="sample"``, or when the download cannot be made)."""
    data_root.mkdir(parents=True, exist_ok=True)
    ds = DatasetDir(data_root)
    split_stamp = data_root / ".split_source"
    if data is None or data == SAMPLE_NAME or valid is not None:
        split_stamp.unlink(missing_ok=True)  # this time train/valid come from elsewhere than a split file
    if data == SAMPLE_NAME:
        info(f"using {DESCRIPTION}")
        _use_sample(data_root, valid)
        return
    if data is None:
        info("no --data given: downloading a TinyStories prefix (use --data FILE for a local file, "
             "--data sample for the bundled sample)")
        limit = max_bytes or QUICKSTART_TRAIN_BYTES
        downloads = data_root.parent / "downloads"
        try:
            train = download_dataset("tinystories", downloads, ["train"], max_bytes=limit)["train"]
            valid_path = valid or download_dataset("tinystories", downloads, ["valid"],
                                                   max_bytes=min(limit, QUICKSTART_VALID_BYTES))["valid"]
        except NetworkError as exc:
            info(f"cannot download ({exc.reason}): using {DESCRIPTION} instead; {FULL_DATA_HINT}")
            _use_sample(data_root, valid)
            return
        _link_or_copy(train, ds.text("train"))
        _link_or_copy(Path(valid_path), ds.text("valid"))
        return
    data = Path(data)
    if valid is not None:
        _link_or_copy(data, ds.text("train"))
        _link_or_copy(valid, ds.text("valid"))
        return
    # One file only: hold out its tail. Rewritten only when the source changed, so reruns stay up to date.
    key = f"{data.resolve()} {data.stat().st_size} {data.stat().st_mtime_ns}"
    if not (split_stamp.is_file() and split_stamp.read_text() == key and ds.text("valid").is_file()):
        for split in SPLITS:
            if ds.text(split).is_symlink():
                ds.text(split).unlink()
        split_off_validation(data, ds.text("train"), ds.text("valid"))
        atomic_write_text(split_stamp, key)


QUICKSTART_DIR = DirOutput("cs336 quickstart", "quickstart folder",
                           lambda d: has_marker("quickstart")(d) or (d / "quickstart.json").is_file())
"""A quickstart folder: marked when it is started (or holding quickstart.json); a rerun works in it again."""


@dataclass
class Score:
    """The final model's loss on one half of the validation tokens."""

    loss: float
    bpb: float | None
    tokens: int
    """Tokens scored: the whole half, unless a slow machine's budget allowed only its leading part."""
    total: int
    """Tokens in the half."""


@dataclass
class QuickstartResult:
    out: Path
    run_dir: Path
    test: Score | None
    """The headline: the held-out half nothing was chosen on (None when the validation text is too small to split)."""
    dev: Score
    """The development half, the one the evaluations during training saw (the whole file when there is no split)."""
    unigram_loss: float
    """The unigram baseline on the tokens of the headline (the test half, else the development half)."""
    unigram_bpb: float | None
    samples: list[str]
    report: Path | None
    seconds: dict[str, float]
    steps: int = 0
    tokens: int = 0

    @property
    def headline(self) -> Score:
        return self.test if self.test is not None else self.dev

    @property
    def gain_over_unigram(self) -> float:
        return self.unigram_loss - self.headline.loss


@dataclass
class BudgetPlan:
    """How a time budget is split: the training loop's own budget, evaluation sizes, samples during training."""

    train_seconds: float
    """Wall-clock for the training loop (steps, evaluations and samples during training): its train.max_minutes."""
    steps: int
    """The steps that fit at the measured speed (an estimate: the trainer re-plans as it measures)."""
    eval_tokens: int | None
    """Validation tokens per evaluation during training (None: no evaluation during training)."""
    final_eval_tokens: int | None
    """Leading validation tokens of the final evaluation (None: the whole file)."""
    samples: bool


RESERVE_FRACTION = 0.05
"""The part of the budget no plan spends: the last samples and the report, and a busy machine's
timing noise."""


def plan_budget(seconds: float, step_s: float, tokens_per_step: int, valid_tokens: int, eval_tokens: int | None,
                context_length: int, evals: int = 3, min_steps: int = 20,
                eval_s_per_token: float | None = None) -> BudgetPlan:
    """Split ``seconds`` between training and evaluation from one measured step time.

    ``eval_s_per_token`` is the measured cost of evaluating one validation token; without it a
    forward pass is taken as a third of a training step per token (the backward pass is
    about twice the forward). The final evaluation may take a quarter of the budget and
    the evaluations during training a tenth; on a slow machine they score a leading part of
    the validation file instead of all of it. :data:`RESERVE_FRACTION` is kept for the last samples,
    the report and the timing noise of a shared machine.
    The training loop gets the rest as its own time budget, so a machine that turns out slower
    (or faster) than the one measured step said trains fewer (or more) steps, not for longer.
    """
    fwd = eval_s_per_token or step_s / tokens_per_step / 3  # seconds per evaluated token
    final = min(valid_tokens, int(0.25 * seconds / fwd))
    interim = min(eval_tokens or valid_tokens, valid_tokens, int(0.10 * seconds / evals / fwd))
    interim_ok = interim >= 4 * context_length
    sample_s = 2 * step_s  # rough cost of one round of training samples
    samples = interim_ok and evals * sample_s <= 0.05 * seconds
    spent = final * fwd + (evals * interim * fwd if interim_ok else 0) + (evals * sample_s if samples else 0)
    usable = (1.0 - RESERVE_FRACTION) * seconds
    steps = max(min_steps, int((usable - spent) / step_s))
    train_seconds = max(usable - final * fwd, min_steps * step_s)
    return BudgetPlan(train_seconds, steps, interim if interim_ok else None,
                      None if final >= valid_tokens else max(final, 2), samples)


REPEATS_FOR_DROPOUT = 4.0
"""A quickstart that would go through its training tokens this many times or more trains with dropout. Up to about
four passes, repeated tokens are worth nearly as much as new ones (Muennighoff et al. 2023, "Scaling data-constrained
language models"); beyond that a small model memorises the text: on the 2 MiB sample, 16 passes without dropout end
with a higher validation loss than 8 (docs/questions.md, section 10)."""

DROPOUT_KEYS = {"model.residual_pdrop", "model.attn_pdrop"}
"""The settings :func:`with_dropout_if_repeating` fills in; naming either with ``--set`` keeps the user's choice."""

REPEATING_DROPOUT = 0.1
"""Residual and attention dropout for a quickstart that repeats its data (the best setting measured in
docs/questions.md, section 10)."""

FIXED_STEPS = 1200
"""The run's length without a time budget (``--minutes 0``), unless the config sets train.total_steps/total_tokens."""
RUN_NAME = "quickstart"


class QuickstartStopped(UserError):
    """Training was stopped by a signal; the run can be continued with ``cs336 quickstart --resume``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _override(cfg, **sections):
    return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)
                                       for name, values in sections.items()})


def repeats(cfg, steps: int, train_tokens: int) -> float:
    """How many times ``steps`` of ``cfg``'s batches go through ``train_tokens`` training tokens."""
    return steps * cfg.tokens_per_step() / max(1, train_tokens)


def with_dropout_if_repeating(cfg, steps: int, train_tokens: int, overrides: list[str] | None):
    """``cfg`` with :data:`REPEATING_DROPOUT` when the run would see its data :data:`REPEATS_FOR_DROPOUT` times or
    more and neither the config nor ``--set`` chose a dropout; otherwise ``cfg`` itself."""
    set_keys = {item.split("=", 1)[0].strip() for item in overrides or []}  # load_config has validated them
    chosen = cfg.model.residual_pdrop > 0 or cfg.model.attn_pdrop > 0 or bool(set_keys & DROPOUT_KEYS)
    times = repeats(cfg, steps, train_tokens)
    if chosen or times < REPEATS_FOR_DROPOUT:
        return cfg
    info(f"the run goes through its {train_tokens:,} training tokens about {times:.0f} times: dropout "
         f"{REPEATING_DROPOUT:g} against overfitting (--set model.residual_pdrop=0 --set model.attn_pdrop=0 "
         "turns it off)")
    return _override(cfg, model={"residual_pdrop": REPEATING_DROPOUT, "attn_pdrop": REPEATING_DROPOUT})


def _measure_eval_seconds_per_token(cfg, valid_tokens) -> float | None:
    """Seconds per validation token of a few evaluation batches of ``cfg``'s model on this machine, timed."""
    device = resolve_device(cfg.train.device)
    model = TransformerLM(cfg.model, seed=cfg.train.seed).to(device)
    context, batch = cfg.model.context_length, cfg.train.eval_batch_size
    tokens = min(len(valid_tokens), 2 * batch * context + 1)
    return measure_eval_seconds_per_token(
        lambda n: evaluate_loss(model, valid_tokens, context, batch, device, max_tokens=n), tokens)


def _budgeted(cfg, minutes: float, started: float, train_tokens, valid_tokens, timer: Timer,
              overrides: list[str] | None = None, dev_tokens: int | None = None):
    """``cfg`` with the training loop's time budget and evaluation sizes fitted to what is left of ``minutes``
    (and with dropout when that budget would repeat the training data many times). The evaluations during
    training score at most the leading ``dev_tokens`` (the development half); the final one scores both halves."""
    dev_tokens = len(valid_tokens) if dev_tokens is None else dev_tokens

    given = cfg.train.total_steps is not None or cfg.train.total_tokens is not None
    cap = total_steps(cfg, world_size=1) if given else None  # when given, they stay an upper bound

    def plan_for(step_s: float) -> tuple[BudgetPlan, int]:
        """The plan at ``step_s`` seconds per step, and its step count within the cap."""
        plan = plan_budget(minutes * 60 - (time.perf_counter() - started), step_s,
                           cfg.tokens_per_step(), len(valid_tokens), cfg.train.eval_tokens,
                           cfg.model.context_length, eval_s_per_token=eval_s)
        return plan, plan.steps if cap is None else min(plan.steps, cap)

    with timer.phase("calibrate"):
        eval_s = _measure_eval_seconds_per_token(cfg, valid_tokens)
        step_s = measure_step_seconds(cfg, train_tokens)
        regularised = with_dropout_if_repeating(cfg, plan_for(step_s)[1], len(train_tokens), overrides)
        if regularised is not cfg:  # dropout makes a step slower: plan with its own speed
            cfg = regularised
            step_s = measure_step_seconds(cfg, train_tokens)
    plan, steps = plan_for(step_s)
    info(f"time budget {minutes:g} min: {step_s:.3f} s/step measured, training gets "
         f"{plan.train_seconds / 60:.1f} min (about {steps} steps; re-planned as it runs)")
    cfg = _override(cfg, train={"max_minutes": plan.train_seconds / 60, "final_eval": False,
                                "eval_tokens": min(plan.eval_tokens or 4 * cfg.model.context_length, dev_tokens),
                                "eval_interval": max(1, steps // 4) if plan.eval_tokens else 10**9,
                                "checkpoint_interval": max(1, steps // 2), "samples": plan.samples},
                    optimizer={"warmup_iters": min(cfg.optimizer.warmup_iters, max(1, steps // 10))})
    return cfg, plan.final_eval_tokens


def run_quickstart(out: str | Path = "quickstart", data: str | Path | None = None, valid: str | Path | None = None, *,
                   minutes: float | None = None, config: str | Path | None = None, overrides: list[str] | None = None,
                   max_bytes: int | None = None, workers: int | None = None, max_new_tokens: int = 160,
                   seed: int = 0, resume: bool = False) -> QuickstartResult:
    """Data -> tokenizer + token files -> trained model -> evaluation, baseline, samples and report under ``out``.

    ``minutes`` is a time budget for the whole command: the step time is measured on this machine
    first, evaluation sizes are fitted to what is left, and the training loop gets the rest as its
    ``train.max_minutes`` (it re-plans its step count, and so its schedule, from the speed it
    measures). ``minutes=None`` trains a fixed number of steps (the config's, else
    :data:`FIXED_STEPS`), reproducible however long it takes. ``resume`` continues an interrupted
    quickstart in ``out`` from its latest checkpoint, with the settings it started with.
    """
    started = time.perf_counter()
    timer = Timer()
    out = Path(out)
    data_root = out / "data"
    run = RunDir(out / "runs" / RUN_NAME)
    if resume:
        if not run.config_path.is_file() or CheckpointManager(run.checkpoints).latest() is None:
            raise UserError(f"nothing to resume in {out} (no {run.config_path} with a checkpoint); run "
                            "'cs336 quickstart' without --resume")
        if data is not None or config is not None or overrides:
            info("resuming: the quickstart continues with the data and settings it started with")
        cfg = load_config(run.config_path)
        data_root = Path(cfg.data.dataset_dir)
    else:
        given = [path for path in (data, valid) if path is not None and path != SAMPLE_NAME]
        for path in given:
            if not Path(path).is_file():
                raise UserError(f"data file not found: {path}")
        check_output_dir(out, QUICKSTART_DIR, inputs=given)
        cfg = load_config(config or "quickstart", overrides)
        if cfg.model.vocab_size is None:
            raise UserError("the quickstart trains its tokenizer to model.vocab_size; set it in the config or with "
                            "--set model.vocab_size=N")
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "quickstart")
        with timer.phase("data"):
            gather_data(data_root, data, None if valid is None else Path(valid), max_bytes)
    with timer.phase("prepare"):
        prepared = prepare_dataset(data_root, cfg.model.vocab_size, workers=workers,
                                   context_length=cfg.model.context_length)
    tokenizer = Tokenizer.from_dir(prepared.tokenizer_dir)
    train_tokens = open_token_file(prepared.token_files["train"])
    valid_path = prepared.token_files.get("valid")
    if valid_path is None:
        raise UserError(f"no validation text in {data_root}; pass --valid FILE")
    valid_tokens = open_token_file(valid_path)
    split = held_out_split(valid_tokens, tokenizer, cfg.model.context_length)
    dev_tokens = split.dev_tokens if split is not None else len(valid_tokens)
    final_eval_tokens = None
    if not resume:
        # everything watched during training (evaluations, best.pt) sees the leading development half only
        cfg = _override(cfg, data={"dataset_dir": str(data_root.resolve())},
                        model={"vocab_size": tokenizer.vocab_size},
                        train={"runs_dir": str(run.root.parent.resolve()), "run_name": RUN_NAME, "overwrite": True,
                               "seed": seed, "final_eval": False,
                               "eval_tokens": min(cfg.train.eval_tokens or dev_tokens, dev_tokens)})
        if minutes is not None:
            cfg, final_eval_tokens = _budgeted(cfg, minutes, started, train_tokens, valid_tokens, timer, overrides,
                                               dev_tokens)
        else:  # no time budget: a fixed length, however long it takes
            if cfg.train.total_steps is None and cfg.train.total_tokens is None:
                cfg = _override(cfg, train={"total_steps": FIXED_STEPS})
            cfg = _override(cfg, train={"max_minutes": None})
            cfg = with_dropout_if_repeating(cfg, total_steps(cfg, world_size=1), len(train_tokens), overrides)
    with timer.phase("train"):
        result = train(cfg, resume="auto" if resume else None)
    if result.diverged:
        raise UserError(f"quickstart training diverged ({result.stop_reason}); try --set optimizer.lr_max=1e-3")
    if result.stop_reason not in (StopReason.COMPLETED, StopReason.TIME_BUDGET):
        raise QuickstartStopped(f"quickstart stopped ({result.stop_reason}) at step {result.steps} with a checkpoint; "
                                f"continue it with: cs336 quickstart --resume --out {out}", result.exit_code or 1)

    # The final weights, not best.pt: "best" is chosen on the development half, so it would flatter that figure.
    latest = CheckpointManager(RunDir(result.run_dir).checkpoints).latest()
    loaded = load_trained_model(latest if latest is not None else result.run_dir)
    model = loaded.model
    with timer.phase("evaluate"):
        test, dev, uni = _final_scores(model, cfg, tokenizer, train_tokens, valid_tokens, split, final_eval_tokens)
    with timer.phase("generate"):
        stories = [prompt for prompt in DEFAULT_PROMPTS if prompt]
        reading = SamplingParams(max_new_tokens=max_new_tokens, temperature=READING_TEMPERATURE, top_p=READING_TOP_P)
        gens = generate(model, tokenizer, stories, reading, seed=seed)
    samples = [g.prompt + g.text for g in gens]
    report = None
    with timer.phase("report"):
        try:
            report = write_run_report(result.run_dir)
        except Exception as exc:  # noqa: BLE001 - the model and metrics are already saved; say what failed
            info(f"warning: the run report could not be written ({type(exc).__name__}: {exc})")
    seconds = {**{k: round(v, 1) for k, v in timer.phases.items()}, "total": round(time.perf_counter() - started, 1)}
    qs = QuickstartResult(out, result.run_dir, test, dev, uni.loss, uni.bits_per_byte, samples, report, seconds,
                          result.steps, result.tokens)

    def figures(name: str, score: Score | None) -> dict:
        return {f"{name}_{key}": getattr(score, key, None) for key in ("loss", "bpb", "tokens")}

    summary = {**figures("test", test), **figures("dev", dev),
               "unigram_loss": uni.loss, "unigram_bpb": uni.bits_per_byte, "gain_over_unigram": qs.gain_over_unigram,
               "steps": result.steps, "train_tokens": result.tokens, "checkpoint": str(loaded.checkpoint_path),
               "seconds": seconds, "samples": samples, "config": str(RunDir(result.run_dir).config_path),
               "valid_tokens": len(valid_tokens), "dev_half_tokens": dev.total,
               "test_half_tokens": None if test is None else test.total, "budget_minutes": minutes}
    atomic_write_text(out / "quickstart.json", json.dumps(summary, indent=2) + "\n")
    return qs


def held_out_split(valid_tokens, tokenizer: Tokenizer, context_length: int) -> HeldOutSplit | None:
    """The development / test split of the validation tokens at an ``<|endoftext|>`` near the middle; None (and a
    note) when the text is too small for two halves of at least one context window each."""
    split = split_at_document(valid_tokens, tokenizer.eos_id, context_length + 1)
    if split is None:
        info(f"no held-out test half: the {len(valid_tokens):,} validation tokens do not split at a document "
             f"boundary into two halves of at least {context_length + 1} tokens (one context window); the final "
             "figure is on the tokens evaluated during training (a longer --valid file gives a test half)")
    return split


def _final_scores(model, cfg, tokenizer: Tokenizer, train_tokens, valid_tokens, split: HeldOutSplit | None,
                  final_eval_tokens: int | None) -> tuple[Score | None, Score, object]:
    """(test, development, unigram baseline on the test half) of the final model; on a slow machine
    (``final_eval_tokens`` set) the leading part of each half, ``final_eval_tokens`` in all."""
    halves = [split.test(valid_tokens), split.dev(valid_tokens)] if split is not None else [valid_tokens]
    limit = None if final_eval_tokens is None else max(2, final_eval_tokens // len(halves))
    if limit is not None:
        info(f"slow machine: scoring the first {limit:,} tokens of each validation half "
             f"({', '.join(f'{len(h):,}' for h in halves)} tokens; a larger --minutes scores all of them)")
    lengths = token_byte_lengths(tokenizer.vocab)
    scores = []
    for half in halves:
        scored = half[:limit] if limit is not None else half
        ev = evaluate_loss(model, scored, cfg.model.context_length, cfg.train.eval_batch_size,
                           bytes_per_token=bytes_per_token(scored, lengths))
        scores.append(Score(ev.loss, ev.bits_per_byte, ev.num_tokens, len(half)))
    headline = halves[0][:limit] if limit is not None else halves[0]
    uni = unigram_baseline(train_tokens, headline, cfg.model.vocab_size, bytes_per_token(headline, lengths))
    return (scores[0], scores[1], uni) if split is not None else (None, scores[0], uni)
