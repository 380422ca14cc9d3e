"""End-to-end orchestration: ``prepare`` (text -> tokenizer + token files) and ``quickstart``.

``prepare_dataset`` turns a dataset directory holding raw text into everything
training needs, using the tokenizer package's contracts (``train_bpe``,
``save_tokenizer_dir``, ``Tokenizer``, ``tokenize_file``)::

    DIR/train.txt (or TinyStoriesV2-GPT4-train.txt, owt_train.txt)
    DIR/valid.txt (or the published validation names)
    -> DIR/tokenizer/      vocab.json merges.txt tokenizer.json meta.json
    -> DIR/train.npy, DIR/valid.npy (+ .manifest.json each)

Each step is skipped when its output is up to date: the tokenizer's meta.json
records what it was trained from (requested vocabulary size, special tokens,
size/mtime/SHA-256 of the training text), the token files' manifests record
the tokenizer fingerprint and the source text. A changed input rebuilds exactly
what depends on it. ``prepare`` ends with checks that catch a broken pipeline
early: a sample round-trips, the token file decodes to the start of its text,
special tokens are in the vocabulary and every id is below the vocabulary size.

``run_quickstart`` chains download/copy -> prepare -> train -> evaluate ->
generate -> report for the ``cs336 quickstart`` command (see docs/quickstart.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cs336_basics.errors import UserError
from cs336_basics.progress import Timer, info
from cs336_basics.rundir import DatasetDir

DEFAULT_SPECIALS = ("<|endoftext|>",)
SPLITS = ("train", "valid")


# ----------------------------------------------------------------------------- locating inputs


def find_split_text(root: Path, split: str) -> Path | None:
    """``root/SPLIT.txt``, else a published file name for that split (TinyStoriesV2-GPT4-*, owt_*)."""
    from cs336_basics.datasets import published_names

    candidates = [root / f"{split}.txt"] + [root / name for name, s in sorted(published_names().items()) if s == split]
    return next((p for p in candidates if p.is_file()), None)


# ----------------------------------------------------------------------------- prepare


@dataclass
class PreparedDataset:
    """What ``prepare_dataset`` produced (or found up to date)."""

    root: Path
    tokenizer_dir: Path
    token_files: dict[str, Path]
    built: list[str] = field(default_factory=list)
    """Steps that actually ran ("tokenizer", "train", "valid"); empty when everything was up to date."""
    checks: dict[str, Any] = field(default_factory=dict)


def _tokenizer_is_current(tok_dir: Path, vocab_size: int, specials: list[str], source_hash: str) -> bool:
    """True when ``tok_dir`` was trained (by prepare) with these settings on text with this content hash."""
    from cs336_basics.tokenizer.tokenizer_dir import load_tokenizer_dir

    if not (tok_dir / "meta.json").is_file():
        return False
    try:
        _, _, found_specials, meta = load_tokenizer_dir(tok_dir)
    except UserError:
        return False
    prepared = meta.get("prepared") or {}
    if prepared.get("imported_from"):  # an imported tokenizer stays until --force or another --tokenizer
        return found_specials == specials
    return (prepared.get("vocab_size") == vocab_size and found_specials == specials
            and (prepared.get("source") or {}).get("hash") == source_hash)


def _train_tokenizer(train_text: Path, tok_dir: Path, vocab_size: int, specials: list[str], source: dict,
                     workers: int | None) -> None:
    from cs336_basics.tokenizer import train_bpe
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab, merges = train_bpe(str(train_text), vocab_size, list(specials), workers=workers)
    save_tokenizer_dir(tok_dir, vocab, merges, list(specials),
                       {"prepared": {"vocab_size": vocab_size, "source": source}})


def import_tokenizer(src: Path, tok_dir: Path, specials: list[str]) -> None:
    """Copy a GPT-2-format tokenizer (a tokenizer directory, or any folder with vocab.json + merges.txt,
    e.g. written by Hugging Face ``tokenizers``) into ``tok_dir`` in our directory format."""
    from cs336_basics.tokenizer.gpt2_format import load_vocab_merges
    from cs336_basics.tokenizer.tokenizer_dir import load_tokenizer_dir, save_tokenizer_dir

    src = Path(src)
    if (src / "meta.json").is_file():
        vocab, merges, specials_found, _ = load_tokenizer_dir(src)
        specials = specials_found or specials
    else:
        folder = src if src.is_dir() else src.parent
        vocab, merges = load_vocab_merges(folder / "vocab.json", folder / "merges.txt")
    present = set(vocab.values())
    missing = [s for s in specials if s.encode("utf-8") not in present]
    if missing:
        raise UserError(f"imported tokenizer {src} has no {missing[0]!r} token; pass the special tokens it uses "
                        "with --special-token")
    save_tokenizer_dir(tok_dir, vocab, merges, list(specials),
                       {"prepared": {"imported_from": str(src.resolve()), "source": None}})


def _check(name: str, ok: bool, detail: str) -> None:
    if not ok:
        raise UserError(f"prepare check failed ({name}): {detail}; rerun 'cs336 prepare' with --force")


def max_token_id(tokens: np.ndarray, chunk: int = 1 << 24) -> int:
    """Maximum of a (memory-mapped) token array, chunked so a huge file is never loaded at once."""
    best = -1
    for start in range(0, len(tokens), chunk):
        best = max(best, int(tokens[start:start + chunk].max()))
    return best


def check_dataset(tokenizer, text_paths: dict[str, Path], token_paths: dict[str, Path], specials: list[str],
                  sample_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The end-of-prepare checks; raises UserError naming the first failure, returns what was checked."""
    from cs336_basics.tokenizer.token_files import open_token_file

    checks: dict[str, Any] = {}
    for special in specials:
        _check("special token", tokenizer.token_to_id(special) is not None,
               f"{special!r} is not in the tokenizer's vocabulary")
    checks["special_tokens"] = list(specials)
    for split, npy in token_paths.items():
        text_path = text_paths[split]
        with open(text_path, "rb") as fh:
            head = fh.read(sample_bytes)
        sample = head.decode("utf-8", errors="ignore")
        ids = tokenizer.encode(sample)
        _check("round trip", tokenizer.decode(ids) == sample, f"decode(encode(x)) != x on the start of {text_path}")
        tokens = open_token_file(npy, vocab_size=tokenizer.vocab_size, tokenizer_fingerprint=tokenizer.fingerprint)
        if len(tokens):
            top = max_token_id(tokens)
            _check("max id", top < tokenizer.vocab_size, f"{npy} holds id {top} >= vocab size {tokenizer.vocab_size}")
            # the file's first tokens must spell out the start of its text, byte for byte
            first = tokenizer.decode([int(i) for i in tokens[: min(len(tokens), 2000)]]).encode("utf-8", "surrogateescape")
            with open(text_path, "rb") as fh:
                text_head = fh.read(len(first) + 16)
            common = os.path.commonprefix([first, text_head])
            _check("token file matches text", len(common) >= len(first) - 4,
                   f"{npy} does not decode to the start of {text_path}")
            checks[split] = {"num_tokens": int(len(tokens)), "max_id": top}
    return checks


