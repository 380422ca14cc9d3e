"""Byte-level BPE: training (``train_bpe``), encoding (``Tokenizer``), file formats and token files."""

from cs336_basics.runtime import native

native.require_if_asked(native.TOKENIZER)  # CS336_REQUIRE_NATIVE=1: a broken C build is an import error, not a slow fallback

from cs336_basics.tokenizer.bpe_train import train_bpe  # noqa: E402
from cs336_basics.tokenizer.token_files import open_token_file, read_manifest, tokenize_file  # noqa: E402
from cs336_basics.tokenizer.tokenizer import Tokenizer  # noqa: E402

__all__ = ["Tokenizer", "open_token_file", "read_manifest", "tokenize_file", "train_bpe"]
