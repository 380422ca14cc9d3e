"""Pre-tokenization: special-token splitting and the GPT-2 regex split, plus the data C code needs to match it.

BPE never merges across pre-token boundaries, so training and encoding both
start by (1) cutting the text at special tokens (longest first, so that
``<|endoftext|><|endoftext|>`` can be one token when it is itself special) and
(2) splitting each remaining segment with the GPT-2 pattern.

The slow path here uses the ``regex`` module and is the oracle. The fast paths
(C extensions including ``pretok.h``) classify characters with
:func:`char_class_table`, which is computed *from the regex module itself*, so
``\\p{L}``, ``\\p{N}`` and ``\\s`` mean exactly what they mean to the oracle
(Unicode version included). Invalid UTF-8 is handled the way
``bytes.decode("utf-8", "surrogateescape")`` sees it: every undecodable byte
becomes a lone surrogate U+DC80..U+DCFF, which is none of L/N/whitespace, i.e.
a one-byte "other" character; encoding back with ``surrogateescape`` restores
the exact bytes, so invalid input is kept as bytes, never dropped.

Reference: Radford et al. 2019 (GPT-2) for the pattern; CS336 Assignment 1 handout, section 2.4.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import regex

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_bytes

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Bits of char_class_table(); pretok.h uses the same values.
CLASS_LETTER = 1
CLASS_NUMBER = 2
CLASS_SPACE = 4


DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>",)
"""What ``cs336 tokenizer train`` and ``cs336 prepare`` use unless told otherwise: the document separator of
TinyStories and OpenWebText."""


def special_token_list(special_tokens: Iterable[str] | None) -> list[str]:
    """The distinct special tokens in order, checked: a string instead of a list (which would make every
    character a special token) or a non-string token is a TypeError naming the fix; an empty one a UserError."""
    if isinstance(special_tokens, (str, bytes)):
        raise TypeError(f"special_tokens must be a list of strings, got the {type(special_tokens).__name__} "
                        f"{special_tokens!r}; wrap it in a list: special_tokens=[{special_tokens!r}]")
    tokens = list(dict.fromkeys(special_tokens or ()))
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"special tokens must be strings, got {token!r} ({type(token).__name__}); "
                            + (f"decode it: {token.decode('utf-8', 'replace')!r}" if isinstance(token, bytes)
                               else "pass their text"))
        if not token:
            raise UserError("special tokens must be non-empty strings; drop the empty one")
    return tokens


@lru_cache(maxsize=8)
def compiled_pattern(pattern: str = GPT2_PATTERN) -> "regex.Pattern[str]":
    return regex.compile(pattern)


def _ordered_specials(special_tokens: Iterable[str] | None) -> list[str]:
    """Distinct special tokens, longest first (so a longer token wins over its prefix)."""
    return sorted(set(special_tokens or ()), key=lambda s: (-len(s), s))


@lru_cache(maxsize=32)
def _special_regex(specials: tuple[str, ...]) -> "regex.Pattern[str]":
    return regex.compile("|".join(regex.escape(s) for s in specials))


@lru_cache(maxsize=32)
def special_bytes_regex(specials: tuple[str, ...]) -> "regex.Pattern[bytes]":
    """The bytes twin of the special-token alternation (longest first), for streaming over raw files."""
    ordered = _ordered_specials(specials)
    return regex.compile(b"|".join(regex.escape(s.encode("utf-8")) for s in ordered))


def split_on_special(text: str, special_tokens: Iterable[str] | None) -> list[tuple[str, bool]]:
    """Cut ``text`` at special tokens: ``[(segment, is_special), ...]`` in order, empty segments dropped."""
    specials = _ordered_specials(special_tokens)
    if not specials:
        return [(text, False)] if text else []
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _special_regex(tuple(specials)).finditer(text):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def pretokenize_reference(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """The GPT-2 split of one special-free segment, with the regex module (the oracle)."""
    return compiled_pattern(pattern).findall(text)


def pretokenize_bytes(data: bytes, special_tokens: Sequence[str] | None = None,
                      pattern: str = GPT2_PATTERN) -> list[bytes]:
    """Pre-tokens of raw bytes (specials removed), each as the exact bytes it covers, invalid UTF-8 included."""
    text = data.decode("utf-8", "surrogateescape")
    out: list[bytes] = []
    for segment, is_special in split_on_special(text, special_tokens):
        if not is_special:
            out.extend(t.encode("utf-8", "surrogateescape") for t in pretokenize_reference(segment, pattern))
    return out


def _class_table_cache_path():
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "cs336_basics" / f"char_classes-regex-{regex.__version__}.bin"


def _compute_class_table() -> bytes:
    # Every code point, surrogates included (they are what surrogateescape produces).
    everything = "".join(map(chr, range(0x110000)))
    table = np.zeros(0x110000, dtype=np.uint8)
    for bit, pat in ((CLASS_LETTER, r"\p{L}+"), (CLASS_NUMBER, r"\p{N}+"), (CLASS_SPACE, r"\s+")):
        for m in regex.finditer(pat, everything):
            table[m.start():m.end()] |= bit
    return table.tobytes()


@lru_cache(maxsize=1)
def char_class_table() -> bytes:
    """0x110000 bytes, one per code point: bit 1 = ``\\p{L}``, 2 = ``\\p{N}``, 4 = ``\\s`` (as regex sees them).

    Computing it takes a few tenths of a second, so it is cached on disk per ``regex`` version (its
    Unicode tables); a missing or unwritable cache only means computing it again.
    """
    path = _class_table_cache_path()
    try:
        data = path.read_bytes()
        if len(data) == 0x110000:
            return data
    except OSError:
        pass
    data = _compute_class_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except (OSError, UserError):  # UserError: a full disk
        pass
    return data
