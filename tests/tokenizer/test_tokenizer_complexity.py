"""Pathological inputs run in linear time: time(2n)/time(n) < 2.8 and each run under 10 s.

Timings are the process's CPU time (time spent descheduled by other programs
does not count) and the best of five runs per size, so a noisy shared machine
rarely breaks the ratio; a linear pass gives about 2 (a little more where the
larger input leaves the cache), an O(n^2) merge about 4. The results are
also checked for exactness (against tiktoken on GPT-2) so speed never hides a
wrong answer.
"""

from __future__ import annotations

import random
import time

import pytest

from cs336_basics.tokenizer.boundaries import safe_chunks
from tests.conftest import GPT2_DIR
from tests.tokenizer.encode_reference import gpt2_tiktoken, gpt2_tokenizer

EOT = "<|endoftext|>"


def timed(fn, arg, min_seconds: float = 0.25) -> float:
    """CPU seconds per call, calling repeatedly for at least ``min_seconds`` (short runs are timer noise)."""
    calls, start = 0, time.process_time()
    while True:
        fn(arg)
        calls += 1
        elapsed = time.process_time() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def assert_linear(fn, make, n: int, repeats: int = 5) -> None:
    """Best of ``repeats`` for n and 2n, interleaved so that a load spike hits both sizes alike."""
    small, large = make(n), make(2 * n)
    t1 = t2 = float("inf")
    for _ in range(repeats):
        t1 = min(t1, timed(fn, small))
        t2 = min(t2, timed(fn, large))
    assert t2 < 10, f"{t2:.1f}s for {len(large)} characters"
    assert t2 / max(t1, 1e-3) < 2.8, f"time(2n)/time(n) = {t2 / t1:.2f} ({t1:.3f}s -> {t2:.3f}s)"


def gpt2(native: bool):
    return gpt2_tokenizer(GPT2_DIR, native)


@pytest.mark.parametrize("char", [pytest.param(c, marks=[] if c == "a" else pytest.mark.slow)
                                  for c in (" ", "\n", "a", "9", "^")])
def test_one_repeated_character_native(char):
    """1 MiB of one character, then n = 2 MiB vs 2n = 4 MiB: each a single pre-token merged by the bucket merge.

    The ratio is measured above 1 MiB because the merge's working set (~32 bytes per character)
    crosses the last-level cache between 1 and 2 MiB: on a quiet machine that one step costs a
    constant factor of up to ~3x, while every doubling below and above it costs ~2x (measured
    0.25 -> 8 MiB). Linearity is about the doublings, not about the cache size.
    """
    tok = gpt2(True)
    one_mib = timed(tok.encode, char * (1 << 20))
    assert one_mib < 10
    assert_linear(tok.encode, lambda n: char * n, 2 << 20, repeats=5)
    assert tok.encode(char * 5000) == gpt2_tiktoken(str(GPT2_DIR)).encode(char * 5000)


@pytest.mark.slow
@pytest.mark.parametrize("char", [" ", "a", "9"])
def test_one_repeated_character_python(char):
    tok = gpt2(False)
    assert_linear(tok.encode, lambda n: char * n, 1 << 16)


def _no_space_line(n: int) -> str:
    rng = random.Random(n)
    pieces = ["abc", "XYZ", "123", "!!", "é", "中文", "😀", "'s", "_", "-", "http://", ".com/"]
    out, size = [], 0
    while size < n:
        p = rng.choice(pieces)
        out.append(p)
        size += len(p)
    return "".join(out)


@pytest.mark.slow
def test_10mb_line_without_spaces_native():
    tok = gpt2(True)
    assert_linear(tok.encode, _no_space_line, 5 << 20)


@pytest.mark.slow
def test_long_digit_runs_native():
    tok = gpt2(True)
    # n = 2 MiB of digits (past the cache step described above) vs 4 MiB
    assert_linear(tok.encode, lambda n: ("1234567890" * (n // 20) + " x ") * 2, 2 << 20)


def test_streaming_a_run_without_any_safe_cut_is_linear():
    """The chunker searches only new text for a cut, so an uncuttable megabytes-long run is not quadratic."""
    def stream(text):
        pieces = (text[i:i + 4096] for i in range(0, len(text), 4096))
        return sum(len(c) for c in safe_chunks(pieces, [EOT], min_chunk=4096))

    assert_linear(stream, lambda n: "a" * n, 1 << 21, repeats=5)
    assert stream("a" * 100_000) == 100_000
