"""Fixtures shared by the tests/test_evaluation*.py modules (imported by name into each module)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny matmuls on a shared 2-core machine: a second OpenMP thread only adds spin-waiting (100x slower
    under load), so these tests use one thread and give the setting back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
