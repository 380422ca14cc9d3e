"""Worker pools and SIGINT while they start: Ctrl-C stops the pool, an ignored SIGINT stays ignored.

The SIGINT is sent from inside the pool's construction (the workers are being forked), so these tests do not
depend on timing; each sets the SIGINT disposition it needs itself, since a test run started as a background
job of a shell inherits SIGINT ignored.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from cs336_basics.tokenizer import workers


@pytest.fixture
def sigint_while_starting(monkeypatch):
    """Pools built by ``worker_pool`` receive a SIGINT while they start, as a Ctrl-C pressed at that moment."""
    real = multiprocessing.get_context

    class Context:
        def __init__(self, method: str) -> None:
            self.real = real(method)

        def Pool(self, *args, **kwargs):  # noqa: N802 - the name multiprocessing gives it
            os.kill(os.getpid(), signal.SIGINT)
            return self.real.Pool(*args, **kwargs)

    monkeypatch.setattr(workers.multiprocessing, "get_context", Context)


@pytest.fixture
def sigint_disposition():
    """Restores the test process's SIGINT disposition after a test that sets its own."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_while_the_pool_starts_stops_it(sigint_while_starting, sigint_disposition):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    children_before = set(multiprocessing.active_children())
    with pytest.raises(KeyboardInterrupt):
        with workers.worker_pool(1) as pool:
            pytest.fail(f"the block ran after the Ctrl-C: {pool}")
    assert set(multiprocessing.active_children()) <= children_before  # every worker joined
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored_while_the_pool_starts(sigint_while_starting, sigint_disposition):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with workers.worker_pool(1) as pool:
            assert pool.map(abs, [-1, -2]) == [1, 2]
    except KeyboardInterrupt:  # a failure of this test, not the end of the whole pytest run
        pytest.fail("a SIGINT ignored by the launcher stopped the pool")
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
