"""``cs336 prepare``: a dataset directory of raw text -> tokenizer + token files, skipping what is up to date.

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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cs336_basics.datasets import published_names
from cs336_basics.errors import UserError
from cs336_basics.progress import Timer, info
from cs336_basics.runs.layout import SPLITS, DatasetDir
from cs336_basics.tokenizer import Tokenizer, train_bpe
from cs336_basics.tokenizer.gpt2_format import load_vocab_merges
from cs336_basics.tokenizer.token_files import open_token_file, source_fingerprint, tokenize_file
from cs336_basics.tokenizer.tokenizer_dir import load_tokenizer_dir, save_tokenizer_dir

DEFAULT_SPECIALS = ("<|endoftext|>",)


def find_split_text(root: Path, split: str) -> Path | None:
    """``root/SPLIT.txt``, else a published file name for that split (TinyStoriesV2-GPT4-*, owt_*)."""
    candidates = [root / f"{split}.txt"] + [root / name for name, s in sorted(published_names().items()) if s == split]
    return next((p for p in candidates if p.is_file()), None)


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
    vocab, merges = train_bpe(str(train_text), vocab_size, list(specials), workers=workers)
    save_tokenizer_dir(tok_dir, vocab, merges, list(specials),
                       {"prepared": {"vocab_size": vocab_size, "source": source}})


def import_tokenizer(src: Path, tok_dir: Path, specials: list[str]) -> None:
    """Copy a GPT-2-format tokenizer (a tokenizer directory, or any folder with vocab.json + merges.txt,
    e.g. written by Hugging Face ``tokenizers``) into ``tok_dir`` in our directory format."""
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


