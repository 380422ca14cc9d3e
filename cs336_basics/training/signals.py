"""Graceful stop on SIGINT/SIGTERM: finish the current step, save, exit with a documented code.

The first SIGINT or SIGTERM only sets a flag; the training loop checks it after
each optimizer step, writes a checkpoint and returns with
``stop_reason`` ``sigint`` or ``sigterm`` (:attr:`StopRequest.reason`). ``cs336 train``
then exits with 128 + the signal number, the shell convention
(:class:`~cs336_basics.errors.ExitCode`): **130** for SIGINT (Ctrl-C), **143** for
SIGTERM (what schedulers such as Slurm send before killing a job). A second signal
aborts at once (``KeyboardInterrupt``, exit 130, or ``SystemExit(143)``)
without a checkpoint; the last one written stays valid because saves are atomic.
While a checkpoint is being written (:meth:`StopRequest.deferred`) a second
signal is held until the save is complete, so an impatient double Ctrl-C still
leaves the checkpoint it was waiting for, and exits 130.

Handlers can only be installed from the main thread; elsewhere (a sweep
running ``train`` in a worker thread) the guard is inert and the host process's
handling applies.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType

from cs336_basics.errors import ExitCode
from cs336_basics.runs.metrics import StopReason

EXIT_CODES = {signal.SIGINT: ExitCode.SIGINT, signal.SIGTERM: ExitCode.SIGTERM}
"""The signals handled, and the exit status of a run each one stops."""


class StopRequest:
    """Context manager that turns the first SIGINT/SIGTERM into a flag and the second into an immediate abort."""

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.announce = announce
        self._previous: dict[int, object] = {}
        self._deferring = 0
        self._pending_abort: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signum] if self.signum is not None else ExitCode.OK

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def reason(self) -> StopReason:
        """The stop reason of the signal seen; SIGTERM when this process saw none (another rank did)."""
        return StopReason.SIGINT if self.signum == signal.SIGINT else StopReason.SIGTERM

    @staticmethod
    def _abort(signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(EXIT_CODES[signum])

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: abort now, or right after the save in progress
            if self._deferring:
                self._pending_abort = signum
                return
            self._abort(signum)
        self.signum = signum
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: finishing this step and saving a checkpoint "
                  "(send it again to abort at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def deferred(self):
        """Hold a second signal until the block (a checkpoint write) is done, then abort."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._pending_abort is not None:
            signum, self._pending_abort = self._pending_abort, None
            self._abort(signum)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
