"""Fault injection on what a run is set up from: a resume with another optimizer, a damaged metrics.jsonl, a run
too large for memory, a file-size limit during a save, an absurd learning rate, a non-finite time budget. Each
case asserts the exit code, the one-line message and the state of the disk (file hashes before and after)."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cs336_basics.runs.metrics as metrics_module
import cs336_basics.training.loop as loop_module
from cs336_basics import fileio
from cs336_basics.config import PRESET_DIR, RunConfig, apply_overrides, dump_config, from_dict, read_mapping
from cs336_basics.errors import DiskFullError, write_refused_errno
from cs336_basics.runs.checkpoint import read_checkpoint
from cs336_basics.runs.metrics import MetricsLog, read_jsonl
from cs336_basics.training import memory
from tests.faults import cli_checks
from tests.faults.cli_checks import cli, one_line_error, tree_hashes
from tests.conftest import REPO
from tests.training_fixtures import make_byte_dataset


def train_args(dataset: Path, runs: Path, *extra: str) -> list[str]:
    return cli_checks.train_args(dataset, runs, *extra, steps=4)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_byte_dataset(tmp_path_factory.mktemp("setup_faults") / "data")


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- 10: resume with another optimizer


@pytest.mark.parametrize("change, needle", [
    ("optimizer.name=muon", "was trained with optimizer.name=adamw (config says muon)"),
    ("optimizer.decay_all=true", "was trained with optimizer.decay_all=false (config says true)"),
])
def test_a_resume_with_another_optimizer_is_refused_and_config_toml_is_untouched(dataset, tmp_path, capsys,
                                                                                 change, needle):
    code, err = cli(capsys, *train_args(dataset, tmp_path))
    assert code == 0, err
    run = tmp_path / "r"
    before = tree_hashes(run)
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "6", "--set", change),
                     "--resume", "auto")
    line = one_line_error(err)
    assert code == 2 and needle in line and "resume with --set optimizer." in line
    assert tree_hashes(run) == before


def test_optimizer_state_with_other_parameter_groups_is_refused_without_a_saved_config(dataset, tmp_path, capsys):
    """A checkpoint without the optimizer section in its config (written elsewhere, or older) is checked by the
    parameter groups of its optimizer state."""
    code, err = cli(capsys, *train_args(dataset, tmp_path))
    assert code == 0, err
    run = tmp_path / "r"
    latest = run / "checkpoints" / "latest.pt"
    obj = read_checkpoint(latest)
    del obj["config"]["optimizer"]
    torch.save(obj, latest)
    before = tree_hashes(run)
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--total-steps", "6", "--set", "optimizer.name=muon"),
                     "--resume", "auto")
    line = one_line_error(err)
    assert code == 2 and "holds optimizer state for 2 parameter group(s)" in line
    assert "optimizer.name=muon with optimizer.decay_all=false builds 3 parameter group(s)" in line
    assert tree_hashes(run) == before


# ----------------------------------------------------------------------------- 11: a damaged metrics.jsonl


@pytest.mark.parametrize("damage", [b"\xff\xfe\n", b"[1, 2]\n", b'{"event": "tra\n'])
def test_report_plot_and_resume_read_past_a_damaged_metrics_line(dataset, tmp_path, capsys, monkeypatch, damage):
    code, err = cli(capsys, *train_args(dataset, tmp_path))
    assert code == 0, err
    run = tmp_path / "r"
    metrics = run / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:3]) + damage + b"".join(lines[3:]))  # line 4 is damaged
    config_before = tree_hashes(run)["config.toml"]

    code, err = cli(capsys, "report", str(run))
    assert code == 0, err
    assert err.count("skipped line 4,") == 1 and "not a JSON record" in err
    assert (run / "report.md").is_file()
    monkeypatch.setattr(metrics_module, "_WARNED", set())  # each command is its own process
    code, err = cli(capsys, "plot", str(run))
    assert code == 0, err
    assert "skipped line 4," in err

    code, err = cli(capsys, *train_args(dataset, tmp_path), "--resume", "auto")  # same settings: resumes at 4
    assert code == 0, err
    assert tree_hashes(run)["config.toml"] == config_before
    events = [r["event"] for r in read_jsonl(metrics)]
    assert events.count("start") == 1 and events.count("resume") == 1


def test_a_torn_last_line_is_skipped_silently_and_the_next_record_starts_a_new_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"event": "start", "step": 0}\n{"event": "tr')  # a crash mid-write
    assert [r["event"] for r in read_jsonl(path)] == ["start"]
    assert "skipped" not in capsys.readouterr().err
    with MetricsLog(path) as log:
        log.log("resume", step=0)
    assert [r["event"] for r in read_jsonl(path)] == ["start", "resume"]
    assert "skipped line 2," in capsys.readouterr().err  # the torn line is now an inner line: named


# ----------------------------------------------------------------------------- 12: a run too large for memory


@pytest.mark.parametrize("setting, needle", [
    ("model.d_model=65536", "use a smaller model"),
    ("train.batch_size=100000000", "lower train.batch_size"),
    ("model.d_ff=262144", "model.d_ff"),
])
def test_a_run_that_cannot_fit_in_memory_is_refused_before_the_run_directory_exists(dataset, tmp_path, capsys,
                                                                                   monkeypatch, setting, needle):
    monkeypatch.setattr(memory, "available_memory", lambda device: (4 * 10**9, "RAM available"))
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--set", "model.num_heads=2", "--batch-size", "8",
                                          "--set", "model.context_length=64", "--set", "model.num_layers=2",
                                          "--set", "model.d_model=64", "--set", setting))
    line = one_line_error(err)
    assert code == 2 and "this run needs at least" in line and "only 4.0 GB is RAM available" in line
    assert needle in line
    assert not (tmp_path / "r").exists()


def test_every_shipped_preset_fits_a_24_gb_machine():
    """The estimate is a lower bound: the presets a 24 GB machine trains are never refused."""
    checked = 0
    for path in sorted(PRESET_DIR.glob("*.toml")) + sorted((PRESET_DIR / "experiments").glob("*.toml")):
        data = {k: v for k, v in read_mapping(path).items() if k in ("model", "optimizer", "data", "train", "logging")}
        cfg = from_dict(RunConfig, data)
        if cfg.model.vocab_size is None:
            cfg = apply_overrides(cfg, ["model.vocab_size=10000"])
        for device in ("cpu", "cuda"):
            memory.check_fits(cfg, torch.device(device), available=(22 * 10**9, "RAM available"))
        checked += 1
    assert checked >= 20


def test_a_real_address_space_limit_refuses_the_run_before_anything_is_written(dataset, tmp_path):
    """One real subprocess under ``ulimit -v`` with room for half of what a wide-FFN run needs at least: the limit
    is read from RLIMIT_AS and /proc, and the run is refused before its directory exists."""
    cfg = apply_overrides(RunConfig(), ["model.vocab_size=257", "model.d_model=64", "model.num_layers=2",
                                        "model.num_heads=2", "model.context_length=64", "model.d_ff=262144",
                                        "train.batch_size=8", "train.device=cpu"])
    need = memory.estimate_training_memory(cfg, "cpu").total
    probe = subprocess.run([sys.executable, "-c", "import torch, cs336_basics.training.loop; "
                            "print(open('/proc/self/statm').read().split()[0])"], capture_output=True, text=True,
                           cwd=REPO, timeout=300)
    if probe.returncode != 0 or not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc (Linux)")
    mapped = int(probe.stdout.split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + need // 2  # room for half of what the run needs at least

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    args = train_args(dataset, tmp_path, "--set", "model.num_heads=2", "--batch-size", "8",
                       "--set", "model.context_length=64", "--set", "model.num_layers=2", "--set", "model.d_model=64",
                       "--set", "model.d_ff=262144")
    proc = subprocess.run([sys.executable, "-m", "cs336_basics", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, preexec_fn=limit_address_space,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CS336_NO_PROGRESS": "1"})
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc.stderr)
    assert "this run needs at least" in line and "model.d_ff" in line
    assert "address space left under ulimit -v" in line or "RAM available" in line  # whichever is tighter
    assert not (tmp_path / "r").exists()


def test_running_out_of_memory_mid_run_is_a_one_line_error(dataset, tmp_path, capsys, monkeypatch):
    """A run the lower bound admits can still run out; that is the same kind of error, not an internal one."""
    def allocation_fails(self, bar):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 51539607552 bytes. Error code 12")

    monkeypatch.setattr(loop_module.Trainer, "_loop", allocation_fails)
    code, err = cli(capsys, *train_args(dataset, tmp_path))
    line = one_line_error(err)
    assert code == 2 and "training ran out of memory on cpu" in line and "needs at least" in line


def test_available_memory_takes_the_tightest_limit(monkeypatch):
    monkeypatch.setattr(memory, "ram_available", lambda: 20 * 10**9)
    monkeypatch.setattr(memory, "address_space_left", lambda: 5 * 10**9)
    monkeypatch.setattr(memory, "cgroup_left", lambda: 7 * 10**9)
    assert memory.available_memory(torch.device("cpu")) == (5 * 10**9, "address space left under ulimit -v")
    monkeypatch.setattr(memory, "address_space_left", lambda: None)
    assert memory.available_memory(torch.device("cpu")) == (7 * 10**9, "left under the cgroup memory limit")
    assert memory.available_memory(torch.device("meta")) is None


# ----------------------------------------------------------------------------- 13: a file-size limit


def _run_under_file_size_limit(args: list[str], limit_bytes: int, cwd: Path) -> subprocess.CompletedProcess:
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "cs336_basics", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, preexec_fn=limit_file_size,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CS336_NO_PROGRESS": "1"})


@pytest.mark.parametrize("limit, victim", [(1024, "config.toml"), (150 * 1024, "step_0000002.pt")])
def test_a_file_size_limit_during_a_save_is_a_clear_error_with_no_temp_file(dataset, tmp_path, limit, victim):
    """ulimit -f 1 stops the config write, ulimit -f 150 the first checkpoint (torch.save's "unexpected pos")."""
    proc = _run_under_file_size_limit(train_args(dataset, tmp_path, "--set", "model.d_model=64"), limit, REPO)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc.stderr)
    assert f"file too large: writing {tmp_path / 'r'}" in line and victim in line
    assert f"file-size limit of {limit:,} bytes (ulimit -f)" in line and "raise the limit" in line
    assert not _temp_files(tmp_path)


