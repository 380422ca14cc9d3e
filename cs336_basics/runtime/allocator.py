"""Allocator tuning for long CPU loops: keep freed memory instead of handing it back to the kernel.

glibc's ``malloc`` serves every buffer above a (dynamic, at most 32 MB) threshold
with a fresh ``mmap`` and returns large frees to the kernel at once. A loop that
allocates and frees the same big buffers again and again (a training step's
activations, a tokenizer worker's per-chunk arrays) then page-faults all of that
memory in again on every iteration: at the assignment's training shape about
160,000 faults and 5-10 % of a step. Raising the mmap threshold and the trim
threshold keeps freed memory in the heap for the next iteration; the process
stays at its peak memory, which such a loop reaches every iteration anyway.

PyTorch's CPU performance guide gets the same effect by swapping in jemalloc or
tcmalloc with ``LD_PRELOAD``; this needs nothing installed. A no-op (returning
False) on other platforms and C libraries.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h


def keep_freed_cpu_memory() -> bool:
    """Make glibc serve large buffers from its heap and keep freed memory; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    # thresholds are C ints; 1 GiB keeps every activation on the heap, 2 GiB - 1 of free heap is never trimmed
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