def prepare_dataset(data_dir: str | Path, vocab_size: int, special_tokens: list[str] | tuple[str, ...] = DEFAULT_SPECIALS,
                    *, workers: int | None = None, force: bool = False,
                    tokenizer_from: str | Path | None = None) -> PreparedDataset:
    """Build (or confirm up to date) ``DIR/tokenizer``, ``DIR/train.npy`` and ``DIR/valid.npy``; then check them."""
    from cs336_basics.tokenizer import Tokenizer
    from cs336_basics.tokenizer.token_files import source_fingerprint, tokenize_file

    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"dataset directory not found: {root} (download one with 'cs336 download tinystories')")
    specials = list(dict.fromkeys(special_tokens))
    if tokenizer_from is None and vocab_size < 256 + len(specials):
        raise UserError(f"--vocab-size must be at least {256 + len(specials)} (256 bytes + special tokens), got {vocab_size}")
    texts = {split: find_split_text(root, split) for split in SPLITS}
    if texts["train"] is None:
        raise UserError(f"no training text in {root}: expected train.txt or a published name such as "
                        "TinyStoriesV2-GPT4-train.txt (get one with 'cs336 download tinystories --dest ...')")
    texts = {split: path for split, path in texts.items() if path is not None}
    ds = DatasetDir(root)
    timer = Timer()
    built: list[str] = []

    source = source_fingerprint(texts["train"])
    current = _tokenizer_is_current(ds.tokenizer, vocab_size, specials, source["hash"])
    if tokenizer_from is not None:
        with timer.phase("tokenizer"):
            import_tokenizer(Path(tokenizer_from), ds.tokenizer, specials)
        built.append("tokenizer")
    elif force or not current:
        info(f"training a {vocab_size}-token BPE tokenizer on {texts['train']} ...")
        with timer.phase("tokenizer"):
            _train_tokenizer(texts["train"], ds.tokenizer, vocab_size, specials, source, workers)
        built.append("tokenizer")
    else:
        info(f"{ds.tokenizer}: up to date")
    tokenizer = Tokenizer.from_dir(ds.tokenizer)

    token_paths: dict[str, Path] = {}
    for split, text_path in texts.items():
        out = ds.tokens(split)
        with timer.phase(f"tokenize {split}"):
            manifest = tokenize_file(tokenizer, text_path, out, workers=workers, force=force)
        if not manifest.get("skipped"):
            built.append(split)
            info(f"{out}: {manifest.get('num_tokens', 0):,} tokens from {text_path.name}")
        else:
            info(f"{out}: up to date")
        token_paths[split] = out
    with timer.phase("checks"):
        checks = check_dataset(tokenizer, texts, token_paths, specials)
    if built:
        info(f"prepared {root} ({timer.summary()})")
    return PreparedDataset(root, ds.tokenizer, token_paths, built, checks)


