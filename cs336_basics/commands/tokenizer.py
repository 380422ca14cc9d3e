"""`cs336 tokenizer train`: train a byte-level BPE tokenizer on text files into a tokenizer directory.

Thin wrapper over :func:`cs336_basics.tokenizer.bpe_train.train_bpe_detailed` and
:func:`cs336_basics.tokenizer.tokenizer_dir.save_tokenizer_dir`. Everything that can be checked
before the (long) training is checked first: inputs exist and are not empty, the vocabulary is big
enough, the output location is writable and may be written (new or empty, or an earlier tokenizer
directory with ``--force``; never the current directory or a folder holding an input: see outputs.py). The output directory appears only when complete.
After training it prints the summary, the longest tokens and the compression (bytes/token) on a
held-out tail of the last input file that was kept out of training.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from cs336_basics.commands import add_special_token_options, byte_size, chosen_special_tokens, positive_int
from cs336_basics.errors import UserError
from cs336_basics.progress import info


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser("tokenizer", parents=parents, help="train a byte-level BPE tokenizer",
                                   description="Tokenizer tools.")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    train = sub.add_parser(
        "train", parents=parents, help="train a byte-level BPE tokenizer on text files",
        description="Train a byte-level BPE tokenizer (GPT-2 pre-tokenization, exact merges, ties to the "
                    "lexicographically greatest pair) and write DIR/vocab.json, DIR/merges.txt (GPT-2 format), "
                    "DIR/tokenizer.json (Hugging Face tokenizers) and DIR/meta.json.",
        epilog="Example: cs336 tokenizer train --input data/ts/train.txt --vocab-size 10000 --out data/ts/tokenizer")
    train.add_argument("--input", required=True, nargs="+", type=Path, metavar="FILE",
                       help="UTF-8 text file(s); documents separated by special tokens")
    train.add_argument("--vocab-size", required=True, type=positive_int, metavar="N",
                       help="final vocabulary size: 256 bytes + merges + special tokens")
    add_special_token_options(train)
    train.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="output tokenizer directory: new or empty (or a previous one, with --force)")
    train.add_argument("--force", action="store_true",
                       help="replace a tokenizer directory that holds only vocab.json, merges.txt, tokenizer.json "
                            "and meta.json")
    train.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help=f"worker processes for counting (default: all CPUs, here {os.cpu_count()})")
    train.add_argument("--pattern", default=None, metavar="REGEX",
                       help="pre-tokenization regex (default: GPT-2's; others use the slower Python counting)")
    train.add_argument("--memory-budget", type=byte_size, default=None, metavar="SIZE",
                       help="bytes of text in flight across workers, e.g. 512M (default: 32 MiB chunks)")
    train.add_argument("--holdout", type=byte_size, default=None, metavar="SIZE",
                       help="bytes at the end of the last file kept out of training to measure compression "
                            "(default: 5%% of it, at most 1M; 0 = none)")
    train.set_defaults(func=run_train)


def _check_out_dir(out: Path, inputs: list[Path], force: bool) -> None:
    """Fail before training, not after, when the output may not or cannot be written (see outputs.py)."""
    from cs336_basics.outputs import check_output_dir
    from cs336_basics.tokenizer.tokenizer_dir import TOKENIZER_DIR

    check_output_dir(out, TOKENIZER_DIR, inputs=inputs, force=force)
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {out}: {parent} is not writable; choose another --out")


def data_fingerprint(paths: list[Path]) -> dict:
    """Identify the training files cheaply: size, mtime and a sha256 of the first and last MiB of each."""
    files = []
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            h.update(fh.read(1 << 20))
            if stat.st_size > 2 << 20:
                fh.seek(stat.st_size - (1 << 20))
                h.update(fh.read())
        files.append({"path": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime,
                      "sha256_head_tail": h.hexdigest()})
        digest.update(h.hexdigest().encode() + str(stat.st_size).encode())
    return {"files": files, "fingerprint": digest.hexdigest()}


def _show(token: bytes) -> str:
    try:
        return repr(token.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(token)


def run_train(args: argparse.Namespace) -> int:
    from cs336_basics.progress import warn
    from cs336_basics.runtime import native as native_ext
    from cs336_basics.tokenizer.bpe_train import train_bpe_detailed
    from cs336_basics.tokenizer.pretokenize import DEFAULT_SPECIAL_TOKENS, GPT2_PATTERN
    from cs336_basics.tokenizer.text_checks import text_warnings
    from cs336_basics.tokenizer.tokenizer import Tokenizer
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    _check_out_dir(args.out, args.input, args.force)
    specials = chosen_special_tokens(args, DEFAULT_SPECIAL_TOKENS)
    pattern = args.pattern or GPT2_PATTERN
    if args.pattern:
        import regex

        try:
            regex.compile(args.pattern)
        except regex.error as exc:
            raise UserError(f"--pattern is not a valid regex ({exc}); fix the pattern") from exc
    holdout, last = args.holdout, args.input[-1]
    if holdout is None:
        holdout = min(1 << 20, last.stat().st_size // 20) if last.is_file() else 0
    elif holdout > 0 and last.is_file() and holdout >= last.stat().st_size:
        size = last.stat().st_size
        raise UserError(f"--holdout {holdout:,} bytes is not smaller than {last} ({size:,} bytes), the file it is "
                        f"cut from, so nothing of it would be trained on; give a smaller --holdout (e.g. "
                        f"{size // 20:,}, 5% of it) or --holdout 0")
    for path in args.input:
        if path.is_file():
            for warning in text_warnings(path, specials):
                warn(warning)
    native_ext.warn_if_fallback("cs336 tokenizer train", ("_bpe_count", "_bpe_merge"))
    started = time.time()
    result = train_bpe_detailed(args.input, args.vocab_size, specials, workers=args.workers,
                                pattern=pattern, memory_budget=args.memory_budget, holdout_bytes=holdout)
    summary = result.summary
    meta = {"pattern": pattern, "data": data_fingerprint(args.input), "trained_at": started,
            "summary": summary.to_dict()}
    save_tokenizer_dir(args.out, result.vocab, result.merges, specials, meta)

    print(summary.format())
    longest = sorted(result.vocab.values(), key=len, reverse=True)[:10]
    print("longest tokens: " + ", ".join(_show(t) for t in longest))
    if summary.heldout:
        with open(summary.heldout["path"], "rb") as fh:
            fh.seek(summary.heldout["start"])
            sample = fh.read(summary.heldout["end"] - summary.heldout["start"])
        tokenizer = Tokenizer(result.vocab, result.merges, specials)
        ids = tokenizer.encode(sample.decode("utf-8", "replace"))
        if ids:
            print(f"compression on {len(sample):,} held-out bytes: {len(sample) / len(ids):.3f} bytes/token")
    else:
        print("compression: no held-out sample (input too small or --holdout 0)")
    info(f"wrote {args.out}/ (vocab.json, merges.txt, tokenizer.json, meta.json)")
    return 0
