"""`cs336 prepare --data DIR --vocab-size N`: raw text -> tokenizer + token files, skipping what is up to date."""

from __future__ import annotations

import argparse

from cs336_basics.commands import (
    add_special_token_options,
    chosen_special_tokens,
    existing_dir,
    existing_path,
    positive_int,
)


def register(subparsers, parents) -> None:
    from cs336_basics.config import ModelConfig

    parser = subparsers.add_parser(
        "prepare", parents=parents, help="train the tokenizer and tokenize a dataset directory",
        description="For DIR holding train.txt/valid.txt (or the published TinyStories/OWT names): train a BPE "
                    "tokenizer on the training text into DIR/tokenizer, tokenize both splits into DIR/train.npy and "
                    "DIR/valid.npy (with manifests), and check the result. Up-to-date outputs are skipped; outputs "
                    "whose inputs changed are rebuilt.")
    parser.add_argument("--data", required=True, type=existing_dir, metavar="DIR", help="dataset directory")
    parser.add_argument("--vocab-size", type=positive_int, default=10000, metavar="N",
                        help="vocabulary size including the 256 bytes and special tokens (default 10000)")
    add_special_token_options(parser)
    parser.add_argument("--context-length", type=positive_int, default=ModelConfig.context_length, metavar="N",
                        help="context length of the model to train: the validation text must hold at least N + 1 "
                             f"tokens, one evaluation window (default {ModelConfig.context_length}, model.context_length's)")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="processes for training and tokenizing (default: all cores)")
    parser.add_argument("--tokenizer", dest="tokenizer_from", type=existing_path, default=None, metavar="PATH",
                        help="use this tokenizer instead of training one: a tokenizer directory or a folder with "
                             "GPT-2-format vocab.json + merges.txt (e.g. from Hugging Face tokenizers)")
    parser.add_argument("--force", action="store_true", help="rebuild everything even if up to date")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cs336_basics.prepare import prepare_dataset
    from cs336_basics.runtime import native as native_ext
    from cs336_basics.tokenizer.pretokenize import DEFAULT_SPECIAL_TOKENS

    specials = chosen_special_tokens(args, DEFAULT_SPECIAL_TOKENS)
    native_ext.warn_if_fallback("cs336 prepare", native_ext.TOKENIZER)
    result = prepare_dataset(args.data, args.vocab_size, specials, workers=args.workers, force=args.force,
                             tokenizer_from=args.tokenizer_from, context_length=args.context_length)
    print(f"tokenizer\t{result.tokenizer_dir}")
    print(f"special tokens\t{', '.join(result.special_tokens) or 'none'}")
    for split, path in result.token_files.items():
        n = result.checks.get(split, {}).get("num_tokens", 0)
        print(f"{split}\t{path}\t{n} tokens")
    print("built: " + (", ".join(result.built) if result.built else "nothing (all up to date)"))
    return 0
