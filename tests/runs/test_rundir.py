"""Run directory layout and the metrics log."""

from __future__ import annotations

import json

from cs336_basics.config import RunConfig, load_config
from cs336_basics.runs.layout import RunDir
from cs336_basics.runs.metrics import MetricsLog, read_jsonl


def test_run_directory_layout(tmp_path):
    run = RunDir(tmp_path / "runs" / "demo").create()
    for sub in ("checkpoints", "samples", "plots"):
        assert (run.root / sub).is_dir()
    run.write_config(RunConfig())
    assert load_config(run.config_path) == RunConfig()


def test_metrics_log_appends_and_survives_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.log("train", step=1, tokens=256, loss=3.5)
        log.log("train", step=2, tokens=512, loss=float("nan"))
    with open(path, "a") as fh:
        fh.write('{"event": "train", "step": 3')  # a crash mid-write
    records = read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2]
    assert all("wallclock" in r for r in records)
    for line in path.read_text().splitlines()[:2]:
        json.loads(line)  # strictly valid JSON, NaN stored as a string
    assert records[1]["loss"] == "nan"
