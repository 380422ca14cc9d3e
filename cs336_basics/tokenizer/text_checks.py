"""Warnings for input text that is probably not what the user meant to tokenize or train on.

The tokenizer reads bytes and accepts any, so UTF-16 text, a binary file or Latin-1
text tokenizes "successfully" into something useless (UTF-16 English is about one
token per byte). These checks read the first few MiB of a file and return one line
per problem that names the likely encoding and the ``iconv`` command converting it:

- a UTF-16 or UTF-32 byte-order mark;
- NUL bytes (every other byte NUL: UTF-16 without a BOM; three in four: UTF-32; else binary);
- more than ``INVALID_UTF8_LIMIT`` of the bytes not valid UTF-8 (most likely Windows-1252/Latin-1);
- ``<|endoftext|>`` in the text while it is not one of the special tokens, so BPE would
  learn merges across document boundaries.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from cs336_basics.tokenizer.pretokenize import DEFAULT_SPECIAL_TOKENS

SNIFF_BYTES = 4 << 20
INVALID_UTF8_LIMIT = 0.01
DOCUMENT_SEPARATOR = DEFAULT_SPECIAL_TOKENS[0]
# UTF-32LE's mark begins with UTF-16LE's, so the longer marks are tried first
BYTE_ORDER_MARKS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _nul_share(head: bytes, period: int, offset: int) -> float:
    """The share of NUL bytes among positions ``offset, offset + period, ...`` of ``head``."""
    column = head[offset::period]
    return column.count(0) / len(column) if column else 0.0


def _nul_layout(head: bytes) -> str | None:
    """The UTF-16/32 byte order that NULs at fixed positions suggest (ASCII text in a wide encoding)."""
    if len(head) < 16:
        return None
    share4 = [_nul_share(head, 4, i) for i in range(4)]
    if min(share4[1:]) > 0.5 and share4[0] < 0.1:
        return "UTF-32LE"
    if min(share4[:3]) > 0.5 and share4[3] < 0.1:
        return "UTF-32BE"
    even, odd = _nul_share(head, 2, 0), _nul_share(head, 2, 1)
    if odd > 0.3 and even < 0.05:
        return "UTF-16LE"
    if even > 0.3 and odd < 0.05:
        return "UTF-16BE"
    return None


def _invalid_utf8_share(head: bytes, complete: bool) -> float:
    """The share of bytes of ``head`` that are not valid UTF-8 (a character cut at the end is not counted)."""
    if not complete:
        head = head[:-3]  # the sniffed prefix may end inside a character
    if not head:
        return 0.0
    valid = len(head.decode("utf-8", "ignore").encode("utf-8"))
    return (len(head) - valid) / len(head)


def _convert(path: Path, encoding: str) -> str:
    return f"iconv -f {encoding} -t UTF-8 {path} > {path}.utf8 && mv {path}.utf8 {path}"


def encoding_warning(path: str | Path, head: bytes, complete: bool) -> str | None:
    """One line when ``head`` (the start of ``path``; ``complete`` when it is the whole file) is not UTF-8 text."""
    path = Path(path)
    where = "the whole file" if complete else f"its first {len(head) / 2**20:.0f} MiB"
    for mark, encoding in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return (f"{path} starts with a {encoding} byte-order mark: it is {encoding} text, not UTF-8, and would "
                    f"tokenize into noise; convert it with '{_convert(path, encoding)}'")
    nuls = head.count(0)
    if nuls:
        layout = _nul_layout(head)
        if layout is not None:
            return (f"{path} looks like {layout} text without a byte-order mark ({nuls:,} NUL bytes in {where}), "
                    f"not UTF-8, and would tokenize into noise; convert it with '{_convert(path, layout)}'")
        return (f"{path} contains {nuls:,} NUL bytes in {where}, so it is probably not a text file; "
                "check that it is the text you meant")
    share = _invalid_utf8_share(head, complete)
    if share > INVALID_UTF8_LIMIT:
        return (f"{path} is not valid UTF-8 in {share:.1%} of the bytes of {where}; it is probably Windows-1252 "
                f"(Latin-1) text, convert it with '{_convert(path, 'WINDOWS-1252')}'")
    return None


def separator_warning(path: str | Path, head: bytes, special_tokens: list[str]) -> str | None:
    """One line when ``head`` holds ``<|endoftext|>`` but it is not among ``special_tokens``."""
    if DOCUMENT_SEPARATOR in special_tokens or DOCUMENT_SEPARATOR.encode() not in head:
        return None
    return (f"{path} contains '{DOCUMENT_SEPARATOR}' but it is not a special token here, so BPE learns merges "
            f"across document boundaries and splits the marker into pieces; keep it one token with "
            f"--special-token '{DOCUMENT_SEPARATOR}' (the default without --no-special-tokens)")


def text_warnings(path: str | Path, special_tokens: list[str] | None = None) -> list[str]:
    """The warnings for the start of ``path``; the separator check only when ``special_tokens`` is given."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        complete = not fh.read(1)
    found = [encoding_warning(path, head, complete)]
    if special_tokens is not None:
        found.append(separator_warning(path, head, special_tokens))
    return [w for w in found if w is not None]
