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


def load_vocab_merges(vocab_path: str | Path, merges_path: str | Path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Read GPT-2 format files (ours, OpenAI's, or Hugging Face's) back into bytes."""
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}")
    try:
        raw = json.loads(vocab_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{vocab_path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{vocab_path} must map token strings to ids")
    vocab = {int(idx): str_to_token(tok, str(vocab_path)) for tok, idx in raw.items()}
    merges: list[tuple[bytes, bytes]] = []
    with open(merges_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line or (lineno == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise UserError(f"{merges_path}:{lineno}: expected two tokens separated by one space")
            merges.append((str_to_token(parts[0], str(merges_path)), str_to_token(parts[1], str(merges_path))))
    return vocab, merges
