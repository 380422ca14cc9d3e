"""Shared fixtures: where the real corpora live, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CS336_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A file from ../shared/data, or skip the test where the corpora are absent (a user's machine)."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared corpus not available: {path}")
    return path


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded shared machine OpenMP's
    spin-waiting makes them 50-100x slower: modules of tiny-model tests opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the setting is restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tinystories_train() -> Path:
    return shared_file("tinystories/tinystories_train_head.txt")


@pytest.fixture
def tinystories_valid() -> Path:
    return shared_file("tinystories/tinystories_valid_head1k.txt")


@pytest.fixture
def gpt2_dir() -> Path:
    return shared_file("gpt2/vocab.json").parent


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m cs336_basics ARGS`` in a subprocess, capturing text output."""
    full_env = {**os.environ, "CS336_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cs336_basics", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=input)
