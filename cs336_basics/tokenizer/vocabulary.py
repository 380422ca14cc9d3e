"""The checks that a vocabulary agrees with what uses it: one function per fact, called wherever it is checked.

- :func:`check_vocab_size_trainable`: a byte-level BPE vocabulary holds the 256 byte tokens and the
  special tokens, so a requested size below ``256 + len(special_tokens)`` cannot be trained
  (``cs336 tokenizer train``, ``cs336 prepare``).
- :func:`check_vocab_agreement`: a model of ``model_vocab`` embedding rows can use a tokenizer of
  ``tokenizer_vocab`` ids only when every id has a row; a training config must name exactly the
  tokenizer's size (a larger model trains rows no token ever uses). Used by the trainer (the config
  against its dataset's tokenizer), generation (the model against the tokenizer it is given) and the
  token files (the tokenizer a file was made with against the model reading it).
- :func:`check_ids_in_vocabulary`: token ids (their smallest and largest) lie in ``0 .. vocab_size - 1``,
  else an embedding lookup fails (token files as they are read and checked, batches being evaluated).

Each raises :class:`~cs336_basics.errors.UserError` (exit code 2) with one line naming what disagrees and
the fix; the callers say where the ids or the vocabulary come from and what to do about it.
"""

from __future__ import annotations

from cs336_basics.errors import UserError

BYTE_TOKENS = 256
"""Tokens every byte-level BPE vocabulary starts with: one per byte value (ids 0-255)."""


def check_vocab_size_trainable(vocab_size: int, special_tokens: list[str] | tuple[str, ...]) -> None:
    """UserError when ``vocab_size`` cannot hold the 256 byte tokens and the special tokens."""
    minimum = BYTE_TOKENS + len(special_tokens)
    if vocab_size < minimum:
        raise UserError(f"vocab_size {vocab_size} is smaller than 256 bytes + {len(special_tokens)} special tokens, "
                        f"so it must be at least {minimum}; use --vocab-size {minimum} or more")


def check_vocab_agreement(model_vocab: int, tokenizer_vocab: int, *, model: str, tokenizer: str, fix: str,
                          exact: bool = False) -> None:
    """UserError when a tokenizer of ``tokenizer_vocab`` ids has ids a model of ``model_vocab`` rows cannot embed
    (``exact``: whenever the two sizes differ). ``model`` and ``tokenizer`` name the two sides in the message
    ("model.vocab_size", "the tokenizer in DIR"); ``fix`` says what to do."""
    if tokenizer_vocab > model_vocab or (exact and tokenizer_vocab != model_vocab):
        raise UserError(f"{model} is {model_vocab:,} but {tokenizer} has {tokenizer_vocab:,} tokens; {fix}")


def check_ids_in_vocabulary(ids: tuple[int, int] | None, vocab_size: int, *, where: str, fix: str,
                            vocabulary: str = "the vocabulary in use") -> None:
    """UserError when token ids, given as (smallest, largest), leave ``0 .. vocab_size - 1``; None (no ids) passes.
    ``where`` names what holds the ids (a file), ``vocabulary`` whose vocabulary it is, ``fix`` the remedy."""
    if ids is None:
        return
    lo, hi = ids
    if lo < 0:
        raise UserError(f"{where} contains the negative token id {lo}; ids must be 0..{vocab_size - 1}, {fix}")
    if hi >= vocab_size:
        raise UserError(f"{where} contains token id {hi}, outside {vocabulary} ({vocab_size} ids, "
                        f"0..{vocab_size - 1}); {fix}")
