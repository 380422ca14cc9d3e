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
early: a sample round-trips, the token file's tokens spell out the start of its
text byte for byte, special tokens are in the vocabulary and every id is below
the vocabulary size.

Inputs are checked before anything is built: text that looks like UTF-16/32,
binary or Latin-1 gets a warning naming the ``iconv`` that converts it, as does a
training text with ``<|endoftext|>`` that is not a special token; a validation
text too short for one context window (``context_length + 1`` tokens: one
evaluation window with its next-token targets) is an error, checked on its size
before the tokenizer is trained (no token is shorter than a byte) and on its
token count before it is tokenized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_basics.datasets import published_names
from cs336_basics.errors import UserError
from cs336_basics.config import ModelConfig
from cs336_basics.progress import Timer, info, warn
from cs336_basics.runs.layout import SPLITS, DatasetDir
from cs336_basics.tokenizer import Tokenizer, train_bpe
from cs336_basics.tokenizer.gpt2_format import load_vocab_merges
from cs336_basics.tokenizer.pretokenize import DEFAULT_SPECIAL_TOKENS, special_token_list
from cs336_basics.tokenizer.text_checks import text_warnings
from cs336_basics.outputs import check_output_dir
from cs336_basics.tokenizer.token_files import (
    check_token_output,
    id_range,
    open_token_file,
    source_fingerprint,
    tokenize_file,
)
from cs336_basics.tokenizer.tokenizer_dir import (
    MERGES_FILE,
    META_FILE,
    TOKENIZER_DIR,
    VOCAB_FILE,
    load_tokenizer_dir,
    save_tokenizer_dir,
)
from cs336_basics.tokenizer.vocabulary import check_vocab_size_trainable

EXACT_COUNT_LIMIT = 64 << 20  # bytes of validation text that may be encoded in memory to count its tokens


def find_split_text(root: Path, split: str) -> Path | None:
    """``root/SPLIT.txt``, else a published file name for that split (TinyStoriesV2-GPT4-*, owt_*)."""
    candidates = [DatasetDir(root).text(split)] + [root / name for name, s in sorted(published_names().items()) if s == split]
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
    special_tokens: list[str] = field(default_factory=list)


def _tokenizer_is_current(tok_dir: Path, vocab_size: int, specials: list[str], source_hash: str) -> bool:
    """True when ``tok_dir`` was trained (by prepare) with these settings on text with this content hash."""
    if not (tok_dir / META_FILE).is_file():
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
    if (src / META_FILE).is_file():
        vocab, merges, specials_found, _ = load_tokenizer_dir(src)
        specials = specials_found or specials
    else:
        folder = src if src.is_dir() else src.parent
        vocab, merges = load_vocab_merges(folder / VOCAB_FILE, folder / MERGES_FILE)
    present = set(vocab.values())
    missing = [s for s in specials if s.encode("utf-8") not in present]
    if missing:
        raise UserError(f"imported tokenizer {src} has no {missing[0]!r} token; pass the special tokens it uses "
                        "with --special-token")
    save_tokenizer_dir(tok_dir, vocab, merges, list(specials),
                       {"prepared": {"imported_from": str(src.resolve()), "source": None}})


def _check(name: str, ok: bool, detail: str, fix: str = "rerun 'cs336 prepare' with --force") -> None:
    if not ok:
        raise UserError(f"prepare check failed ({name}): {detail}; {fix}")


