"""The C extensions say where they run: `cs336 doctor`, the fallback warning, CS336_REQUIRE_NATIVE."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cs336_basics.runtime import native
from tests.conftest import REPO, run_cli

# A Python prelude that makes one extension unimportable, as a failed build would.
BLOCK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "{qualified}":
            raise ImportError("undefined symbol: simulated broken build")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run_blocked(ext: str, code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # CI sets CS336_REQUIRE_NATIVE; these runs break an extension on purpose, so only `env` may set it
    inherited = {k: v for k, v in os.environ.items() if k != "CS336_REQUIRE_NATIVE"}
    full_env = {**inherited, "CS336_NO_PROGRESS": "1", **(env or {})}
    block = BLOCK.format(qualified=native.qualified_name(ext))
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=300)


def test_every_extension_is_built_here():
    """The suite runs where the package was installed with a compiler: every extension must load."""
    missing = [f"{s.name}: {s.reason}" for s in native.status() if not s.loaded]
    assert not missing, missing


def test_doctor_lists_versions_devices_features_and_extensions():
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in ("cs336_basics", "python", "torch version", "torch build", "torch devices", "cpu features",
                  "avx512_bf16", "amx_bf16", "C _bpe_count", "C _bpe_merge", "C _encode_native", "C _adamw_native",
                  "C _cross_entropy_native", "C _layers_native"):
        assert label in out, label
    assert out.count(" loaded (") == len(native.EXTENSIONS) == 6


def test_doctor_names_a_missing_extension_and_exits_1():
    proc = _run_blocked("_bpe_merge", "from cs336_basics.cli import main; raise SystemExit(main(['doctor']))")
    assert proc.returncode == 1, proc.stderr
    assert "C _bpe_merge" in proc.stdout and "MISSING: cannot be loaded" in proc.stdout
    assert "pip install -e . -v" in proc.stdout


def test_require_native_turns_a_broken_build_into_an_import_error():
    code = "import cs336_basics.tokenizer"
    proc = _run_blocked("_encode_native", code, env={"CS336_REQUIRE_NATIVE": "1"})
    assert proc.returncode != 0
    assert "CS336_REQUIRE_NATIVE is set but C extensions are unavailable" in proc.stderr
    assert "_encode_native" in proc.stderr
    assert _run_blocked("_encode_native", code).returncode == 0  # without the variable: the fallback is used


def test_require_native_covers_the_optimizer_kernel():
    """A broken AdamW kernel: importing the optimizer fails under CS336_REQUIRE_NATIVE, else the loop runs."""
    code = ("from cs336_basics.training.optimizer import AdamW, use_fused\n"
            "print('fused by default:', use_fused(None, None, False, 'cpu'))")
    proc = _run_blocked("_adamw_native", code, env={"CS336_REQUIRE_NATIVE": "1"})
    assert proc.returncode != 0
    assert "CS336_REQUIRE_NATIVE is set but C extensions are unavailable" in proc.stderr
    assert "_adamw_native: cannot be loaded" in proc.stderr
    proc = _run_blocked("_adamw_native", code)
    assert proc.returncode == 0, proc.stderr
    assert "fused by default: False" in proc.stdout


def test_a_missing_optimizer_kernel_does_not_warn_about_tokenizing():
    """Tokenizing never uses the AdamW kernel, so its absence is not reported as a slow tokenizer."""
    code = ("from cs336_basics.runtime import native\n"
            "print(native.warn_if_fallback('cs336 prepare', native.TOKENIZER))")
    proc = _run_blocked("_adamw_native", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False" and "warning:" not in proc.stderr


def _tokenize_args(tmp_path) -> list[str]:
    """`cs336 tokenize` arguments for a byte tokenizer and a small text, both written under ``tmp_path``."""
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab = {i: bytes([i]) for i in range(256)}
    save_tokenizer_dir(tmp_path / "tok", vocab, [], [])
    (tmp_path / "in.txt").write_text("hello world\n" * 100, encoding="utf-8")
    return ["tokenize", "--tokenizer", str(tmp_path / "tok"), "--input", str(tmp_path / "in.txt"),
            "--out", str(tmp_path / "out.npy"), "--workers", "1"]


def test_tokenize_warns_once_when_it_falls_back(tmp_path):
    args = _tokenize_args(tmp_path)
    code = f"from cs336_basics.cli import main; raise SystemExit(main({args!r}))"
    proc = _run_blocked("_encode_native", code)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "cs336 tokenize runs the pure-Python path" in warnings[0] and "_encode_native cannot be loaded" in warnings[0]
    assert "pip install -e . -v" in warnings[0]
    # with every extension present there is no warning
    proc = run_cli(*args[:-2], "--workers", "1", "--force")
    assert proc.returncode == 0 and "warning:" not in proc.stderr


def test_tokenize_loads_neither_the_optimizer_kernel_nor_torch(tmp_path):
    """Loading AdamW's extension imports the training package and torch: a second of start-up that
    `cs336 tokenize` does not need, and a Ctrl-C inside torch's import aborts the process (SIGABRT)."""
    code = ("import sys\nfrom cs336_basics.cli import main\n"
            f"print(main({_tokenize_args(tmp_path)!r}), 'torch' in sys.modules, "
            "'cs336_basics.training._adamw_native' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "CS336_NO_PROGRESS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "0 False False", proc.stdout


def test_fallback_reason_and_warning_follow_the_disable_variable(monkeypatch, capsys):
    monkeypatch.delenv(native.DISABLE_ENV, raising=False)
    assert native.fallback_reason() is None
    assert native.warn_if_fallback("x") is False and capsys.readouterr().err == ""
    monkeypatch.setenv(native.DISABLE_ENV, "1")
    assert native.module("_encode_native") is None and native.loaded("_encode_native") is not None
    assert native.warn_if_fallback("cs336 prepare") is True
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CS336_NO_NATIVE is set" in err and "unset CS336_NO_NATIVE" in err
    with pytest.raises(KeyError):
        native.module("_no_such_extension")