def test_the_file_size_limit_message_keeps_the_callers_advice():
    err = DiskFullError("/x/y.pt", "free space and rerun with --resume auto", errno.EFBIG)
    assert str(err).endswith("raise the limit (ulimit -f unlimited) and rerun with --resume auto")
    assert str(DiskFullError("/x/y.pt", "free space and rerun")).startswith("no space left on device at /x/y.pt")
    rust = RuntimeError("Error while serializing: I/O error: File too large (os error 27)")
    assert write_refused_errno(rust) == errno.EFBIG
    assert write_refused_errno(RuntimeError("unrelated (os error 2)")) is None


def test_config_files_are_written_atomically(tmp_path, monkeypatch):
    """dump_config goes through the atomic helper: a failed write leaves neither a temp file nor a half file."""
    target = tmp_path / "config.toml"
    target.write_text("old\n")

    def failing_fsync(fd):
        raise OSError(27, "File too large")

    monkeypatch.setattr(fileio.os, "fsync", failing_fsync)
    with pytest.raises(Exception, match="file too large"):
        dump_config(RunConfig(), target)
    assert target.read_text() == "old\n" and not _temp_files(tmp_path)
    monkeypatch.undo()
    dump_config(RunConfig(), target)
    assert "[model]" in target.read_text()


