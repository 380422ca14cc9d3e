"""The handout's definition of BPE encoding, written as plainly as possible: the oracle for every fast path.

Slow on purpose (for each pre-token, every merge in creation order scans the
whole pre-token), so tests use it on small vocabularies or short texts only.
Nothing here is shared with the implementation except the pre-tokenization
oracle of ``pretokenize.py`` (itself tested against the ``regex`` module).
"""

from __future__ import annotations

from cs336_basics.tokenizer.pretokenize import pretokenize_reference, split_on_special


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
    for segment, is_special in split_on_special(text, special_tokens):
        if is_special:
            ids.append(token_id[segment.encode("utf-8")])
            continue
        for pretoken in pretokenize_reference(segment):
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
    """A Tokenizer on the requested path; skips the test when the C encoder is not built."""
    import pytest

    from cs336_basics.tokenizer.tokenizer import Tokenizer, _native_module

    if native and _native_module() is None:
        pytest.skip("C encoder not built (python setup.py build_ext --inplace)")
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


@lru_cache(maxsize=1)
def gpt2_tiktoken(directory: str):
    """tiktoken's gpt2 encoding rebuilt from the GPT-2 files (nothing can be downloaded here)."""
    import tiktoken

    from cs336_basics.tokenizer.pretokenize import GPT2_PATTERN

    vocab, _ = gpt2_vocab_merges(directory)
    ranks = {tok: idx for idx, tok in vocab.items() if tok != b"<|endoftext|>"}
    return tiktoken.Encoding(name="gpt2_from_files", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def truncated_gpt2(directory: str, num_merges: int):
    """The first ``num_merges`` GPT-2 merges with a contiguous vocabulary: small enough for the oracle."""
    _, merges = gpt2_vocab_merges(directory)
    merges = merges[:num_merges]
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    return vocab, merges
