"""Fault injection on the inputs of the CLI: data that looks current but is not, tokenizer files out of range
or incomplete, damaged checkpoints, contradictory options, runaway worker counts, odd things in a file's place.

Each test reproduces one way such an input used to be accepted (or to end in an internal error) and asserts
what replaced it: the exit code, the one ``cs336: error:`` line naming the file and the fix, and the files
already on disk unchanged (compared byte for byte).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest

from cs336_basics.cli import main
from cs336_basics.tokenizer.token_files import manifest_path, read_manifest
from tests.faults.test_data_faults import one_line_error, snapshot, train_cli
from tests.training_fixtures import make_byte_dataset, tiny_config


@pytest.fixture(scope="module")
def byte_dataset(tmp_path_factory) -> Path:
    return make_byte_dataset(tmp_path_factory.mktemp("inputs") / "data")


@pytest.fixture
def dataset(byte_dataset, tmp_path) -> Path:
    return Path(shutil.copytree(byte_dataset, tmp_path / "data"))


def cli(capsys, *args: str) -> tuple[int, str]:
    """``cs336 ARGS`` in this process: (exit code, stderr)."""
    code = main(list(args))
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------- token ids are read, not trusted
def test_ids_changed_in_place_are_found_although_the_manifest_looks_current(dataset, tmp_path):
    path = dataset / "train.npy"
    recorded = read_manifest(path)["token_file"]
    stat = path.stat()
    ids = np.load(path, mmap_mode="r+")
    ids[100:110] = 60000  # same size, and the old mtime is put back: the manifest still "describes" the file
    ids.flush()
    del ids
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (recorded["size"], recorded["mtime_ns"])
    before = snapshot(dataset)
    proc = train_cli(dataset, tmp_path)
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc, "train.npy", "contains token id 60000", "257 ids", "cs336 tokenize")
    assert snapshot(dataset) == before
    assert not (tmp_path / "runs" / "r").exists()


# ----------------------------------------------------------------------------- tokenizer files
def test_a_vocabulary_id_beyond_uint32_is_refused_naming_the_file(dataset, tmp_path):
    tok = tmp_path / "tok"
    shutil.copytree(dataset / "tokenizer", tok)
    vocab = json.loads((tok / "vocab.json").read_text(encoding="utf-8"))
    vocab[next(iter(vocab))] = 10**12
    (tok / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    before = snapshot(tmp_path)
    proc = _run("tokenize", "--tokenizer", str(tok), "--input", str(dataset / "valid.txt"),
                "--out", str(tmp_path / "out.npy"))
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc, f"{tok / 'vocab.json'}", "1000000000000", "4294967295", "retrain the tokenizer")
    assert snapshot(tmp_path) == before  # no token file holding 10^12 mod 2^32


@pytest.fixture(scope="module")
def bpe_tokenizer(tmp_path_factory, byte_dataset) -> Path:
    """A 300-token BPE tokenizer trained by the CLI (so merges.txt holds 43 merges)."""
    out = tmp_path_factory.mktemp("bpe") / "tokenizer"
    proc = _run("tokenizer", "train", "--input", str(byte_dataset / "train.txt"), "--vocab-size", "300",
                "--out", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    return out


def test_holdout_larger_than_the_input_is_refused_before_training(byte_dataset, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes((byte_dataset / "train.txt").read_bytes()[:211])
    before = snapshot(tmp_path)
    proc = _run("tokenizer", "train", "--input", str(small), "--vocab-size", "260", "--holdout", "10G",
                "--out", str(tmp_path / "tok"))
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc, "--holdout 10,737,418,240 bytes", f"{small} (211 bytes)", "--holdout 0")
    assert snapshot(tmp_path) == before and not (tmp_path / "tok").exists()


@pytest.mark.parametrize("damage, fragments", [
    ("empty merges", ("merges.txt holds no merges", "43 multi-byte tokens", "restore merges.txt")),
    ("no meta.json", ("meta.json is missing", "special tokens", "cs336 tokenizer train")),
])
def test_an_incomplete_tokenizer_directory_is_refused_naming_the_file(bpe_tokenizer, byte_dataset, tmp_path, damage,
                                                                     fragments):
    tok = Path(shutil.copytree(bpe_tokenizer, tmp_path / "tok"))
    if damage == "empty merges":
        (tok / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    else:
        (tok / "meta.json").unlink()
    before = snapshot(tmp_path)
    proc = _run("tokenize", "--tokenizer", str(tok), "--input", str(byte_dataset / "valid.txt"),
                "--out", str(tmp_path / "out.npy"))
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc, *fragments)
    assert str(tok) in line
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- checkpoints
def _flip_a_bit_in_a_tensor(checkpoint: Path) -> None:
    """Flip one bit inside the largest tensor record of a torch zip checkpoint (its CRC-32 then fails)."""
    with zipfile.ZipFile(checkpoint) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(checkpoint, "r+b") as fh:
        fh.seek(record.header_offset + 26)
        name_len, extra_len = (int.from_bytes(fh.read(2), "little") for _ in range(2))
        at = record.header_offset + 30 + name_len + extra_len + record.file_size // 2
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ 0x10]))
    with zipfile.ZipFile(checkpoint) as archive:
        assert archive.testzip() == record.filename


@pytest.fixture(scope="module")
def damaged_run(byte_dataset, tmp_path_factory) -> Path:
    """A finished tiny run whose checkpoints (one file under several hard-linked names) have one flipped bit."""
    from cs336_basics.training.loop import train

    runs = tmp_path_factory.mktemp("runs")
    result = train(tiny_config(byte_dataset, runs, "train.total_steps=4", "train.checkpoint_interval=2",
                               "train.eval_interval=2"))
    seen = set()
    for path in sorted((result.run_dir / "checkpoints").glob("*.pt")):
        if path.stat().st_ino not in seen:
            seen.add(path.stat().st_ino)
            _flip_a_bit_in_a_tensor(path)
    return result.run_dir


@pytest.mark.parametrize("command", ["eval", "generate", "export", "resume"])
def test_a_checkpoint_with_a_flipped_bit_is_refused_naming_the_file(damaged_run, byte_dataset, tmp_path, capsys,
                                                                    command):
    run = Path(shutil.copytree(damaged_run, tmp_path / "run", symlinks=True))
    args = {"eval": ["eval", "--checkpoint", str(run), "--device", "cpu"],
            "generate": ["generate", "--checkpoint", str(run), "--prompt", "Once", "--max-tokens", "3",
                         "--device", "cpu"],
            "export": ["export", "--checkpoint", str(run), "--out", str(tmp_path / "hf")],
            "resume": ["train", "--config", str(run / "config.toml"), "--runs-dir", str(tmp_path),
                       "--run-name", "run", "--resume", "auto", "--total-steps", "6"]}[command]
    before = snapshot(run)
    code, err = cli(capsys, *args)
    assert code == 2, err
    line = one_line_error(err, "does not match its stored CRC-32 checksum", "use another checkpoint")
    assert str(run / "checkpoints") in line
    assert snapshot(run) == before
    assert not (tmp_path / "hf").exists()


# ----------------------------------------------------------------------------- sweeps
def test_a_sweep_key_given_twice_is_refused(tmp_path):
    proc = _run("sweep", "--grid", "optimizer.lr_max=1e-3,2e-3", "--grid", "optimizer.lr_max=3e-3", "--dry-run",
                "--out", str(tmp_path / "sweeps"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc, "--grid gives optimizer.lr_max twice", "'optimizer.lr_max=1e-3,2e-3'",
                   "'optimizer.lr_max=3e-3'", "one --grid optimizer.lr_max=v1,v2")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- worker processes
# The child runs `cs336 tokenize` with an encoder slowed by DELAY seconds per range, so the workers are busy
# when a signal arrives; fork hands the slowed class to the workers. Each range first creates a file named
# after its worker's pid in MARKERS, so the test knows when every worker is inside its work. SIGINT starts at
# Python's default, as in a terminal: a test run started as a background job of a non-interactive shell hands
# its children SIGINT ignored, and the CLI keeps ignoring a signal its launcher ignores.
SLOW_TOKENIZE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from cs336_basics.tokenizer.tokenizer import Tokenizer
encode = Tokenizer.encode_to_array
delay, markers = float(sys.argv.pop(1)), sys.argv.pop(1)
def slow(self, data):
    open(os.path.join(markers, str(os.getpid())), "a").close()
    time.sleep(delay)
    return encode(self, data)
Tokenizer.encode_to_array = slow
from cs336_basics.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CS336_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "cs336_basics", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def _start_slow_tokenize(dataset: Path, out: Path, workers: str, delay: float,
                         markers: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """The slowed tokenize in its own session (so a signal can go to its whole group, as Ctrl-C does), once
    two workers are inside a range (each has left its marker in ``markers``): (the process, those workers)."""
    markers.mkdir()
    env = {**os.environ, "CS336_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TOKENIZE, str(delay), str(markers), "tokenize",
                             "--tokenizer", str(dataset / "tokenizer"), "--input", str(dataset / "train.txt"),
                             "--out", str(out), "--workers", workers], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pids = {int(marker.name) for marker in markers.iterdir()}
        if len(pids) >= 2:
            workers_now = psutil.Process(proc.pid).children()
            if pids <= {p.pid for p in workers_now}:
                return proc, [p for p in workers_now if p.pid in pids]
            break
        if proc.poll() is not None:
            raise AssertionError(f"the tokenize ended before two workers began a range: {proc.communicate()}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # its whole session: no 600 s worker may outlive the test
    raise AssertionError(f"two workers of the tokenize never began a range: {proc.communicate()}")


def _gone(processes: list[psutil.Process], timeout: float) -> bool:
    """True when every process has exited (a zombie waiting for a reaper counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for p in processes:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _kill_what_is_left(proc: subprocess.Popen, workers: list[psutil.Process]) -> None:
    """After a failed assertion: no process of the test may outlive it."""
    for p in [*workers, psutil.Process(proc.pid)] if proc.poll() is None else workers:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.communicate()


def test_workers_beyond_the_cpus_are_clamped_with_one_line(dataset, tmp_path):
    cpus = len(os.sched_getaffinity(0))
    proc = _run("tokenize", "--tokenizer", str(dataset / "tokenizer"), "--input", str(dataset / "train.txt"),
                "--out", str(tmp_path / "t.npy"), "--workers", "100000")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "--workers" in line]
    assert lines == [f"--workers 100000 is more than the {cpus} CPU(s) available here; using {cpus}"], proc.stderr
    assert f"with {cpus} worker(s)" in proc.stdout
    assert np.array_equal(np.load(tmp_path / "t.npy"), np.load(dataset / "train.npy"))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for a worker pool")