# ----------------------------------------------------------------------------- 14: absurd numbers


@pytest.mark.parametrize("setting", ["optimizer.lr_max=1e308", "optimizer.muon_lr=1e300"])
def test_an_absurd_learning_rate_is_refused_before_anything_is_written(dataset, tmp_path, capsys, setting):
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--set", setting))
    line = one_line_error(err)
    key = setting.split("=")[0]
    assert code == 2 and f"{key} = 1e+" in line and "beyond any learning rate that trains" in line
    assert not (tmp_path / "r").exists()


def test_a_large_but_representable_learning_rate_still_trains_to_a_result(dataset, tmp_path, capsys):
    """The bound is arithmetic, not taste: a learning-rate sweep may go far past the edge of divergence."""
    code, err = cli(capsys, *train_args(dataset, tmp_path, "--set", "optimizer.lr_max=50",
                                          "--set", "optimizer.warmup_iters=0"))
    assert code in (0, 3), err
    assert "internal error" not in err


@pytest.mark.parametrize("minutes", ["nan", "inf", "-inf", "-1"])
def test_quickstart_refuses_a_non_finite_or_negative_budget_before_any_work(tmp_path, minutes):
    out = tmp_path / "qs"
    proc = subprocess.run([sys.executable, "-m", "cs336_basics", "quickstart", "--data", "sample", "--out", str(out),
                           f"--minutes={minutes}"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "CS336_NO_PROGRESS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "argument --minutes: expected a" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