# ----------------------------------------------------------------------------- quickstart

QUICKSTART_PROMPTS = ("Once upon a time", "Lily and Ben went to the park", "The little dog was sad because")
QUICKSTART_TRAIN_BYTES = 20 * 2**20
QUICKSTART_VALID_BYTES = 2 * 2**20
QUICKSTART_MINUTES = 9.0


def quickstart_config_path() -> Path:
    """The quickstart preset, shipped inside the package (``configs/`` at the top of a checkout links to it)."""
    path = Path(__file__).resolve().parent / "configs" / "quickstart.toml"
    if not path.is_file():
        raise UserError(f"the quickstart preset {path} is missing; pass --config FILE")
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    """Place ``src`` at ``dst`` without duplicating a possibly large corpus (symlink; copy where links fail)."""
    from cs336_basics.datasets import copy_prefix

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
    from cs336_basics.datasets import DOC_DELIMITER
    from cs336_basics.fileio import atomic_write_bytes

    data = src.read_bytes()
    cut = data.rfind(DOC_DELIMITER, 0, int(len(data) * (1 - fraction)))
    if cut < 0:
        raise UserError(f"{src} has no <|endoftext|> document separators; pass a validation file with --valid")
    cut += len(DOC_DELIMITER)
    atomic_write_bytes(train_dst, data[:cut])
    atomic_write_bytes(valid_dst, data[cut:].lstrip(b"\n"))


def _use_sample(data_root: Path, valid: Path | None) -> None:
    from cs336_basics.sample import extract_sample

    extract_sample(data_root)
    if valid is not None:
        _link_or_copy(valid, data_root / "valid.txt")