def test_ctrl_c_stops_every_worker_and_leaves_no_output(dataset, tmp_path):
    before = snapshot(dataset)
    out = tmp_path / "out"
    out.mkdir()
    # 600 s per range: the run cannot end on its own before the signal, nor within the test after it
    proc, workers = _start_slow_tokenize(dataset, out / "t.npy", "100000", delay=600, markers=tmp_path / "m")
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, err = proc.communicate(timeout=60)  # about a second, even on busy CPUs
        assert proc.returncode == 130 and "cs336: interrupted" in err and "Traceback" not in err, err
        assert _gone(workers, 5), [p.pid for p in workers]
    finally:
        _kill_what_is_left(proc, workers)
    assert list(out.iterdir()) == []  # no token file, no temp file, no part files
    assert snapshot(dataset) == before


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="the parent-death signal is Linux's; needs 2 CPUs for a worker pool")
def test_no_worker_outlives_a_killed_parent(dataset, tmp_path):
    # each worker is inside a 600 s range: only the kernel's parent-death signal ends it within seconds
    proc, workers = _start_slow_tokenize(dataset, tmp_path / "t.npy", "2", delay=600, markers=tmp_path / "m")
    proc.kill()
    proc.wait(timeout=30)  # not communicate(): a surviving worker holds the output pipes open
    try:
        assert _gone(workers, 10), [p.pid for p in workers]
    finally:
        _kill_what_is_left(proc, workers)


# ----------------------------------------------------------------------------- odd things in a file's place
@pytest.mark.parametrize("kind, described", [("directory", "is a directory"), ("loop", "is a symlink loop")])
def test_train_npy_that_is_not_a_file_is_described(dataset, tmp_path, kind, described):
    target = dataset / "train.npy"
    target.unlink()
    manifest_path(target).unlink()
    if kind == "directory":
        target.mkdir()
    else:
        target.symlink_to("train.npy")
    before = snapshot(dataset)
    proc = train_cli(dataset, tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc, f"{target} {described}", "move it out of the way", "cs336 prepare")
    assert "does not exist" not in line
    assert snapshot(dataset) == before and (target.is_dir() if kind == "directory" else target.is_symlink())
    assert not (tmp_path / "runs" / "r").exists()


def test_a_symlink_loop_given_as_an_input_file_is_described(dataset, tmp_path):
    loop = tmp_path / "loop.npy"
    loop.symlink_to("loop.npy")
    proc = _run("eval", "--checkpoint", str(dataset / "train.txt"), "--data", str(loop))
    assert proc.returncode == 2, proc.stderr
    assert f"argument --data: {loop} is a symlink loop" in proc.stderr and "not found" not in proc.stderr
    assert "Traceback" not in proc.stderr
