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


def test_train_shortcuts_set_config_keys_and_show_their_docstrings(capsys):
    from cs336_basics.commands.train import SHORTCUTS
    from cs336_basics.config import RunConfig, describe_fields

    docs = {key: doc for key, _, _, doc in describe_fields(RunConfig)}
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help; compare it unwrapped
    for flag, shortcut in SHORTCUTS.items():
        assert shortcut.key in docs, f"{flag} sets {shortcut.key}, which is no config key"
        assert docs[shortcut.key], f"{shortcut.key} has no docstring for {flag}'s help"
        assert f" {flag}" in text
        assert f"{docs[shortcut.key].rstrip('.')} ({shortcut.key}" in text, flag


def test_train_shortcuts_resolve_to_their_config_keys(tmp_path):
    from cs336_basics.cli import build_parser
    from cs336_basics.commands.train import resolve_config

    argv = ["train", "-q", "--run-name", "r1", "--runs-dir", str(tmp_path), "--dataset", "data/x", "--checkpoint",
            str(tmp_path), "--batch-size", "8", "--total-tokens", "4096", "--total-steps", "5", "--eval-batch-size",
            "4", "--lr-max", "0.002", "--lr-min", "0.0001", "--warmup-iters", "3", "--device", "cpu", "--seed", "7",
            "--compile", "--set", "train.seed=9"]
    cfg = resolve_config(build_parser(argv).parse_args(argv))
    t, o = cfg.train, cfg.optimizer
    assert (t.run_name, t.runs_dir, cfg.data.dataset_dir) == ("r1", str(tmp_path), "data/x")
    assert t.checkpoint == str(tmp_path)
    assert (t.batch_size, t.total_tokens, t.total_steps, t.eval_batch_size) == (8, 4096, 5, 4)
    assert (o.lr_max, o.lr_min, o.warmup_iters, t.device, t.compile, cfg.logging.quiet) == \
        (0.002, 0.0001, 3, "cpu", True, True)
    assert t.seed == 9  # --set comes after the shortcuts
    plain = resolve_config(build_parser(["train"]).parse_args(["train"]))
    assert (plain.train.compile, plain.train.run_name, plain.logging.quiet) == ("auto", "run", False)
    _assert_one_line_error(run_cli("train", "--batch-size", "0"))


def test_generate_flags_build_sampling_params_with_its_defaults():
    from cs336_basics.cli import build_parser
    from cs336_basics.commands.generate import sampling_params
    from cs336_basics.generation import SamplingParams

    def parse(*flags):
        argv = ["generate", "--checkpoint", ".", *flags]
        return sampling_params(build_parser(argv).parse_args(argv))

    assert parse() == SamplingParams()
    assert parse("--max-tokens", "7", "--temperature", "0", "--top-p", "0.5", "--top-k", "3", "--repetition-penalty",
                 "1.2", "--stop", "x", "--stop", "y", "--ignore-eos") == \
        SamplingParams(temperature=0.0, top_k=3, top_p=0.5, repetition_penalty=1.2, max_new_tokens=7,
                       stop=("x", "y"), stop_at_eos=False)