def gather_data(data_root: Path, data: Path | str | None, valid: Path | None, max_bytes: int | None) -> None:
    """Put train.txt / valid.txt into ``data_root``: linked local files, a split of one file, a download,
    or the sample bundled with the package (``data="sample"``, or when the download cannot be made)."""
    from cs336_basics.datasets import download_dataset
    from cs336_basics.http_download import NetworkError
    from cs336_basics.sample import DESCRIPTION, FULL_DATA_HINT, SAMPLE_NAME

    data_root.mkdir(parents=True, exist_ok=True)
    split_stamp = data_root / ".split_source"
    if data is None or data == SAMPLE_NAME or valid is not None:
        split_stamp.unlink(missing_ok=True)  # train/valid now come from elsewhere than a split file
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
        _link_or_copy(train, data_root / "train.txt")
        _link_or_copy(Path(valid_path), data_root / "valid.txt")
        return
    data = Path(data)
    if valid is not None:
        _link_or_copy(data, data_root / "train.txt")
        _link_or_copy(valid, data_root / "valid.txt")
        return
    # One file only: hold out its tail. Rewritten only when the source changed, so reruns stay up to date.
    key = f"{data.resolve()} {data.stat().st_size} {data.stat().st_mtime_ns}"
    if not (split_stamp.is_file() and split_stamp.read_text() == key and (data_root / "valid.txt").is_file()):
        for name in ("train.txt", "valid.txt"):
            if (data_root / name).is_symlink():
                (data_root / name).unlink()
        split_off_validation(data, data_root / "train.txt", data_root / "valid.txt")
        split_stamp.write_text(key)


@dataclass
class UnigramBaseline:
    """Cross-entropy of a context-free token-frequency model (add-one smoothed train counts)."""

    loss: float
    bits_per_byte: float | None


def unigram_baseline(train_tokens: np.ndarray, valid_tokens: np.ndarray, vocab_size: int,
                     bytes_per_token: float | None) -> UnigramBaseline:
    counts = np.zeros(vocab_size, dtype=np.float64)
    chunk = 1 << 24
    for start in range(0, len(train_tokens), chunk):
        counts += np.bincount(np.asarray(train_tokens[start:start + chunk], dtype=np.int64), minlength=vocab_size)
    log_probs = np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)
    targets = np.asarray(valid_tokens[1:], dtype=np.int64)  # the same targets the model is scored on
    loss = float(-log_probs[targets].mean())
    bpb = loss / np.log(2) / bytes_per_token if bytes_per_token else None
    return UnigramBaseline(loss, bpb)


@dataclass
class QuickstartResult:
    out: Path
    run_dir: Path
    val_loss: float
    val_bpb: float | None
    unigram_loss: float
    unigram_bpb: float | None
    samples: list[str]
    report: Path | None
    seconds: dict[str, float]
    steps: int = 0
    tokens: int = 0

    @property
    def gain_over_unigram(self) -> float:
        return self.unigram_loss - self.val_loss


def measure_step_seconds(cfg, train_tokens: np.ndarray, steps: int = 2, warmup: int = 1) -> float:
    """Mean wall time of one optimizer step of ``cfg``'s model on this machine, right now.

    Few steps on purpose: on a slow or busy machine every calibration step is time the
    budget no longer has, and the first (warm-up) step is not counted.
    """
    import time

    import torch

    from cs336_basics.model import TransformerLM
    from cs336_basics.training.data import get_batch
    from cs336_basics.training.loss import cross_entropy
    from cs336_basics.training.optimizer import build_optimizer
    from cs336_basics.training.runtime import resolve_device

    device = resolve_device(cfg.train.device)
    model = TransformerLM(cfg.model, attention_device=device).to(device)
    optimizer = build_optimizer(model, cfg.optimizer)
    times = []
    for i in range(warmup + steps):
        x, y = get_batch(train_tokens, cfg.train.batch_size, cfg.model.context_length, str(device))
        start = time.perf_counter()
        loss = cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.mean(times))


@dataclass
class BudgetPlan:
    """How a time budget is split: training steps, evaluation sizes, samples during training."""

    steps: int
    eval_tokens: int | None
    """Validation tokens per evaluation during training (None: no evaluation during training)."""
    final_eval_tokens: int | None
    """Leading validation tokens of the final evaluation (None: the whole file)."""
    samples: bool


