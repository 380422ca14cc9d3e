"""``benchmarks/gpu_check.py`` runs on the CPU (``--device cpu --tiny``) so it cannot rot between GPU sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _results() -> set[Path]:
    return set((REPO / "benchmarks" / "results").glob("gpu_check-*"))


def test_gpu_check_runs_tiny_on_cpu_and_reports_every_section(tmp_path):
    """Without --out the report goes to the cache directory (printed), never into the source tree."""
    out = tmp_path / "cache" / "gpu_check-cpu.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CS336_CACHE_DIR": str(tmp_path / "cache")}
    records = _results()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"report written to {out}" in proc.stdout and _results() == records
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["tiny"] is True and report["ok"] is True
    assert "synthetic" in report["data"] and "synthetic" in proc.stdout
    compiled = report["train_compiled"]
    assert compiled["compiled"] is False  # --compile auto: torch.compile only on CUDA
    assert compiled["loss_fell"] is True and compiled["loss_last"] < compiled["loss_first"]
    assert compiled["mfu"] is None  # no peak-FLOP entry for a CPU: no guessed MFU
    for section in ("train_compiled", "train_eager"):
        assert report[section]["tokens_per_s"] > 0 and report[section]["peak_memory_mb"] > 0
    assert report["train_eager"]["attention"] == "sdpa"
    assert report["attention"]["reference_tokens_per_s"] > 0 and report["attention"]["sdpa_speedup"] > 0
    for kind in ("cached", "uncached"):
        assert report["generation"][kind]["new_tokens"] == 16 and report["generation"][kind]["tokens_per_s"] > 0
    assert report["evaluation"]["tokens"] == 4_000 - 1 and np.isfinite(report["evaluation"]["loss"])
    assert report["ddp"] == {**report["ddp"], "backend": "gloo", "world_size": 1, "ok": True}
    extrapolation = report["extrapolation"]
    assert extrapolation["tokens"] == 327_680_000 and "tiny" in extrapolation["basis"]
    assert abs(extrapolation["seconds"] - 327_680_000 / compiled["tokens_per_s"]) < 1


def test_markov_data_is_learnable_and_the_tokenizer_covers_the_vocabulary():
    sys.path.insert(0, str(REPO))
    from benchmarks.gpu_check import SUCCESSORS, loss_fell, markov_tokens, synthetic_tokenizer

    ids = markov_tokens(20_000, 300, seed=1)
    assert ids.min() >= 0 and ids.max() < 300
    followers: dict[int, set[int]] = {}
    for a, b in zip(ids[:-1].tolist(), ids[1:].tolist()):
        followers.setdefault(a, set()).add(b)
    assert max(len(s) for s in followers.values()) <= SUCCESSORS
    tok = synthetic_tokenizer(300)
    assert tok.vocab_size == 300 and tok.eos_id == 299
    assert tok.decode(tok.encode("abc")) == "abc"
    assert loss_fell([5.0, 5.0, 5.0, 4.0, 3.0, 3.0, 3.0], 1.0)[0]
    assert not loss_fell([5.0, 5.0, 5.0, 4.8, 4.5, 4.5, 4.5], 1.0)[0]
    assert not loss_fell([5.0, 5.0, 5.0, 1.0, float("nan"), 1.0, 1.0], 1.0)[0]
