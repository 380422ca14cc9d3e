"""`cs336 tokenize`: a text file -> a memory-mappable ``.npy`` of token ids, in parallel, never stale.

Thin wrapper over :func:`cs336_basics.tokenizer.token_files.tokenize_file`:
loads the tokenizer directory, skips an output that its manifest shows to be
up to date (same tokenizer, same source), otherwise rebuilds it atomically and
prints tokens, bytes/token and time.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cs336_basics.commands import existing_dir, existing_file, positive_int
from cs336_basics.progress import info


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "tokenize", parents=parents, help="tokenize a text file into a .npy token file",
        description="Encode a UTF-8 text file with a trained tokenizer into a 1-D .npy array of token ids "
                    "(uint16 when the vocabulary fits, else uint32) plus FILE.npy.manifest.json. Re-running "
                    "skips outputs that are up to date and rebuilds stale ones (tokenizer or source changed).",
        epilog="Example: cs336 tokenize --tokenizer data/ts/tokenizer --input data/ts/train.txt --out data/ts/train.npy")
    parser.add_argument("--tokenizer", required=True, type=existing_dir, metavar="DIR",
                        help="tokenizer directory written by 'cs336 tokenizer train'")
    parser.add_argument("--input", required=True, type=existing_file, metavar="FILE", help="UTF-8 text file")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.npy", help="output token file")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help=f"worker processes (default: all CPUs, here {os.cpu_count()})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the output is up to date")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cs336_basics.progress import warn
    from cs336_basics.runtime.allocator import keep_freed_cpu_memory
    from cs336_basics.runtime import native as native_ext
    from cs336_basics.tokenizer.text_checks import text_warnings
    from cs336_basics.tokenizer.token_files import tokenize_file
    from cs336_basics.tokenizer.tokenizer import Tokenizer

    keep_freed_cpu_memory()  # this process encodes chunk after chunk itself when --workers 1
    native_ext.warn_if_fallback("cs336 tokenize", ("_encode_native",))

    tokenizer = Tokenizer.from_dir(args.tokenizer)
    for warning in text_warnings(args.input):
        warn(warning)
    result = tokenize_file(tokenizer, args.input, args.out, workers=args.workers, force=args.force)
    tokens, nbytes = result["num_tokens"], result["num_bytes"]
    per = f"{nbytes / tokens:.3f} bytes/token" if tokens else "no tokens"
    if result["skipped"]:
        info(f"{args.out} is up to date ({tokens:,} tokens, {per}); use --force to rebuild")
    else:
        secs = result["seconds"]
        rate = f", {nbytes / 2**20 / secs:.1f} MiB/s" if secs > 0 else ""
        info(f"rebuilt because {result['reason']}" if result["reason"] != "no token file yet" else "tokenized")
        print(f"{args.out}: {tokens:,} tokens ({result['dtype']}), {nbytes:,} bytes, {per}, "
              f"{secs:.1f}s with {result['workers']} worker(s){rate}")
    return 0
