"""Shared fixtures: the files of ``tests/fixtures/``, a CLI runner, and the skip policy's hooks."""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from tests.skip_policy import (pytest_configure, pytest_make_collect_report,  # noqa: F401  (hooks, found by name)
                               pytest_runtest_makereport, pytest_runtest_setup)

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
GPT2_DIR = FIXTURES / "gpt2"
SAMPLE_DIR = REPO / "cs336_basics" / "sample"
"""The TinyStories sample ships inside the package (the quickstart's offline data); tests read it there."""
TINYSTORIES_TRAIN = "sample/tinystories_train.txt.xz"
TINYSTORIES_VALID = "sample/tinystories_valid.txt.xz"
MULTILINGUAL = "multilingual.txt"
EOT = "<|endoftext|>"


@lru_cache(maxsize=None)
def fixture_bytes(name: str) -> bytes:
    """The bytes of ``tests/fixtures/NAME``, or of the package's sample for ``sample/NAME`` (``.xz`` files
    decompressed); a missing file is an error."""
    path = SAMPLE_DIR / name.removeprefix("sample/") if name.startswith("sample/") else FIXTURES / name
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def fixture_text(name: str) -> str:
    """A fixture as text, line endings untouched (``\\r\\n`` and lone ``\\r`` stay as they are)."""
    return fixture_bytes(name).decode("utf-8")


@lru_cache(maxsize=1)
def project_documents() -> tuple[bytes, ...]:
    """This repository's own text: its source code and documentation, one document per file (sorted by path).

    Real code and Markdown (indentation, ``----`` rules, ``....``, escapes, docstrings in several
    scripts) to put beside the prose fixtures; tests use it for properties that hold for any text.
    """
    suffixes = {".py", ".c", ".h", ".md", ".toml"}
    paths = [p for p in REPO.glob("*") if p.suffix in suffixes and p.is_file()]
    for folder in ("cs336_basics", "benchmarks", "docs", "tests"):
        paths += [p for p in (REPO / folder).rglob("*") if p.suffix in suffixes and p.is_file()
                  and "fixtures" not in p.relative_to(REPO).parts]
    paths.sort()
    return tuple(p.read_bytes() for p in paths)


def mixed_corpus(nbytes: int | None = None) -> bytes:
    """The multilingual/markup/code fixture, then this repository's own text, then TinyStories validation
    stories, joined by ``<|endoftext|>`` and cut at the first document end after ``nbytes`` (all if None)."""
    docs = [fixture_bytes(MULTILINGUAL), *project_documents(), fixture_bytes(TINYSTORIES_VALID)]
    data = EOT.encode().join(docs)
    if nbytes is None or nbytes >= len(data):
        return data
    cut = data.find(EOT.encode(), nbytes)
    return data[:cut if cut != -1 else nbytes]


def unpack_fixture(name: str, directory: Path) -> Path:
    """Write fixture ``name`` (decompressed) into ``directory``; return the new file's path."""
    path = directory / Path(name).name.removesuffix(".xz")
    path.write_bytes(fixture_bytes(name))
    return path


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Decisions the toolkit caches per machine (the measured autocast dtype) go to a directory of this test
    session, never the user's ~/.cache; subprocesses inherit it through the environment."""
    before = os.environ.get("CS336_CACHE_DIR")
    os.environ["CS336_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("CS336_CACHE_DIR", None)
    else:
        os.environ["CS336_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def tinystories_train(tmp_path_factory) -> Path:
    """Real TinyStories: the first 2 MiB of the train split, 2,316 stories (a plain file)."""
    return unpack_fixture(TINYSTORIES_TRAIN, tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="session")
def tinystories_valid(tmp_path_factory) -> Path:
    """Real TinyStories: the first 1,000 stories of the validation split (a plain file)."""
    return unpack_fixture(TINYSTORIES_VALID, tmp_path_factory.mktemp("fixtures"))


@pytest.fixture
def gpt2_dir() -> Path:
    return GPT2_DIR


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


def require_native(module: str) -> None:
    """Skip a test of the C path when extension ``module`` (e.g. ``_encode_native``) is not built.

    This skip is not a capability marker: under ``CI=1`` it fails the test, since CI builds the
    extensions at install.
    """
    import importlib

    from cs336_basics.runtime import native

    if os.environ.get("CS336_NO_NATIVE"):
        pytest.skip(f"CS336_NO_NATIVE is set: the C extension {module} is disabled")
    try:
        importlib.import_module(native.qualified_name(module))
    except ImportError as exc:
        pytest.skip(f"C extension {module} not built ({exc}); pip install -e . builds it")


PATHS = [pytest.param(True, id="native"), pytest.param(False, id="python")]
"""Parametrisation of ``native`` for tests that run on the C path and on the pure-Python path."""


def native_path(native: bool, *modules: str) -> bool:
    """``native``, after :func:`require_native` for each C extension ``modules`` the C path needs."""
    if native:
        for module in modules:
            require_native(module)
    return native


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m cs336_basics ARGS`` in a subprocess, capturing text output."""
    full_env = {**os.environ, "CS336_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cs336_basics", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=input)
