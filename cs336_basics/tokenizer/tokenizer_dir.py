"""A trained tokenizer on disk: one directory with vocab.json, merges.txt, tokenizer.json and meta.json.

- ``vocab.json`` + ``merges.txt``: GPT-2's byte-to-unicode format (see gpt2_format.py), loadable by
  Hugging Face ``tokenizers`` and by ``Tokenizer.from_files``.
- ``tokenizer.json``: a complete Hugging Face ``tokenizers`` description (BPE model, a pre-tokenizer
  that splits with the same GPT-2 regex then maps bytes to unicode, the ByteLevel decoder, special
  tokens as added tokens), so ``tokenizers.Tokenizer.from_file`` encodes exactly like our encoder.
- ``meta.json``: special tokens (in vocabulary order), the pattern, the training-data fingerprint,
  timings, and anything else the trainer wants to record.

The directory is written atomically: everything goes into a hidden temp directory beside the
target, which is renamed into place only when complete, so a failure never leaves a half-written
tokenizer under the final name (an existing one is replaced only at the very end, and only when it
holds nothing but these four files: a directory with anything else in it is refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.fileio import replace_dir_atomically
from cs336_basics.outputs import DirOutput, has_files
from cs336_basics.tokenizer.gpt2_format import load_vocab_merges, save_vocab_merges, token_to_str
from cs336_basics.tokenizer.pretokenize import GPT2_PATTERN

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
HF_TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
FILES = (VOCAB_FILE, MERGES_FILE, HF_TOKENIZER_FILE, META_FILE)
TOKENIZER_DIR = DirOutput("cs336 tokenizer train", "tokenizer directory", has_files(META_FILE, VOCAB_FILE, MERGES_FILE),
                          frozenset(FILES))
"""A tokenizer directory as an output: recognised by its files; replacing one deletes only :data:`FILES`."""


def hf_tokenizer_json(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str],
                      pattern: str = GPT2_PATTERN) -> dict[str, Any]:
    """The Hugging Face ``tokenizers`` JSON for a byte-level BPE with our pre-tokenization."""
    by_token = {tok: idx for idx, tok in vocab.items()}
    added = []
    for special in special_tokens:
        idx = by_token.get(special.encode("utf-8"))
        if idx is None:
            raise UserError(f"special token {special!r} is not in the vocabulary")
        added.append({"id": idx, "content": special, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
    model_vocab = {token_to_str(tok): idx for idx, tok in sorted(vocab.items())}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        # Split isolates each regex match (GPT-2 pre-tokens); ByteLevel without its own regex only
        # maps the bytes of each piece to GPT-2's printable characters.
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": model_vocab,
                  "merges": [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges]},
    }


def save_tokenizer_dir(out_dir: str | Path, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                       special_tokens: list[str], meta: dict[str, Any] | None = None) -> Path:
    """Write the four files into ``out_dir`` atomically (temp dir + rename); return ``out_dir``.

    An existing ``out_dir`` must be empty or a tokenizer directory holding only :data:`FILES`
    (see :data:`TOKENIZER_DIR`); the commands check that, with their ``--force``, before training.
    """
    out_dir = Path(out_dir)

    def fill(tmp: Path) -> None:
        save_vocab_merges(vocab, merges, tmp / VOCAB_FILE, tmp / MERGES_FILE)
        pattern = (meta or {}).get("pattern", GPT2_PATTERN)
        hf = hf_tokenizer_json(vocab, merges, list(special_tokens), pattern)
        (tmp / HF_TOKENIZER_FILE).write_text(json.dumps(hf, ensure_ascii=False), encoding="utf-8")
        full_meta = {"format": 1, "special_tokens": list(special_tokens), "pattern": pattern,
                     "vocab_size": len(vocab), "num_merges": len(merges), **(meta or {})}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=1, ensure_ascii=False), encoding="utf-8")

    try:
        replace_dir_atomically(out_dir, fill, FILES)
    except OSError as exc:
        raise UserError(f"cannot write tokenizer to {out_dir}: {exc.strerror}; choose another --out") from exc
    return out_dir


def read_meta(meta_path: Path) -> dict[str, Any]:
    """``meta.json``: a JSON object whose ``special_tokens`` (when present) is a list of strings."""
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{meta_path}: not UTF-8; the file is damaged, restore or retrain the tokenizer") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{meta_path}:{exc.lineno}: not valid JSON ({exc.msg}); restore or retrain the tokenizer") from exc
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object; restore or retrain the "
                        "tokenizer")
    specials = meta.get("special_tokens", [])
    if not isinstance(specials, list) or not all(isinstance(t, str) and t for t in specials):
        raise UserError(f"{meta_path}: 'special_tokens' is {json.dumps(specials)[:60]}, not a list of non-empty "
                        "strings; restore or retrain the tokenizer")
    return meta


def load_tokenizer_dir(directory: str | Path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str], dict]:
    """Read a directory written by :func:`save_tokenizer_dir`: ``(vocab, merges, special_tokens, meta)``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"tokenizer directory not found: {directory} (train one with 'cs336 tokenizer train')")
    vocab, merges = load_vocab_merges(directory / VOCAB_FILE, directory / MERGES_FILE)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        # without it the special tokens are unknown and would be encoded as plain text
        raise UserError(f"{meta_path} is missing (it lists the special tokens); restore it, or retrain the tokenizer "
                        "with 'cs336 tokenizer train' (a vocab.json + merges.txt from elsewhere is imported with "
                        "'cs336 prepare --tokenizer DIR')")
    meta = read_meta(meta_path)
    specials = list(meta.get("special_tokens", []))
    known = set(vocab.values())
    missing = [s for s in specials if s.encode("utf-8") not in known]
    if missing:
        raise UserError(f"{meta_path}: special token {missing[0]!r} is not in vocab.json; retrain the tokenizer")
    special_bytes = {s.encode("utf-8") for s in specials}
    merged = [t for t in vocab.values() if len(t) > 1 and t not in special_bytes]
    if merged and not merges:
        # every multi-byte token is made by a merge: without merges the tokenizer would be byte-level
        raise UserError(f"{directory / MERGES_FILE} holds no merges but vocab.json has {len(merged)} multi-byte "
                        "tokens that only merges produce; restore merges.txt or retrain the tokenizer")
    return vocab, merges, specials, meta
