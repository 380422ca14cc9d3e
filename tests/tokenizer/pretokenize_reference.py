"""The oracles' own pre-tokenization, written independently of the package (test-only).

GPT-2's pattern, copied from OpenAI's ``encoder.py`` (``(?:...)`` groups instead of
capturing ones) and run with the ``regex`` module, and special-token splitting by
one alternation of the escaped tokens, longest first, so that a special token that
extends another (``<|endoftext|><|endoftext|>``) wins. Nothing here imports
``cs336_basics``, so a bug in the package's pre-tokenizer cannot hide in the oracles.
"""

from __future__ import annotations

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def split_specials(text: str, special_tokens) -> list[tuple[str, bool]]:
    """``text`` cut into ``(piece, is_special)``, in order, empty pieces dropped."""
    specials = sorted(set(special_tokens or ()), key=len, reverse=True)
    if not specials:
        return [(text, False)] if text else []
    pieces = regex.split("(" + "|".join(regex.escape(s) for s in specials) + ")", text)
    # split with one capturing group alternates: text, special, text, special, ..., text
    return [(piece, i % 2 == 1) for i, piece in enumerate(pieces) if piece]


def pretokenize(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """The pre-tokens of one special-free piece of text."""
    return regex.findall(pattern, text)


def pretokenize_bytes(data: bytes, special_tokens=None, pattern: str = GPT2_PATTERN) -> list[bytes]:
    """Pre-tokens of raw bytes with the special tokens removed; each undecodable byte is one "other"
    character (``surrogateescape``), and every pre-token is returned as the exact bytes it covers."""
    text = data.decode("utf-8", "surrogateescape")
    return [token.encode("utf-8", "surrogateescape")
            for piece, is_special in split_specials(text, special_tokens) if not is_special
            for token in pretokenize(piece, pattern)]
