"""Real text, tokenizers and token files for the benchmarks, built once and cached under ``.bench/``.

Everything comes from the shared corpora (``../shared/data``, or $CS336_SHARED_DATA,
or ``--data-dir``; see :func:`benchmarks.harness.shared_data`). Only distinct text
is used: nothing here repeats a file to reach a size, so a request larger than the
corpus gets the whole corpus, and callers record the size they actually got.
"""

from __future__ import annotations

import lzma
from pathlib import Path

from benchmarks.harness import CACHE, shared_data
from cs336_basics.fileio import atomic_write_bytes

EOT = "<|endoftext|>"
TINYSTORIES_TRAIN = "tinystories/tinystories_train_head.txt"
TINYSTORIES_VALID = "tinystories/tinystories_valid_head1k.txt"
GUTENBERG = "english/gutenberg_200M.txt.xz"
WEB = "english/web_english.txt.xz"


def text_prefix(relative: str, mb: float | None, data_dir: str | Path | None = None) -> Path:
    """The first ``mb`` MB (10^6 bytes) of a shared corpus, cut after a newline (``None``: all of it), decompressed."""
    src = shared_data(relative, data_dir)
    label = "all" if mb is None else f"{mb:g}MB"
    out = CACHE / "corpora" / f"{Path(relative).name.split('.')[0]}_{label}.txt"
    if out.exists():
        return out
    limit = -1 if mb is None else int(mb * 1e6)
    if src.suffix == ".xz":
        with lzma.open(src, "rb") as fh:
            data = fh.read(limit)
    else:
        data = src.read_bytes()[: None if limit < 0 else limit]
    if mb is not None:
        data = data[: data.rfind(b"\n") + 1]
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, data)


def tokenizer_dir(text: Path, vocab_size: int) -> Path:
    """A tokenizer directory trained with our trainer on ``text`` (``<|endoftext|>`` special), cached."""
    out = CACHE / "tokenizers" / f"{text.stem}_{vocab_size}"
    if (out / "meta.json").exists():
        return out
    from cs336_basics.tokenizer import train_bpe
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab, merges = train_bpe(text, vocab_size, [EOT])
    save_tokenizer_dir(out, vocab, merges, [EOT], {"trained_on": text.name})
    return out


def token_array(tok_dir: Path, text: Path, max_tokens: int | None = None):
    """``text`` encoded with the tokenizer in ``tok_dir`` as a uint16 array (first ``max_tokens``), cached as .npy."""
    import numpy as np

    out = CACHE / "tokens" / f"{text.stem}.{tok_dir.name}.npy"
    if not out.exists():
        from cs336_basics.tokenizer import Tokenizer

        ids = np.asarray(Tokenizer.from_dir(tok_dir).encode(text.read_text(encoding="utf-8")), dtype=np.uint16)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, ids)
    return np.load(out)[:max_tokens]