def plan_budget(seconds: float, step_s: float, tokens_per_step: int, valid_tokens: int, eval_tokens: int | None,
                context_length: int, evals: int = 3, min_steps: int = 20) -> BudgetPlan:
    """Split ``seconds`` between training and evaluation from one measured step time.

    A forward pass costs about a third of a training step per token (the backward pass is
    about twice the forward). The final evaluation may take a quarter of the budget and
    the evaluations during training a tenth; on a slow machine they score a leading part of
    the validation file instead of all of it. A tenth is kept for the last samples and the report.
    """
    fwd = step_s / tokens_per_step / 3  # seconds per evaluated token
    final = min(valid_tokens, int(0.25 * seconds / fwd))
    interim = min(eval_tokens or valid_tokens, valid_tokens, int(0.10 * seconds / evals / fwd))
    interim_ok = interim >= 4 * context_length
    sample_s = 2 * step_s  # rough cost of one round of training samples
    samples = interim_ok and evals * sample_s <= 0.05 * seconds
    spent = final * fwd + (evals * interim * fwd if interim_ok else 0) + (evals * sample_s if samples else 0)
    steps = max(min_steps, int((0.9 * seconds - spent) / step_s))
    return BudgetPlan(steps, interim if interim_ok else None, None if final >= valid_tokens else max(final, 2),
                      samples)


def _override(cfg, **sections):
    import dataclasses

    return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)
                                       for name, values in sections.items()})