def check_dataset(tokenizer, text_paths: dict[str, Path], token_paths: dict[str, Path], specials: list[str],
                  sample_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The end-of-prepare checks; raises UserError naming the first failure, returns what was checked."""
    checks: dict[str, Any] = {}
    for special in specials:
        _check("special token", tokenizer.token_to_id(special) is not None,
               f"{special!r} is not in the tokenizer's vocabulary",
               "use a tokenizer that has it, or pass the special tokens it has with --special-token")
    checks["special_tokens"] = list(specials)
    for split, npy in token_paths.items():
        text_path = text_paths[split]
        with open(text_path, "rb") as fh:
            head = fh.read(sample_bytes)
        sample = head.decode("utf-8", errors="ignore")
        ids = tokenizer.encode(sample)
        _check("round trip", tokenizer.decode(ids) == sample, f"decode(encode(x)) != x on the start of {text_path}")
        # with vocab_size, opening it checks every id against the vocabulary
        tokens = open_token_file(npy, vocab_size=tokenizer.vocab_size, tokenizer_fingerprint=tokenizer.fingerprint)
        if len(tokens):
            ids_range = id_range(tokens)
            # the file's first tokens must spell out the start of its text, byte for byte (whatever the encoding)
            first = b"".join(tokenizer.vocab[int(i)] for i in tokens[: min(len(tokens), 2000)])
            with open(text_path, "rb") as fh:
                text_head = fh.read(len(first))
            _check("token file matches text", first == text_head, f"{npy} does not spell out the start of {text_path}")
            checks[split] = {"num_tokens": int(len(tokens)), "max_id": ids_range[1]}
    return checks


def _short_validation(path: Path, found: str, context_length: int) -> UserError:
    need = context_length + 1
    return UserError(f"the validation text {path} is {found}, fewer than the {need:,} tokens of one context window "
                     f"(--context-length {context_length} + 1 next-token target), so no validation loss could be "
                     f"computed; add held-out documents to it (about {4 * need:,} bytes of English text or more) "
                     "or pass a smaller --context-length")


def check_validation_bytes(path: Path, context_length: int) -> None:
    """Reject a validation text with fewer bytes than one window has tokens (a token is at least one byte)."""
    size = path.stat().st_size
    if size <= context_length:
        raise _short_validation(path, "empty" if size == 0 else f"{size:,} bytes long", context_length)


def check_validation_tokens(tokenizer, path: Path, context_length: int) -> None:
    """Reject a validation text that ``tokenizer`` turns into fewer than ``context_length + 1`` tokens.

    A text of N bytes has at least N / (longest token) tokens; only when that bound is below the
    floor (short texts) are the tokens counted, by encoding the text in memory.
    """
    size, need = path.stat().st_size, context_length + 1
    longest = max(len(token) for token in tokenizer.vocab.values())
    if size // longest >= need or size > EXACT_COUNT_LIMIT:
        return
    count = len(tokenizer.encode_to_array(path.read_bytes()))
    if count < need:
        raise _short_validation(path, f"{count:,} tokens long", context_length)


def _warn_about_texts(texts: dict[str, Path], specials: list[str] | None) -> None:
    """One warning line per problem of each text (encoding; an undeclared separator in the training text)."""
    for split, path in texts.items():
        for warning in text_warnings(path, specials if split == "train" else None):
            warn(warning)


def check_outputs(ds: DatasetDir, texts: dict[str, Path], tokenizer_from: str | Path | None) -> None:
    """Before any work: DIR/tokenizer is empty or a tokenizer directory holding only its own files (prepare
    replaces it when its inputs changed), and each DIR/SPLIT.npy is absent or a token file with its manifest."""
    source = Path(tokenizer_from).resolve() if tokenizer_from is not None else None
    if source is not None and ds.tokenizer.resolve() in (source, source.parent):
        raise UserError(f"--tokenizer {tokenizer_from} is {ds.tokenizer}, where prepare puts the tokenizer: it is "
                        "already in place; drop --tokenizer")
    check_output_dir(ds.tokenizer, TOKENIZER_DIR, inputs=[*texts.values(), tokenizer_from], force=True,
                     flag="the tokenizer directory", fix="move it away or use another --data")
    for split, text in texts.items():
        check_token_output(ds.tokens(split), [text])


def prepare_dataset(data_dir: str | Path, vocab_size: int,
                    special_tokens: list[str] | tuple[str, ...] = DEFAULT_SPECIAL_TOKENS,
                    *, workers: int | None = None, force: bool = False, tokenizer_from: str | Path | None = None,
                    context_length: int = ModelConfig.context_length) -> PreparedDataset:
    """Build (or confirm up to date) ``DIR/tokenizer``, ``DIR/train.npy`` and ``DIR/valid.npy``; then check them.

    ``context_length`` sets the smallest validation split accepted: one window of ``context_length + 1`` tokens.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"dataset directory not found: {root} (download one with 'cs336 download tinystories')")
    specials = special_token_list(special_tokens)
    if tokenizer_from is None:
        check_vocab_size_trainable(vocab_size, specials)
    texts = {split: find_split_text(root, split) for split in SPLITS}
    if texts["train"] is None:
        raise UserError(f"no training text in {root}: expected train.txt or a published name such as "
                        "TinyStoriesV2-GPT4-train.txt (get one with 'cs336 download tinystories --dest ...')")
    texts = {split: path for split, path in texts.items() if path is not None}
    if "valid" in texts:
        check_validation_bytes(texts["valid"], context_length)
    _warn_about_texts(texts, specials if tokenizer_from is None else None)
    ds = DatasetDir(root)
    check_outputs(ds, texts, tokenizer_from)
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
    if "valid" in texts:
        check_validation_tokens(tokenizer, texts["valid"], context_length)

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
    return PreparedDataset(root, ds.tokenizer, token_paths, built, checks, list(tokenizer.special_tokens))


