"""GPT-2's on-disk tokenizer format: ``vocab.json`` + ``merges.txt`` with the byte-to-unicode map.

Tokens are byte strings, but JSON and text files want printable text, so GPT-2
maps each of the 256 byte values to a printable unicode character: bytes that
are already printable Latin-1 map to themselves, the other 68 (control
characters, space, DEL, NBSP, soft hyphen) are shifted to U+0100 and up. That
is why a trained vocabulary "looks like unicode" (space shows as ``Ġ``, newline
as ``Ċ``) although every token is a byte string. Hugging Face ``tokenizers``
and OpenAI's files use the same map, so our files load there and theirs here.

Reference: Radford et al. 2019 (GPT-2), the ``bytes_to_unicode`` table of its encoder.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from cs336_basics.errors import UserError

MAX_TOKEN_ID = 1 << 32
"""One past the largest token id: token files store ids as uint32 at most (uint16 when they fit)."""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 map from byte value (0-255) to a printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {ch: b for b, ch in bytes_to_unicode().items()}


def token_to_str(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def str_to_token(text: str, where: str = "") -> bytes:
    table = unicode_to_bytes()
    try:
        return bytes(table[ch] for ch in text)
    except KeyError as exc:
        raise UserError(f"{where or 'tokenizer file'}: {text!r} is not in GPT-2 byte-to-unicode form") from exc


def save_vocab_merges(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], vocab_path: str | Path,
                      merges_path: str | Path) -> None:
    """Write ``vocab.json`` ({token string: id}) and ``merges.txt`` (``#version: 0.2`` then one merge per line)."""
    encoded = {token_to_str(tok): idx for idx, tok in sorted(vocab.items())}
    if len(encoded) != len(vocab):
        raise UserError("vocabulary has duplicate tokens; cannot save it in GPT-2 format")
    Path(vocab_path).write_text(json.dumps(encoded, ensure_ascii=False, indent=0), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges]
    Path(merges_path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    """The 1-based line of the first occurrence of ``needle`` in ``text`` (1 when absent)."""
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _read_text(path: Path) -> str:
    """A tokenizer file's text; not UTF-8 is a UserError naming the file and the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); the file is damaged, "
                        "restore or retrain the tokenizer") from exc


def load_vocab(vocab_path: Path) -> dict[int, bytes]:
    """``vocab.json`` ({token string: id}) as {id: token bytes}; every malformed entry is a UserError with its line."""
    text = _read_text(vocab_path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{vocab_path}:{exc.lineno}: not valid JSON ({exc.msg}); restore or retrain the tokenizer") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{vocab_path} holds a JSON {type(raw).__name__}; it must map token strings to integer ids")
    vocab: dict[int, bytes] = {}
    for tok, idx in raw.items():
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            problem = f"the id of {tok!r} is {json.dumps(idx)}, not a non-negative integer"
        elif idx >= MAX_TOKEN_ID:
            problem = (f"the id of {tok!r} is {idx}, beyond the largest id a token file can hold "
                       f"({MAX_TOKEN_ID - 1}, uint32)")
        elif idx in vocab:
            problem = f"id {idx} is given to two tokens"
        elif not all(ch in unicode_to_bytes() for ch in tok):
            problem = f"{tok!r} is not in GPT-2 byte-to-unicode form"
        else:
            vocab[idx] = str_to_token(tok)
            continue
        line = _line_of(text, json.dumps(tok, ensure_ascii=False))
        raise UserError(f"{vocab_path}:{line}: {problem}; restore or retrain the tokenizer")
    return vocab


def load_merges(merges_path: Path) -> list[tuple[bytes, bytes]]:
    """``merges.txt`` (an optional ``#version`` line, then ``LEFT RIGHT`` per line) as byte pairs."""
    merges: list[tuple[bytes, bytes]] = []
    for lineno, line in enumerate(_read_text(merges_path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        where = f"{merges_path}:{lineno}"
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"{where}: expected two tokens separated by one space, got {line[:60]!r}")
        merges.append((str_to_token(parts[0], where), str_to_token(parts[1], where)))
    return merges


def load_vocab_merges(vocab_path: str | Path, merges_path: str | Path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Read GPT-2 format files (ours, OpenAI's, or Hugging Face's) back into bytes."""
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}")
    return load_vocab(vocab_path), load_merges(merges_path)
