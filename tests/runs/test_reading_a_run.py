"""What a person reads about a run: console lines, the time budget's plan, tracker names."""

from __future__ import annotations

import math

import pytest

from cs336_basics.training import console
from cs336_basics.training.budget import PROVISIONAL_STEPS, RESERVE_CAP, StepSpeed, TimeBudget
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
    # however slow the final evaluation looked, its reserve takes at most RESERVE_CAP of the budget
    assert budget.plan(10, 5.0, 0.5, reserve=10_000.0) == 10 + int((600 - 5 - RESERVE_CAP * 600) / 0.5)
    # a plan may be held open for at least one more window
    assert budget.plan(5, 22.0, 100.0, at_least=10) == 10


def test_step_speed_is_the_lower_median_of_the_windows():
    speed = StepSpeed()
    assert speed.seconds_per_step() is None and not speed.trusted()
    speed.add(22.0, 5)  # a slow start: 4.4 s per step
    assert speed.seconds_per_step() == pytest.approx(4.4) and not speed.trusted()
    speed.add(0.5, 5)  # the machine is free again: 0.1 s per step
    assert speed.seconds_per_step() == pytest.approx(0.1) and speed.trusted()
    speed.add(0.6, 5)
    speed.add(30.0, 5)  # one slow window among several changes nothing
    assert speed.seconds_per_step() == pytest.approx(0.12)
    for _ in range(3):  # a machine that stays slower: the recent windows decide
        speed.add(10.0, 5)
    assert speed.seconds_per_step() == pytest.approx(2.0)


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


# ----------------------------------------------------------------------------- reports and plots

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.image  # noqa: E402

from cs336_basics.config import RunConfig, apply_overrides  # noqa: E402
from cs336_basics.reporting.run_report import write_run_report  # noqa: E402
from cs336_basics.reporting.sweep_report import write_sweep_report  # noqa: E402
from cs336_basics.runs.layout import RunDir  # noqa: E402
from cs336_basics.runs.metrics import MetricsLog  # noqa: E402
from cs336_basics.runs.records import load_run, run_labels  # noqa: E402


def _write_run(root: Path, overrides: list[str], steps: int = 200, decay: float = 1.0, spike: bool = True,
               full_eval: float | None = None) -> Path:
    """A run directory with a realistic metrics.jsonl: warmup then cosine lr, falling losses, grad-norm spikes."""
    run = RunDir(root)
    run.create()
    run.write_config(apply_overrides(RunConfig(), ["model.vocab_size=2048", *overrides]))
    log = MetricsLog(run.metrics_path, start_time=0.0)
    for step in range(10, steps + 1, 10):
        lr = 3e-3 * min(1.0, step / 40) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        grad = 40.0 if spike and step in (20, 30) else 0.4 + 0.002 * step
        loss = 2.0 + 5.0 * (step / 10) ** (-0.5 * decay)
        log.log("train", step=step, tokens=step * 2048, wallclock=step * 0.2, loss=loss, lr=lr, grad_norm=grad,
                tokens_per_s=10_000 + 500 * math.sin(step))
        if step % 50 == 0:
            log.log("eval", step=step, tokens=step * 2048, wallclock=step * 0.2 + 0.1, val_loss=loss + 0.1,
                    val_tokens=32_767, val_bpb=(loss + 0.1) / 2.6)
    if full_eval is not None:
        log.log("eval_full", step=steps, tokens=steps * 2048, wallclock=steps * 0.2 + 1, val_loss=full_eval,
                val_ppl=math.exp(full_eval), val_bpb=full_eval / 2.6, val_tokens=221_718)
    log.log("end", step=steps, tokens=steps * 2048, wallclock=steps * 0.2 + 2, stop_reason="completed",
            diverged=False)
    log.close()
    return root


def _assert_every_point_visible(png: Path) -> None:
    image = matplotlib.image.imread(png)  # a real, readable image
    assert image.shape[0] > 100 and image.shape[1] > 100
    description = json.loads(png.with_name(png.stem + ".axes.json").read_text())
    for ax in description["axes"]:
        (x0, x1), (y0, y1) = sorted(ax["xlim"]), sorted(ax["ylim"])
        for line in ax["lines"]:
            first = next((y for y in line["y"] if math.isfinite(y)), None)
            for xv, yv in zip(line["x"], line["y"]):
                if not (math.isfinite(xv) and math.isfinite(yv)):
                    continue
                assert x0 <= xv <= x1, (png.name, line["label"], xv, ax["xlim"])
                capped = ax["cap"] is not None and yv > ax["cap"] and first is not None and yv > first
                assert capped or y0 <= yv <= y1, (png.name, line["label"], yv, ax["ylim"])


