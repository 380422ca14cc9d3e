"""Worker processes for tokenizing and counting: how many, and how they stop with their parent.

- ``clamp_workers`` turns a requested count into one the machine can run: at most
  the CPUs this process may use (``os.sched_getaffinity``; a container or
  ``taskset`` limits it below ``os.cpu_count()``), saying so in one line when
  it lowers the request. More processes than CPUs only add start-up time and
  memory; thousands of them exhaust the process table.
- ``worker_pool`` is a ``multiprocessing`` pool whose workers leave SIGINT to the
  parent (Ctrl-C reaches the whole process group; the parent then stops every
  worker at once instead of each worker dying on its own and being replaced)
  and die with the parent: on Linux each worker asks the kernel for SIGKILL
  when its parent exits (``prctl(PR_SET_PDEATHSIG)``), so a parent killed by
  SIGKILL leaves no worker behind waiting forever on the task queue. Leaving
  the ``with`` block normally closes and joins the pool; an exception
  (KeyboardInterrupt included) terminates it and waits for the workers to exit.
  A process started with SIGINT ignored (a background job of a non-interactive
  shell: the shell's way of keeping Ctrl-C from its background jobs) keeps
  ignoring it while the pool starts too, as Python does everywhere else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cs336_basics.progress import info

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def clamp_workers(requested: int | None, option: str = "--workers") -> int:
    """``requested`` worker processes, at most :func:`usable_cpus` (None: all of them), at least 1."""
    available = usable_cpus()
    if requested is None:
        return available
    if requested > available:
        info(f"{option} {requested} is more than the {available} CPU(s) available here; using {available}")
        return available
    return max(1, int(requested))


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux); exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no usable libc: the pool's own shutdown still applies
        return
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os._exit(1)


def _start_worker(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def worker_pool(processes: int, initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> Iterator[Any]:
    """A process pool (fork where available) whose workers stop with the parent; see the module docstring."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    # While the pool starts, Ctrl-C is only noted: raised in the middle of a fork it would be swallowed by
    # a fork hook ("Exception ignored") or kill a worker that is not ignoring SIGINT yet. The parent acts on
    # it inside the try below, where it stops the pool. An ignored SIGINT stays ignored.
    pressed: list[int] = []
    noting = (threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum)) if noting else None
    try:
        pool = multiprocessing.get_context(method).Pool(processes, initializer=_start_worker,
                                                        initargs=(os.getpid(), initializer, initargs))
    finally:
        if noting:  # None: a handler installed outside Python, whose place Python's default takes
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    try:
        if pressed:
            raise KeyboardInterrupt
        yield pool
    except BaseException:
        pool.terminate()  # Ctrl-C or an error: stop every worker now, do not drain the queue
        pool.join()
        raise
    pool.close()
    pool.join()
