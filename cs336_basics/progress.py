"""Progress bars and log lines that every long-running command shares.

One wrapper around ``tqdm`` so all commands look alike: rate and ETA on a TTY,
nothing when stderr is not a terminal or when ``--quiet`` is given, and the
same numbers available to the caller for logs (``bar.format_dict``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import TypeVar

if "ipykernel" in sys.modules:  # Jupyter / Colab: tqdm.auto picks the notebook widget
    from tqdm.auto import tqdm
else:  # a terminal: the plain bar, without tqdm.auto's asyncio import (a cost in every command's start-up)
    from tqdm.std import tqdm

T = TypeVar("T")

_QUIET = False

log = logging.getLogger("cs336_basics")


def set_quiet(quiet: bool) -> None:
    """Disable every progress bar of this process (``--quiet``)."""
    global _QUIET
    _QUIET = quiet


def bars_enabled() -> bool:
    """Bars only where a person watches: a TTY on stderr, not --quiet, not CS336_NO_PROGRESS."""
    if _QUIET or os.environ.get("CS336_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "it", unit_scale: bool = False, enabled: bool | None = None, leave: bool = False,
             **kwargs) -> tqdm:
    """A tqdm bar (rate + ETA) that is silent when bars are disabled; ``leave`` keeps its last state on screen."""
    disable = not (bars_enabled() if enabled is None else enabled)
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=disable,
                dynamic_ncols=True, leave=leave, file=sys.stderr, **kwargs)


def byte_progress(total_bytes: int | None, desc: str, enabled: bool | None = None) -> tqdm:
    """A bar counting bytes, shown as MB/s with an ETA."""
    return progress(total=total_bytes, desc=desc, unit="B", unit_scale=True, enabled=enabled, unit_divisor=1024)


class ByteBar(tqdm):
    """The byte bar as a class, for libraries that take one (huggingface_hub's ``tqdm_class``): shown where
    :func:`bars_enabled` says, in the same look as :func:`byte_progress`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.pop("name", None)  # huggingface_hub's own keyword, for its tqdm subclass only
        kwargs.setdefault("disable", not bars_enabled())
        super().__init__(*args, unit_divisor=1024, dynamic_ncols=True, leave=False, file=sys.stderr, **kwargs)


class SilentBar(tqdm):
    """A bar that never shows, for a library transfer whose progress the caller counts itself."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.pop("name", None)
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


class Timer:
    """Wall-clock phases for end-of-command summaries: ``with timer.phase("merge"): ...``."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    class _Phase:
        def __init__(self, timer: "Timer", name: str) -> None:
            self.timer, self.name = timer, name

        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc) -> None:
            elapsed = time.perf_counter() - self.start
            self.timer.phases[self.name] = self.timer.phases.get(self.name, 0.0) + elapsed

    def phase(self, name: str) -> "Timer._Phase":
        return Timer._Phase(self, name)

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.1f}s" for name, secs in self.phases.items())


def info(message: str) -> None:
    """A user-facing status line on stderr (suppressed by --quiet) and in the log."""
    log.info(message)
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A one-line ``warning: ...`` on stderr, shown even with --quiet (logged at INFO: the CLI's log
    handler prints WARNING records to stderr too, which would show the line twice)."""
    log.info("warning: %s", message)
    print(f"warning: {message}", file=sys.stderr, flush=True)
