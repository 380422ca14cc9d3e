"""Which skips a test run may contain: pytest hooks, imported by name into ``tests/conftest.py``.

A test may be skipped only for a missing capability that CI cannot have, and only
through that capability's marker: ``@pytest.mark.cuda`` tests are skipped where
no CUDA device is present, ``@pytest.mark.linux`` ones (``/proc``, ``RLIMIT_AS``,
glibc) off Linux. Under ``CI=1`` (or ``CI=true``) every other
skip -- ``skipif``, ``pytest.skip()``, ``pytest.importorskip()``, a skipped
module -- is reported as a failure, so a missing package or an unbuilt C
extension cannot pass as a green run. ``xfail`` is not a skip and is left alone.
"""

from __future__ import annotations

import os
import sys

import pytest

# marker name -> (check that the capability is present, the skip reason when it is not)
CAPABILITIES = {
    "cuda": (lambda: __import__("torch").cuda.is_available(), "missing capability: no CUDA device"),
    "linux": (lambda: sys.platform.startswith("linux"), "missing capability: not Linux (/proc, RLIMIT_AS, glibc)"),
}


def ci_mode() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config):
    for name in CAPABILITIES:
        config.addinivalue_line("markers", f"{name}: needs {name}; skipped where it is absent (the only allowed skip)")


def pytest_runtest_setup(item):
    for name, (present, reason) in CAPABILITIES.items():
        if item.get_closest_marker(name) is not None and not present():
            pytest.skip(reason)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _allowed(item, reason: str) -> bool:
    """A skip raised by :func:`pytest_runtest_setup` for a marker the test carries."""
    return any(item.get_closest_marker(name) is not None and reason.endswith(why)
               for name, (_, why) in CAPABILITIES.items())


def _as_failure(report, what: str) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (f"{what} was skipped under CI ({reason}); only a capability marker "
                       f"({', '.join('@pytest.mark.' + n for n in CAPABILITIES)}) may skip a test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and ci_mode()
            and not _allowed(item, _skip_reason(report))):
        _as_failure(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and ci_mode():
        _as_failure(report, collector.nodeid or "a module")
