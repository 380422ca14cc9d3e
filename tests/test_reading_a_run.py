"""What a person reads about a run: console lines, the time budget's plan, tracker names."""

from __future__ import annotations

import math

import pytest

from cs336_basics.training import console
from cs336_basics.training.budget import PROVISIONAL_STEPS, TimeBudget, final_eval_reserve
from cs336_basics.training.trackers import tracker_metrics


def test_durations_and_rates_are_rounded_for_reading():
    assert [console.duration(s) for s in (0, 42.4, 133, 3600 + 5 * 60 + 9)] == ["0s", "42s", "2m13s", "1h05m"]
    assert console.duration(float("nan")) == "?"
    assert [console.rate(r) for r in (850.2, 11_523.0, 1_234_567.0)] == ["850 tok/s", "11.5k tok/s", "1.2M tok/s"]
    assert console.loss(3.41234) == "3.412" and console.loss(float("nan")) == "nan" and console.loss(None) == "n/a"


def test_progress_lines_name_the_subset_and_extrapolate_the_time_left():
    line = console.progress_line(300, 2168, 3.41234, 11_523.0, 133.0, 0, val_loss=3.52, val_tokens=32_768,
                                 val_is_subset=True)
    assert line == "step 300/2168 | train 3.412 | val 3.520 (32,768-token subset) | 11.5k tok/s | " \
                   "2m13s elapsed, 13m48s left"
    resumed = console.progress_line(1100, 2000, 2.5, 900.0, 100.0, 1000, lr=3e-4)
    # 100 steps in 100 s in this process: 900 steps left take 15 minutes
    assert resumed == "step 1100/2000 | train 2.500 | lr 3.0e-04 | 900 tok/s | 1m40s elapsed, 15m00s left"
    whole = console.whole_file_line(3.126, 22.78, 1.2391, 221_719)
    assert whole == "validation, whole file (221,719 tokens): loss 3.126 nats/token | perplexity 22.8 | " \
                    "1.239 bits/byte"


def test_budget_plans_from_the_measured_speed_and_never_goes_back():
    budget = TimeBudget(seconds=600.0)
    assert budget.plan(0, 0.0, None) == PROVISIONAL_STEPS
    assert budget.plan(10, 5.0, 0.5) == 10 + int((600 - 5) / 0.5)
    # the machine got slower: fewer steps fit, but never fewer than those already done
    assert budget.plan(500, 590.0, 2.0) == 505
    assert budget.plan(500, 700.0, 2.0) == 500
    # the final evaluation's reserve comes off the time left
    assert budget.plan(10, 5.0, 0.5, reserve=95.0) == 10 + int(500 / 0.5)
    capped = TimeBudget(seconds=600.0, cap=200)
    assert capped.plan(10, 5.0, 0.5) == 200 and capped.plan(0, 0.0, None) == 200
    assert budget.expired(600.0) and not budget.expired(599.9)
    # a forward pass costs about a third of a training step per token
    assert final_eval_reserve(0.3, 2048, 204_800) == pytest.approx(0.3 / 2048 / 3 * 204_800)
    assert final_eval_reserve(None, 2048, 1000) == 0.0