def test_run_report_plots_show_every_point_and_keep_the_final_evaluation_apart(tmp_path):
    # losses still falling fast at the end; the whole-file evaluation is worse than the subset's last value
    run = _write_run(tmp_path / "run", [], steps=200, full_eval=4.0)
    report = write_run_report(run)
    pngs = sorted((run / "plots").glob("*.png"))
    assert {p.stem for p in pngs} >= {"loss_vs_steps", "loss_vs_wallclock", "lr_vs_steps", "grad_norm_vs_steps",
                                     "tokens_per_s_vs_steps", "convergence"}
    for png in pngs:
        _assert_every_point_visible(png)
    loss_plot = json.loads((run / "plots" / "loss_vs_steps.axes.json").read_text())["axes"][0]
    labels = [line["label"] for line in loss_plot["lines"]]
    assert "validation loss (32,768-token subset)" in labels and "validation loss, whole file (final)" in labels
    val = next(line for line in loss_plot["lines"] if line["label"].startswith("validation loss ("))
    assert 4.0 not in val["y"]  # the final pass is its own marker, not a jump at the end of the curve
    text = report.read_text()
    assert "validation loss, whole file at the end (221,718 tokens) | 4" in text
    assert "final validation loss (32,768-token subset)" in text
    # the fit and the plateau check see only the periodic evaluations: a curve still falling is not "plateaued"
    assert "points fitted | 4" in text and "plateau" in text.lower()
    assert "**Plateau verdict:** improving" in text


def test_a_six_run_sweep_report_is_readable(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    settings = [["optimizer.lr_max=1e-3", "train.batch_size=16", "model.d_model=128", "model.num_layers=2"],
                ["optimizer.lr_max=3e-3", "train.batch_size=32", "model.d_model=256", "model.num_layers=4"],
                ["optimizer.lr_max=1e-2", "train.batch_size=64", "model.d_model=128", "model.num_layers=4"],
                ["optimizer.lr_max=3e-2", "train.batch_size=16", "model.d_model=256", "model.num_layers=2"],
                ["optimizer.lr_max=1e-3", "train.batch_size=64", "model.d_model=256", "model.num_layers=2"],
                ["optimizer.lr_max=3e-3", "train.batch_size=32", "model.d_model=128", "model.num_layers=6"]]
    for i, overrides in enumerate(settings):
        _write_run(sweep / "runs" / f"r{i}", overrides, decay=0.5 + 0.1 * i, spike=False)
    (sweep / "sweep.json").write_text(json.dumps({"name": "sweep", "runs": [{"name": f"r{i}"} for i in range(6)]}))
    text = write_sweep_report(sweep).read_text()
    assert text.index("## Results") < text.index("## Learning curves")  # the compact table comes first
    results = text[text.index("## Results"):text.index("## Definition")]
    assert "| run | changed | final val loss | best val loss |" in results
    assert "| r0 | d_model=128, num_layers=2, lr_max=0.001, batch_size=16 |" in results
    for png in sorted((sweep / "plots").glob("*.png")):
        _assert_every_point_visible(png)
        legend = [line["label"] for line in json.loads(png.with_name(png.stem + ".axes.json").read_text())["axes"][0]
                  ["lines"]]
        assert legend == [f"r{i}" for i in range(6)]  # short run names, not every key
    assert text.count("Runs in the legend:") == 4 and "| r5 | 128 | 6 | 0.003 | 32 |" in text


def test_legends_ignore_settings_a_run_does_not_use(tmp_path):
    dense = _write_run(tmp_path / "dense", ["model.ffn=swiglu"])
    moe4 = _write_run(tmp_path / "moe4", ["model.ffn=moe", "model.num_experts=4"])
    moe8 = _write_run(tmp_path / "moe8", ["model.ffn=moe", "model.num_experts=8"])
    labels = run_labels([load_run(dense), load_run(moe4), load_run(moe8)])
    assert labels == ["ffn=swiglu", "ffn=moe, num_experts=4", "ffn=moe, num_experts=8"]
    assert run_labels([load_run(dense), load_run(moe4)]) == ["ffn=swiglu", "ffn=moe"]
