"""The handout's definition of BPE encoding, written as plainly as possible: the oracle for every fast path.

Slow on purpose (for each pre-token, every merge in creation order scans the
whole pre-token), so tests use it on small vocabularies or short texts only.
Nothing here is shared with the implementation: pre-tokenization and special-token
splitting come from ``tests/tokenizer/pretokenize_reference.py``.
"""

from __future__ import annotations

from tests.tokenizer.pretokenize_reference import GPT2_PATTERN, pretokenize, split_specials

EOT = "<|endoftext|>"


def reference_encode(text: str, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                     special_tokens: list[str] | None = None, errors: str = "strict") -> list[int]:
    """Encode ``text`` by the handout's loop; special tokens missing from ``vocab`` get ids after the largest."""
    vocab = dict(vocab)
    token_id: dict[bytes, int] = {}
    for idx in sorted(vocab):
        token_id.setdefault(vocab[idx], idx)
    for special in special_tokens or []:
        raw = special.encode("utf-8")
        if raw not in token_id:
            new_id = max(vocab) + 1
            vocab[new_id] = raw
            token_id[raw] = new_id
    ids: list[int] = []
    for segment, is_special in split_specials(text, special_tokens):
        if is_special:
            ids.append(token_id[segment.encode("utf-8")])
            continue
        for pretoken in pretokenize(segment):
            parts = [bytes([b]) for b in pretoken.encode("utf-8", errors)]
            for left, right in merges:
                merged, i = [], 0
                while i < len(parts):
                    if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                        merged.append(left + right)
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            ids.extend(token_id[p] for p in parts)
    return ids


# ----------------------------------------------------------------------------- shared test helpers
import os  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from functools import lru_cache  # noqa: E402


@contextmanager
def native_disabled(disabled: bool = True):
    """Build tokenizers with (disabled=False) or without the C encoder."""
    old = os.environ.get("CS336_NO_NATIVE")
    if disabled:
        os.environ["CS336_NO_NATIVE"] = "1"
    else:
        os.environ.pop("CS336_NO_NATIVE", None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CS336_NO_NATIVE", None)
        else:
            os.environ["CS336_NO_NATIVE"] = old


def make_tokenizer(vocab, merges, specials=None, *, native: bool):
    """A Tokenizer on the requested path (the C path needs the extension: see ``require_native``)."""
    from cs336_basics.tokenizer.tokenizer import Tokenizer
    from tests.conftest import require_native

    if native:
        require_native("_encode_native")
    with native_disabled(not native):
        tok = Tokenizer(vocab, merges, specials)
    assert tok.uses_native == native
    return tok


@lru_cache(maxsize=1)
def gpt2_vocab_merges(directory: str):
    from cs336_basics.tokenizer.gpt2_format import load_vocab_merges

    return load_vocab_merges(f"{directory}/vocab.json", f"{directory}/merges.txt")


_GPT2_CACHE: dict = {}


def gpt2_tokenizer(directory, native: bool, specials=("<|endoftext|>",)):
    key = (str(directory), native, tuple(specials))
    if key not in _GPT2_CACHE:
        vocab, merges = gpt2_vocab_merges(str(directory))
        _GPT2_CACHE[key] = make_tokenizer(vocab, merges, list(specials), native=native)
    return _GPT2_CACHE[key]


def gpt2_byte_decoder() -> dict[str, int]:
    """OpenAI's ``bytes_to_unicode`` (GPT-2 ``encoder.py``), inverted: printable character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


@lru_cache(maxsize=1)
def gpt2_tiktoken(directory: str):
    """tiktoken's gpt2 encoding rebuilt from OpenAI's ``vocab.json`` (nothing can be downloaded here).

    The file is read here, with OpenAI's byte map, not with the package's loader, so a loader bug
    cannot hide in both sides of a comparison.
    """
    import json

    import tiktoken

    decoder = gpt2_byte_decoder()
    with open(f"{directory}/vocab.json", encoding="utf-8") as fh:
        encoder = json.load(fh)
    ranks = {bytes(decoder[ch] for ch in token): idx for token, idx in encoder.items() if token != EOT}
    return tiktoken.Encoding(name="gpt2_from_files", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: encoder[EOT]})


def truncated_gpt2(directory: str, num_merges: int):
    """The first ``num_merges`` GPT-2 merges with a contiguous vocabulary: small enough for the oracle."""
    _, merges = gpt2_vocab_merges(directory)
    merges = merges[:num_merges]
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    return vocab, merges
