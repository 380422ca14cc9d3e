"""`cs336 prepare --data DIR --vocab-size N`: raw text -> tokenizer + token files, skipping what is up to date."""

from __future__ import annotations

import argparse

from cs336_basics.commands import existing_dir, existing_path, positive_int


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "prepare", parents=parents, help="train the tokenizer and tokenize a dataset directory",
        description="For DIR holding train.txt/valid.txt (or the published TinyStories/OWT names): train a BPE "
                    "tokenizer on the training text into DIR/tokenizer, tokenize both splits into DIR/train.npy and "
                    "DIR/valid.npy (with manifests), and check the result. Up-to-date outputs are skipped; outputs "
                    "whose inputs changed are rebuilt.")
    parser.add_argument("--data", required=True, type=existing_dir, metavar="DIR", help="dataset directory")
    parser.add_argument("--vocab-size", type=positive_int, default=10000, metavar="N",
                        help="vocabulary size including the 256 bytes and special tokens (default 10000)")
    parser.add_argument("--special-token", dest="special_tokens", action="append", default=None, metavar="TOKEN",
                        help="special token (repeatable; default <|endoftext|>)")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="processes for training and tokenizing (default: all cores)")
    parser.add_argument("--tokenizer", dest="tokenizer_from", type=existing_path, default=None, metavar="PATH",
                        help="use this tokenizer instead of training one: a tokenizer directory or a folder with "
                             "GPT-2-format vocab.json + merges.txt (e.g. from Hugging Face tokenizers)")
    parser.add_argument("--force", action="store_true", help="rebuild everything even if up to date")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cs336_basics.prepare import DEFAULT_SPECIALS, prepare_dataset
    from cs336_basics.tokenizer import native as native_ext

    native_ext.warn_if_fallback("cs336 prepare")
    result = prepare_dataset(args.data, args.vocab_size, args.special_tokens or list(DEFAULT_SPECIALS),
                             workers=args.workers, force=args.force, tokenizer_from=args.tokenizer_from)
    print(f"tokenizer\t{result.tokenizer_dir}")
    for split, path in result.token_files.items():
        n = result.checks.get(split, {}).get("num_tokens", 0)
        print(f"{split}\t{path}\t{n} tokens")
    print("built: " + (", ".join(result.built) if result.built else "nothing (all up to date)"))
    return 0