@pytest.mark.parametrize("event, values, expected", [
    ("train", {"event": "train", "time": 1.7e9, "step": 3, "tokens": 99, "wallclock": 2.0, "loss": 3.1, "lr": 1e-3,
               "grad_norm": 0.5, "tokens_per_s": 100.0, "mfu": 0.4},
     {"train/loss": 3.1, "train/lr": 1e-3, "train/grad_norm": 0.5, "train/tokens_per_s": 100.0, "train/mfu": 0.4}),
    ("eval", {"val_loss": 2.0, "val_bpb": 1.1, "val_ppl": 7.4, "best_val_loss": 2.0, "step": 5, "wallclock": 9.0},
     {"val/loss": 2.0, "val/bpb": 1.1, "val/perplexity": 7.4, "val/best_loss": 2.0}),
    ("eval_full", {"val_loss": 2.1, "val_bpb": 1.2, "val_tokens": 1000},
     {"val_whole_file/loss": 2.1, "val_whole_file/bpb": 1.2, "val_whole_file/tokens": 1000.0}),
    ("nonfinite", {"loss": math.nan, "grad_norm": math.inf, "in_a_row": 2}, {"train/nonfinite_in_a_row": 2.0}),
    ("end", {"stop_reason": "completed", "diverged": False}, {}),
    ("start", {"total_steps": 10}, {}),
])
def test_trackers_share_one_naming_scheme_and_chart_no_bookkeeping(event, values, expected):
    assert tracker_metrics(event, values) == expected


# ----------------------------------------------------------------------------- a budgeted run, end to end

import time  # noqa: E402

from cs336_basics.runs.metrics import read_jsonl  # noqa: E402
from cs336_basics.training.loop import train  # noqa: E402
from cs336_basics.training.step import TrainStep  # noqa: E402
from tests.training_fixtures import make_byte_dataset, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_byte_dataset(tmp_path_factory.mktemp("budget") / "data")


def _budgeted(dataset, tmp_path, seconds: float, *extra: str):
    cfg = tiny_config(dataset, tmp_path, f"train.max_minutes={seconds / 60}", "train.total_steps=none",
                      "logging.log_interval=5", "train.eval_interval=1000000", "train.checkpoint_interval=1000000",
                      "optimizer.warmup_iters=2", *extra)
    return train(cfg)


def test_a_budget_ends_the_run_on_time_with_the_schedule_finished(dataset, tmp_path, one_torch_thread):
    result = _budgeted(dataset, tmp_path, 4.0)
    assert result.stop_reason == "completed" and result.steps > 20
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    end = [r for r in records if r["event"] == "end"][0]
    assert end["wallclock"] < 4.0 + 2.0  # the budget plus the final evaluation and checkpoint
    lrs = [r["lr"] for r in records if r["event"] == "train"]
    # cosine re-planned to the end of the budget: the last logged rate is near lr_min, not mid-schedule
    assert lrs[-1] < 3e-4 + 0.1 * (3e-3 - 3e-4)


def test_a_machine_that_slows_down_still_ends_within_the_budget(dataset, tmp_path, monkeypatch, one_torch_thread):
    real = TrainStep.__call__

    def slower(self, step):
        if step >= 30:
            time.sleep(0.05)  # another process took the CPU
        return real(self, step)

    monkeypatch.setattr(TrainStep, "__call__", slower)
    result = _budgeted(dataset, tmp_path, 5.0)
    end = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r["event"] == "end"][0]
    assert result.stop_reason == "completed" and end["wallclock"] < 5.0 + 2.0


def test_console_lines_have_elapsed_time_and_eta_without_a_terminal(dataset, tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("train", "--dataset", str(dataset), "--runs-dir", str(tmp_path), "--run-name", "c",
                   "--total-steps", "20", "--batch-size", "4", "--set", "model.context_length=32",
                   "--set", "model.d_model=32", "--set", "model.num_layers=1", "--set", "model.num_heads=4",
                   "--set", "train.eval_interval=10", "--set", "train.eval_tokens=1024", "--set", "train.samples=false",
                   "--set", "logging.log_interval=5", env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps and all(" elapsed, " in line and line.endswith(" left") for line in steps)
    assert any("| val " in line and "(1,024-token subset)" in line for line in steps)
    whole = [line for line in lines if line.startswith("validation, whole file (")]
    assert len(whole) == 1 and "bits/byte" in whole[0] and "perplexity" in whole[0]
    for line in steps:  # rounded: three decimals at most
        train_loss = line.split("| train ")[1].split(" |")[0]
        assert len(train_loss.split(".")[1]) == 3