def run_quickstart(out: str | Path = "quickstart", data: str | Path | None = None, valid: str | Path | None = None, *,
                   minutes: float | None = QUICKSTART_MINUTES, config: str | Path | None = None, overrides: list[str] | None = None,
                   max_bytes: int | None = None, workers: int | None = None, max_new_tokens: int = 160,
                   seed: int = 0) -> QuickstartResult:
    """Data -> tokenizer + token files -> trained model -> evaluation, baseline, samples and report under ``out``.

    ``minutes`` is a time budget for the whole command: the step time is measured on this machine
    first and the step count (and so the cosine schedule) is fitted to what is left after data
    preparation. ``minutes=None``, or a ``train.total_steps``/``train.total_tokens`` override, trains
    the fixed number of steps instead (reproducible, however long it takes).
    """
    import json
    import time

    from cs336_basics.config import load_config
    from cs336_basics.evaluation import bytes_per_token_from_manifest, evaluate_loss
    from cs336_basics.generation import generate
    from cs336_basics.fileio import atomic_write_text
    from cs336_basics.tokenizer import Tokenizer
    from cs336_basics.tokenizer.token_files import open_token_file, read_manifest
    from cs336_basics.training.checkpoint import load_trained_model
    from cs336_basics.sample import SAMPLE_NAME
    from cs336_basics.training.loop import train

    started = time.perf_counter()
    timer = Timer()
    out = Path(out)
    data_root = out / "data"
    for path in (data, valid):
        if path is not None and path != SAMPLE_NAME and not Path(path).is_file():
            raise UserError(f"data file not found: {path}")
    cfg = load_config(config or quickstart_config_path(), overrides)
    with timer.phase("data"):
        gather_data(data_root, data, None if valid is None else Path(valid), max_bytes)
    with timer.phase("prepare"):
        prepared = prepare_dataset(data_root, cfg.model.vocab_size, workers=workers)
    tokenizer = Tokenizer.from_dir(prepared.tokenizer_dir)
    train_tokens = open_token_file(prepared.token_files["train"])
    cfg = _override(cfg, data={"dataset_dir": str(data_root.resolve())},
                    model={"vocab_size": max(cfg.model.vocab_size, tokenizer.vocab_size)},
                    train={"runs_dir": str((out / "runs").resolve()), "overwrite": True, "seed": seed})
    fixed = any(o.split("=")[0].strip() in ("train.total_steps", "train.total_tokens") for o in overrides or [])
    valid_path = prepared.token_files.get("valid")
    if valid_path is None:
        raise UserError(f"no validation text in {data_root}; pass --valid FILE")
    valid_tokens = open_token_file(valid_path)
    final_eval_tokens = None
    if minutes is not None and not fixed:
        with timer.phase("calibrate"):
            step_s = measure_step_seconds(cfg, train_tokens)
        plan = plan_budget(minutes * 60 - (time.perf_counter() - started), step_s,
                           cfg.train.batch_size * cfg.model.context_length, len(valid_tokens), cfg.train.eval_tokens,
                           cfg.model.context_length)
        info(f"time budget {minutes:g} min: {step_s:.3f} s/step measured -> {plan.steps} steps")
        final_eval_tokens = plan.final_eval_tokens
        cfg = _override(cfg, train={"total_steps": plan.steps,
                                    "eval_tokens": plan.eval_tokens or 4 * cfg.model.context_length,
                                    "eval_interval": max(1, plan.steps // 4) if plan.eval_tokens else plan.steps + 1,
                                    "checkpoint_interval": max(1, plan.steps // 2), "samples": plan.samples},
                        optimizer={"warmup_iters": min(cfg.optimizer.warmup_iters, max(1, plan.steps // 10))})
    with timer.phase("train"):
        result = train(cfg)
    if result.diverged:
        raise UserError(f"quickstart training diverged ({result.stop_reason}); try --set optimizer.lr_max=1e-3")
    if result.stop_reason != "completed":
        raise UserError(f"quickstart training stopped early ({result.stop_reason}); rerun to start again")

    loaded = load_trained_model(result.run_dir)
    model = loaded.model
    if final_eval_tokens is not None:
        info(f"slow machine: scoring the first {final_eval_tokens:,} of {len(valid_tokens):,} validation tokens "
             "(a larger --minutes scores all of them)")
        valid_tokens = valid_tokens[:final_eval_tokens]
    bytes_per_token = bytes_per_token_from_manifest(read_manifest(valid_path))
    with timer.phase("evaluate"):
        ev = evaluate_loss(model, valid_tokens, cfg.model.context_length, cfg.train.eval_batch_size,
                           bytes_per_token=bytes_per_token)
        uni = unigram_baseline(train_tokens, valid_tokens, cfg.model.vocab_size, bytes_per_token)
    with timer.phase("generate"):
        gens = generate(model, tokenizer, list(QUICKSTART_PROMPTS), max_new_tokens=max_new_tokens, temperature=0.8,
                        top_p=0.95, seed=seed)
    samples = [g.prompt + g.text for g in gens]
    report = None
    with timer.phase("report"):
        try:
            from cs336_basics.evaluation.report import write_run_report

            report = write_run_report(result.run_dir)
        except Exception as exc:  # noqa: BLE001 - the model and metrics are already saved; say what failed
            info(f"warning: the run report could not be written ({type(exc).__name__}: {exc})")
    seconds = {**{k: round(v, 1) for k, v in timer.phases.items()}, "total": round(time.perf_counter() - started, 1)}
    qs = QuickstartResult(out, result.run_dir, ev.loss, ev.bits_per_byte, uni.loss, uni.bits_per_byte, samples,
                          report, seconds, result.steps, result.tokens)
    summary = {"val_loss": ev.loss, "val_bpb": ev.bits_per_byte, "val_tokens": ev.num_tokens,
               "unigram_loss": uni.loss, "unigram_bpb": uni.bits_per_byte, "gain_over_unigram": qs.gain_over_unigram,
               "steps": result.steps, "train_tokens": result.tokens, "checkpoint": str(loaded.checkpoint_path),
               "seconds": seconds, "samples": samples, "config": str(result.run_dir / "config.toml"),
               "scored_valid_tokens": len(valid_tokens)}
    atomic_write_text(out / "quickstart.json", json.dumps(summary, indent=2) + "\n")
    return qs
