"""The skip policy (tests/skip_policy.py): under CI=1 only a capability marker may skip a test."""

from __future__ import annotations

import pytest
import torch  # noqa: F401  (imported before pytester snapshots sys.modules: torch cannot be imported twice)

from tests.skip_policy import ci_mode

CONFTEST = "from tests.skip_policy import *  # noqa: F401,F403\n"

TESTS = """
import pytest

def test_passes():
    assert True

def test_skips_inside():
    pytest.skip("no reason that CI accepts")

@pytest.mark.skipif(True, reason="a condition")
def test_skipif():
    pass

def test_importorskip():
    pytest.importorskip("a_package_that_is_not_installed_anywhere")

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert False

@pytest.mark.cuda
def test_needs_cuda():
    import torch
    assert torch.cuda.is_available()
"""

CUDA_MARKED_SKIP = """
import pytest

@pytest.mark.cuda
def test_cuda_marked_but_skipped_for_another_reason():
    pytest.skip("not the capability")
"""

MODULE_SKIP = """
import pytest
pytest.importorskip("a_package_that_is_not_installed_anywhere")

def test_never_collected():
    pass
"""


def _run(pytester, monkeypatch, ci: str | None, *files: str, cuda: bool = False):
    """Run pytest in-process on ``files`` with the policy's hooks, ``CI`` as given and CUDA present or not."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the installed plugins only cost time here
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    pytester.makeconftest(CONFTEST)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA", *files)


@pytest.fixture
def sample_files(pytester):
    return [str(pytester.makepyfile(test_sample=TESTS)), str(pytester.makepyfile(test_module_skip=MODULE_SKIP))]


def test_without_ci_every_skip_is_a_skip(pytester, monkeypatch, sample_files):
    result = _run(pytester, monkeypatch, None, *sample_files)
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)  # the skipped module counts as one
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *skip_policy.py*: missing capability: no CUDA device"])
    assert result.ret == pytest.ExitCode.OK


def test_under_ci_only_the_capability_marker_may_skip(pytester, monkeypatch, sample_files):
    result = _run(pytester, monkeypatch, "1", sample_files[0])
    # a skipif marker skips in the setup phase, so its failure is reported as an error
    result.assert_outcomes(passed=1, skipped=1, failed=2, errors=1, xfailed=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *skip_policy.py*: missing capability: no CUDA device"])
    for outcome, name in (("FAILED", "test_skips_inside"), ("ERROR", "test_skipif"), ("FAILED", "test_importorskip")):
        result.stdout.fnmatch_lines([f"{outcome} *::{name} *"])
    result.stdout.fnmatch_lines(["*::test_skips_inside was skipped under CI (*no reason that CI accepts*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_under_ci_a_module_skipped_at_import_fails_its_collection(pytester, monkeypatch, sample_files):
    result = _run(pytester, monkeypatch, "1", sample_files[1])
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["ERROR *test_module_skip.py - test_module_skip.py was skipped under CI*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_with_cuda_present_marked_tests_run_and_other_skips_still_fail(pytester, monkeypatch, sample_files):
    other = str(pytester.makepyfile(test_cuda_skip=CUDA_MARKED_SKIP))
    result = _run(pytester, monkeypatch, "1", "-k", "cuda", sample_files[0], other, cuda=True)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["PASSED *::test_needs_cuda", "FAILED *::test_cuda_marked_but_skipped_for_another_reason *"])


def test_ci_mode_reads_the_environment(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("0", False), ("", False)]:
        monkeypatch.setenv("CI", value)
        assert ci_mode() is expected
    monkeypatch.delenv("CI")
    assert ci_mode() is False
