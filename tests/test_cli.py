"""The CLI's error contract: usage errors and missing files exit 2 with one line, no traceback."""

from __future__ import annotations

import pytest

from cs336_basics.cli import COMMAND_MODULES, main
from tests.conftest import run_cli


def _assert_one_line_error(proc) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error" in lines[0]


def test_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in ["download", "tokenizer", "tokenize", "train", "generate", "eval", "sweep", "plot",
                 "report", "model", "export", "quickstart"]:
        assert name in proc.stdout


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: cs336" in capsys.readouterr().out


def test_unknown_command_exits_2():
    _assert_one_line_error(run_cli("frobnicate"))


def test_unknown_option_exits_2():
    _assert_one_line_error(run_cli("train", "--no-such-option"))


def test_missing_config_file_exits_2(tmp_path):
    proc = run_cli("train", "--config", str(tmp_path / "missing.toml"))
    _assert_one_line_error(proc)
    assert "missing.toml" in proc.stderr


def test_python_m_and_console_script_agree():
    import shutil
    import subprocess

    exe = shutil.which("cs336")
    assert exe is not None, "the cs336 console script is not on PATH (pip install -e . installs it)"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == run_cli("--version").stdout.strip()


def test_config_accepts_a_shipped_preset_name_and_lists_them_when_unknown(tmp_path):
    from cs336_basics.commands import config_file
    from cs336_basics.config import PRESET_DIR, load_config

    assert config_file("tinystories") == PRESET_DIR / "tinystories.toml"
    assert config_file("experiments/lr_cpu") == PRESET_DIR / "experiments" / "lr_cpu.toml"
    assert load_config("models/gpt2-xl").model.num_layers == 48  # the library accepts preset names too
    # the presets live inside the package, so a non-editable install has them too
    package = PRESET_DIR.resolve().parent
    assert package.name == "config" and (package / "__init__.py").is_file()
    assert package.parent.name == "cs336_basics" and (package.parent / "__init__.py").is_file()
    proc = run_cli("model", "info", "--config", "no_such_preset")
    _assert_one_line_error(proc)
    assert "tinystories_cpu" in proc.stderr and "experiments/NAME" in proc.stderr


def test_a_command_run_imports_only_its_own_module():
    import subprocess
    import sys

    code = ("import sys; from cs336_basics.cli import build_parser; build_parser(['-q', 'tokenize', '--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('cs336_basics.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cs336_basics.commands.tokenize']"
