"""Experiments: grid expansion, batch-size rules, sweep files, the resumable sweep runner, plots, reports.

Training itself is replaced here by a stand-in (``fake_train``) that writes a
run directory exactly as the training loop's contract describes (config.toml,
metrics.jsonl with train/eval/end events, a checkpoint), with a loss curve that
depends on the learning rate and diverges above a threshold. The real tiny-model
sweep is in test_experiments_real.py.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.config import RunConfig, apply_overrides, dump_config, load_config
from cs336_basics.errors import ConfigError, UserError
from cs336_basics.experiments import (Ablation, SweepSpec, expand, expand_grid, load_sweep_file, merge_specs,
                                      parse_grid_arg, run_sweep)
from cs336_basics.reporting.plotting import plot_runs
from cs336_basics.reporting.sweep_report import final_metrics_table, is_sweep_dir, write_sweep_report
from cs336_basics.runs.records import Run, config_value, differing_keys, load_run, run_labels, summarize_records
from cs336_basics.experiments.sweep import SweepRunner
from cs336_basics.runs.layout import RunDir
from cs336_basics.runs.metrics import MetricsLog, read_jsonl
from cs336_basics.training.loop import TrainResult
from tests.conftest import run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIVERGE_LR = 0.05


# ----------------------------------------------------------------------------- stand-ins


def synthetic_losses(lr: float, steps: int) -> list[float]:
    """A plausible curve: faster decay for larger lr; above DIVERGE_LR the loss blows up then goes nan."""
    if lr >= DIVERGE_LR:
        return [5.0 * 3**t if t < 4 else float("nan") for t in range(steps)]
    return [2.0 + 7.0 * math.exp(-lr * 300 * (t + 1) / steps) for t in range(steps)]


def write_run(root: Path, cfg: RunConfig, *, start: int = 0, stop: int | None = None, end: bool = True,
              stop_reason: str | None = None) -> TrainResult:
    """Write (or continue) a run directory the way the training loop does."""
    run = RunDir(root).create()
    if start:  # resuming: like the loop, drop what was logged after the checkpoint (the "end" of the interruption)
        kept = [r for r in read_jsonl(run.metrics_path) if r["event"] != "end"]
        run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    run.write_config(cfg)
    steps = cfg.train.total_steps or 10
    losses = synthetic_losses(cfg.optimizer.lr_max, steps)
    per_step = cfg.train.batch_size * cfg.model.context_length
    stop = steps if stop is None else stop
    vals: list[float] = []
    diverged = False
    with MetricsLog(run.metrics_path) as log:
        for t in range(start, stop):
            loss = losses[t]
            log.log("train", step=t + 1, tokens=(t + 1) * per_step, wallclock=0.1 * (t + 1), loss=loss, lr=cfg.optimizer.lr_max)
            if not math.isfinite(loss):
                diverged = True
                break
            if (t + 1) % 2 == 0:
                vals.append(loss + 0.1)
                log.log("eval", step=t + 1, tokens=(t + 1) * per_step, wallclock=0.1 * (t + 1) + 0.05, val_loss=loss + 0.1)
        (run.checkpoints / "latest.pt").write_bytes(b"ckpt")
        stop_reason = stop_reason or ("diverged_nonfinite" if diverged else "completed")
        if end:
            log.log("end", step=t + 1, tokens=(t + 1) * per_step, diverged=diverged, stop_reason=stop_reason)
    return TrainResult(root, t + 1, (t + 1) * per_step, vals[-1] if vals else None, min(vals) if vals else None,
                      diverged, stop_reason, 0.1 * (t + 1))


class FakeTrain:
    """Callable like training.loop.train; records calls; can be told to be interrupted or to fail."""

    def __init__(self, interrupt: set[str] = frozenset(), fail: dict[str, Exception] | None = None):
        self.calls: list[tuple[str, str | None]] = []
        self.interrupt = set(interrupt)
        self.fail = fail or {}

    def __call__(self, cfg: RunConfig, resume: str | None = None) -> TrainResult:
        name = cfg.train.run_name
        self.calls.append((name, resume))
        root = Path(cfg.train.runs_dir) / name
        if name in self.fail:
            raise self.fail[name]
        if name in self.interrupt:  # Ctrl-C half-way: the loop saves a checkpoint and returns stop_reason sigint
            self.interrupt.discard(name)
            return write_run(root, cfg, stop=4, stop_reason="sigint")
        if resume:
            assert (root / "checkpoints" / "latest.pt").exists()
            return write_run(root, cfg, start=4)
        return write_run(root, cfg)


@pytest.fixture
def base_toml(tmp_path) -> Path:
    path = tmp_path / "base.toml"
    cfg = apply_overrides(RunConfig(), ["model.context_length=16", "train.batch_size=8", "train.total_steps=10",
                                        "optimizer.warmup_iters=4", "train.eval_interval=2"])
    dump_config(cfg, path)
    return path


# ----------------------------------------------------------------------------- grid expansion


def test_parse_grid_arg_and_errors():
    assert parse_grid_arg("optimizer.lr_max=1e-4,3e-4") == ("optimizer.lr_max", ["1e-4", "3e-4"])
    for bad in ("optimizer.lr_max", "lr_max=1,2", "optimizer.lr_max=1,,2", "optimizer.lr_max="):
        with pytest.raises(ConfigError):
            parse_grid_arg(bad)


def test_expand_is_the_cartesian_product_and_overrides_reproduce_each_config(base_toml):
    runs = expand_grid(base_toml, ["optimizer.lr_max=1e-4,3e-4,1e-3", "train.batch_size=4,8"])
    assert len(runs) == 6
    assert len({r.name for r in runs}) == 6
    assert {(r.config.optimizer.lr_max, r.config.train.batch_size) for r in runs} == {
        (lr, bs) for lr in (1e-4, 3e-4, 1e-3) for bs in (4, 8)}
    base = load_config(base_toml)
    for r in runs:
        assert apply_overrides(base, r.overrides) == r.config  # what results.jsonl records re-creates the run
        assert r.swept == {"optimizer.lr_max": r.config.optimizer.lr_max, "train.batch_size": r.config.train.batch_size}
    assert runs[0].name == "lr_max=1e-4__batch_size=4"


@settings(max_examples=30, deadline=None)
@given(lrs=st.lists(st.sampled_from(["1e-4", "3e-4", "1e-3", "3e-3", "0.01"]), min_size=1, max_size=4, unique=True),
       layers=st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True),
       ablations=st.lists(st.sampled_from(["parallel", "postnorm", "prenorm"]), max_size=3, unique=True))
def test_expand_property_counts_and_names(lrs, layers, ablations):
    spec = SweepSpec(name="p", grid=[("optimizer.lr_max", lrs), ("model.num_layers", [str(n) for n in layers])],
                     ablations=[Ablation(a, [f"model.block={a}"]) for a in ablations])
    runs = expand(spec)
    assert len(runs) == len(lrs) * len(layers) * max(1, len(ablations))
    assert len({r.name for r in runs}) == len(runs)
    for r in runs:
        if ablations:
            assert r.config.model.block == r.swept["ablation"]
        assert r.config.model.num_layers == r.swept["model.num_layers"]


def test_ablations_cross_grid_and_errors_name_the_run(base_toml):
    spec = SweepSpec(name="a", base_config=str(base_toml), grid=[("optimizer.lr_max", ["1e-3", "3e-3"])],
                     ablations=[Ablation("baseline"), Ablation("nope", ["model.position=none"])])
    runs = expand(spec)
    assert [r.name for r in runs] == ["baseline__lr_max=1e-3", "baseline__lr_max=3e-3", "nope__lr_max=1e-3",
                                      "nope__lr_max=3e-3"]
    assert runs[2].config.model.position == "none" and runs[0].config.model.position == "rope"
    bad = SweepSpec(name="a", ablations=[Ablation("oops", ["model.blok=parallel"])])
    with pytest.raises(ConfigError, match="run 'oops'.*model.blok"):
        expand(bad)
    with pytest.raises(ConfigError, match="used twice"):
        merge_specs(SweepSpec(name="a", ablations=[Ablation("x"), Ablation("x")]))
    with pytest.raises(ConfigError, match="plain directory name"):
        merge_specs(None, name="bad name/")


@pytest.mark.parametrize("rule,factor", [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_batch_rule_scales_lr(base_toml, rule, factor):
    runs = expand_grid(base_toml, ["train.batch_size=8,32"], overrides=["optimizer.lr_max=1e-3", "optimizer.lr_min=1e-4"],
                       batch_rule=rule)
    ref, big = runs
    assert ref.config.optimizer.lr_max == pytest.approx(1e-3)
    assert big.config.optimizer.lr_max == pytest.approx(1e-3 * factor)
    assert big.config.optimizer.lr_min == pytest.approx(1e-4 * factor)
    assert big.config.train.total_steps == 10  # without --fixed-tokens the step count is unchanged


def test_fixed_tokens_keeps_budget_and_rescales_cadence(base_toml):
    runs = expand_grid(base_toml, ["train.batch_size=2,8,16"], fixed_tokens=True)
    budget = 10 * 8 * 16
    for r in runs:
        t = r.config.train
        assert t.total_steps * t.batch_size * r.config.model.context_length == budget
        assert t.total_tokens is None
    small, ref, big = runs
    assert (small.config.train.total_steps, ref.config.train.total_steps, big.config.train.total_steps) == (40, 10, 5)
    assert small.config.optimizer.warmup_iters == 16 and big.config.optimizer.warmup_iters == 2
    assert small.config.train.eval_interval == 8 and big.config.train.eval_interval == 1
    with pytest.raises(ConfigError, match="fixed-tokens needs"):
        expand_grid(None, ["train.batch_size=2,8"], fixed_tokens=True)


def test_fixed_tokens_and_batch_rule_count_accumulated_batches_once(base_toml):
    """train.batch_size is already the whole step's batch (accumulation splits it), so a run that only changes
    grad_accum_steps trains the same tokens per step: same steps, same learning rate."""
    runs = expand_grid(base_toml, ["train.grad_accum_steps=1,4"], overrides=["optimizer.lr_max=1e-3"],
                       batch_rule="linear", fixed_tokens=True)
    plain, accumulated = runs
    assert accumulated.config.train.grad_accum_steps == 4
    assert accumulated.config.train.total_steps == plain.config.train.total_steps == 10
    assert accumulated.config.optimizer.lr_max == pytest.approx(1e-3)
    assert accumulated.config.tokens_per_step() == plain.config.tokens_per_step() == 8 * 16
    assert accumulated.config.train.micro_batch == 2


def test_sweep_file_format(tmp_path, base_toml):
    path = tmp_path / "abl.toml"
    path.write_text(textwrap.dedent("""
        [sweep]
        name = "abl"
        base = "base.toml"
        set = ["train.total_steps=6"]
        [grid]
        "optimizer.lr_max" = [1e-3, 3e-3]
        "model.tie_embeddings" = [true]
        [[runs]]
        name = "baseline"
        [[runs]]
        name = "parallel"
        set = ["model.block=parallel"]
    """))
    spec = load_sweep_file(path)
    assert spec.base_config == str(tmp_path / "base.toml")
    runs = expand(spec)
    assert len(runs) == 4
    assert all(r.config.train.total_steps == 6 and r.config.model.tie_embeddings for r in runs)
    assert sum(r.config.model.block == "parallel" for r in runs) == 2
    # the command line adds grid keys and overrides to a file
    merged = merge_specs(load_sweep_file(path), grid=["train.seed=0,1"], overrides=["train.total_steps=8"])
    assert len(expand(merged)) == 8 and all(r.config.train.total_steps == 8 for r in expand(merged))
    (tmp_path / "bad.toml").write_text("[sweep]\nname='x'\n[grdi]\na=[1]\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_sweep_file(tmp_path / "bad.toml")
    (tmp_path / "bad2.toml").write_text("[[runs]]\nset=['model.block=parallel']\n")
    with pytest.raises(ConfigError, match="needs a name"):
        load_sweep_file(tmp_path / "bad2.toml")


def test_shipped_presets_expand():
    presets = sorted((Path(__file__).resolve().parents[2] / "configs" / "experiments").glob("*.toml"))
    sweep_files = [p for p in presets if "[sweep]" in p.read_text()]
    assert len(sweep_files) >= 8, [p.name for p in presets]
    for path in sweep_files:
        runs = expand(load_sweep_file(path))
        assert runs, path


# ----------------------------------------------------------------------------- the sweep runner


def lr_spec(base_toml: Path, name: str = "lr") -> SweepSpec:
    return merge_specs(None, name=name, base_config=str(base_toml), grid=["optimizer.lr_max=0.003,0.01,0.1"])


def test_sweep_records_results_and_divergence_without_crashing(tmp_path, base_toml):
    fake = FakeTrain()
    outcome = run_sweep(lr_spec(base_toml), tmp_path / "sweeps", train_fn=fake)
    assert [c[0] for c in fake.calls] == ["lr_max=0.003", "lr_max=0.01", "lr_max=0.1"]
    lines = read_jsonl(outcome.sweep_dir / "results.jsonl")
    assert [r["name"] for r in lines] == ["lr_max=0.003", "lr_max=0.01", "lr_max=0.1"]
    by_name = {r["name"]: r for r in lines}
    assert by_name["lr_max=0.1"]["diverged"] is True and by_name["lr_max=0.1"]["status"] == "diverged"
    assert by_name["lr_max=0.01"]["status"] == "finished" and not by_name["lr_max=0.01"]["diverged"]
    assert by_name["lr_max=0.01"]["config_diff"] == {"optimizer.lr_max": 0.01}
    assert by_name["lr_max=0.01"]["final_val_loss"] < by_name["lr_max=0.003"]["final_val_loss"]
    for key in ("best_val_loss", "tokens", "wallclock", "overrides", "config_hash"):
        assert key in by_name["lr_max=0.01"]
    assert is_sweep_dir(outcome.sweep_dir)
    report = outcome.report.read_text()
    assert "plots/val_loss_vs_steps.png" in report and "Diverged" in report and "lr_max=0.1" in report
    assert (outcome.sweep_dir / "plots" / "val_loss_vs_wallclock.png").read_bytes().startswith(PNG_SIGNATURE)


def test_resume_of_a_half_finished_sweep(tmp_path, base_toml):
    spec = lr_spec(base_toml)
    fake = FakeTrain(interrupt={"lr_max=0.01"})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "sweeps", train_fn=fake, report=False)
    sweep_dir = tmp_path / "sweeps" / "lr"
    assert [r["name"] for r in read_jsonl(sweep_dir / "results.jsonl")] == ["lr_max=0.003"]
    states = dict((r.name, s) for r, s in SweepRunner(spec, tmp_path / "sweeps").plan())
    assert states == {"lr_max=0.003": "done", "lr_max=0.01": "resume", "lr_max=0.1": "new"}

    again = FakeTrain()
    outcome = run_sweep(spec, tmp_path / "sweeps", train_fn=again, report=False)
    assert again.calls == [("lr_max=0.01", "auto"), ("lr_max=0.1", None)]
    assert outcome.skipped == ["lr_max=0.003"] and outcome.ran == ["lr_max=0.01", "lr_max=0.1"]
    lines = read_jsonl(sweep_dir / "results.jsonl")
    assert sorted(r["name"] for r in lines) == ["lr_max=0.003", "lr_max=0.01", "lr_max=0.1"]
    steps = [r["step"] for r in read_jsonl(sweep_dir / "runs" / "lr_max=0.01" / "metrics.jsonl") if r["event"] == "train"]
    assert steps == list(range(1, 11))  # resumed after step 4, no step logged twice

    third = FakeTrain()
    assert run_sweep(spec, tmp_path / "sweeps", train_fn=third, report=False).ran == [] and third.calls == []


def test_finished_but_unrecorded_run_is_recorded_not_retrained(tmp_path, base_toml):
    spec = lr_spec(base_toml)
    runner = SweepRunner(spec, tmp_path / "sweeps")
    first = runner.runs[0]
    write_run(runner.sweep_dir / "runs" / first.name, first.config)  # finished, then the sweep crashed
    fake = FakeTrain()
    outcome = runner.run(train_fn=fake, report=False)
    assert first.name not in [c[0] for c in fake.calls]
    assert outcome.results[first.name]["status"] == "finished"
    assert outcome.results[first.name]["final_val_loss"] is not None


def test_changed_definition_under_same_name_is_an_error(tmp_path, base_toml):
    run_sweep(lr_spec(base_toml), tmp_path / "s", train_fn=FakeTrain(), report=False)
    changed = merge_specs(lr_spec(base_toml), overrides=["model.d_model=64"])
    with pytest.raises(UserError, match="different config"):
        run_sweep(changed, tmp_path / "s", train_fn=FakeTrain(), report=False)


def test_failed_and_oom_runs_are_recorded_and_the_sweep_goes_on(tmp_path, base_toml):
    fake = FakeTrain(fail={"lr_max=0.003": RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
                           "lr_max=0.01": ValueError("boom")})
    outcome = run_sweep(lr_spec(base_toml), tmp_path / "s", train_fn=fake)
    assert [c[0] for c in fake.calls] == ["lr_max=0.003", "lr_max=0.01", "lr_max=0.1"]
    assert outcome.results["lr_max=0.003"]["status"] == "oom"
    assert outcome.results["lr_max=0.01"]["status"] == "failed" and "boom" in outcome.results["lr_max=0.01"]["error"]
    assert outcome.results["lr_max=0.1"]["status"] == "diverged"
    assert "lr_max=0.003: oom" in outcome.report.read_text()


STAND_IN_TRAINER = textwrap.dedent("""
    import json, os, sys, time, tomllib
    from pathlib import Path
    cfg = tomllib.loads(Path(sys.argv[1]).read_text())
    run = Path(cfg["train"]["runs_dir"]) / cfg["train"]["run_name"]
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    time.sleep(0.3)
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"event": "train", "step": 1, "tokens": 8, "wallclock": 0.1, "loss": 3.0, "gpu": gpu,
                             "start": t0}) + "\\n")
        fh.write(json.dumps({"event": "eval", "step": 1, "tokens": 8, "wallclock": 0.2, "val_loss": 3.5}) + "\\n")
        fh.write(json.dumps({"event": "end", "step": 1, "tokens": 8, "wallclock": 0.3, "end": time.time()}) + "\\n")
    sys.exit(3 if cfg["optimizer"]["lr_max"] > 0.05 else 0)
""")


def test_subprocess_launcher_schedules_one_run_per_gpu(tmp_path, base_toml):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN_TRAINER)

    class StandIn(SweepRunner):
        def child_command(self, cfg_path, resume):
            return [sys.executable, str(script), str(cfg_path)]

    runner = StandIn(lr_spec(base_toml), tmp_path / "s")
    outcome = runner.run(gpus=["0", "1"], report=False)
    assert sorted(outcome.ran) == ["lr_max=0.003", "lr_max=0.01", "lr_max=0.1"]
    first = {}
    for name in outcome.ran:
        rec = read_jsonl(runner.sweep_dir / "runs" / name / "metrics.jsonl")
        first[name] = rec
        assert rec[0]["gpu"] in ("0", "1")
    # the first two ran at the same time on different GPUs
    a, b = first["lr_max=0.003"], first["lr_max=0.01"]
    assert {a[0]["gpu"], b[0]["gpu"]} == {"0", "1"}
    assert a[0]["start"] < b[-1]["end"] and b[0]["start"] < a[-1]["end"]
    assert outcome.results["lr_max=0.1"]["status"] == "failed" and outcome.results["lr_max=0.1"]["returncode"] == 3
    assert outcome.results["lr_max=0.01"]["final_val_loss"] == 3.5
    assert (runner.sweep_dir / "logs" / "lr_max=0.01.log").exists()
    assert (runner.sweep_dir / "configs" / "lr_max=0.01.toml").exists()


# ----------------------------------------------------------------------------- reading, plotting, tables


def make_runs(tmp_path: Path, lrs=(0.003, 0.01, 0.1)) -> list[Path]:
    paths = []
    for lr in lrs:
        cfg = apply_overrides(RunConfig(), [f"optimizer.lr_max={lr}", "train.total_steps=10", "model.context_length=16",
                                            f"train.run_name=lr{lr}"])
        paths.append(write_run(tmp_path / "runs" / f"lr{lr}", cfg).run_dir)
    return paths


def test_summaries_detect_divergence_from_metrics():
    recs = [{"event": "train", "step": 1, "tokens": 10, "wallclock": 1.0, "loss": 5.0},
            {"event": "eval", "step": 1, "tokens": 10, "wallclock": 1.5, "val_loss": 4.0},
            {"event": "eval", "step": 2, "tokens": 20, "wallclock": 2.5, "val_loss": 4.5},
            {"event": "train", "step": 3, "tokens": 30, "wallclock": 3.0, "loss": "nan"}]
    s = summarize_records(recs)
    assert s.diverged and not s.finished and s.best_val_loss == 4.0 and s.final_val_loss == 4.5
    assert (s.steps, s.tokens, s.wallclock) == (3, 30, 3.0)
    ok = summarize_records(recs[:3] + [{"event": "end", "step": 2, "stop_reason": "completed"}])
    assert ok.finished and not ok.diverged
    exploded = summarize_records(recs[:3] + [{"event": "end", "step": 2, "diverged": True, "stop_reason": "loss exploded"}])
    assert exploded.diverged


def test_plot_runs_writes_valid_png_svg_and_series(tmp_path):
    paths = make_runs(tmp_path)
    png, svg, sidecar = plot_runs(paths, x="steps", metric="val_loss", out=tmp_path / "out" / "curves")
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    series = json.loads(sidecar.read_text())
    assert series["curves"] == 3 and series["varied"] == ["optimizer.lr_max"]
    labels = [s["label"] for s in series["series"]]
    assert labels == ["lr_max=0.003", "lr_max=0.01", "lr_max=0.1"]
    assert [s["diverged"] for s in series["series"]] == [False, False, True]
    assert series["series"][0]["x"] == [2, 4, 6, 8, 10]
    # wall-clock and the train loss, through a folder of runs
    _, _, side2 = plot_runs([tmp_path / "runs"], x="wallclock", metric="loss", out=tmp_path / "out" / "wall")
    data2 = json.loads(side2.read_text())
    assert data2["curves"] == 3 and data2["series"][0]["x"][0] == pytest.approx(0.1)
    assert data2["series"][2]["y"][-1] is None  # the nan is kept as a gap, not dropped silently


def test_plot_errors_are_user_errors(tmp_path):
    paths = make_runs(tmp_path, lrs=(0.01,))
    with pytest.raises(UserError, match="logged metrics: .*val_loss"):
        plot_runs(paths, metric="val_perplexity")
    with pytest.raises(UserError, match="x axis"):
        plot_runs(paths, x="epochs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no run directories"):
        plot_runs([tmp_path / "empty"])
    default = plot_runs(paths)[0]
    assert default == paths[0] / "plots" / "val_loss_vs_steps.png"


def test_differing_keys_and_table(tmp_path):
    paths = make_runs(tmp_path)
    runs = [load_run(p) for p in paths]
    assert differing_keys(runs) == ["optimizer.lr_max"]  # run_name differs too but is ignored
    table = final_metrics_table(paths)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| run | lr_max | final val loss | best val loss |") and len(lines) == 2 + 3
    assert "diverged" in lines[-1] and "finished" in lines[2]


def test_muon_settings_tell_muon_runs_apart_and_are_unused_under_adamw():
    flat = {f"optimizer.{k}": v for k, v in {"name": "adamw", "lr_max": 1e-3, "muon_lr": 0.02}.items()}
    adamw = Run(Path("adamw"), config=flat)
    muon = Run(Path("muon"), config={**flat, "optimizer.name": "muon", "optimizer.muon_lr": 0.05})
    faster = Run(Path("faster"), config={**flat, "optimizer.name": "muon", "optimizer.muon_lr": 0.1})
    assert differing_keys([adamw, muon]) == ["optimizer.name"]  # AdamW has no say on Muon's rate
    assert config_value(adamw, "optimizer.muon_lr") == "unused" and config_value(muon, "optimizer.muon_lr") == "0.05"
    assert differing_keys([adamw, muon, faster]) == ["optimizer.muon_lr", "optimizer.name"]
    assert run_labels([adamw, muon, faster]) == ["name=adamw", "muon_lr=0.05, name=muon", "muon_lr=0.1, name=muon"]


def test_write_sweep_report_from_run_dirs_only(tmp_path):
    make_runs(tmp_path)
    report = write_sweep_report(tmp_path)
    text = report.read_text()
    assert text.count("![") == 4 and "| run | lr_max |" in text and "Best validation loss" in text
    with pytest.raises(UserError):
        write_sweep_report(tmp_path / "nope")


# ----------------------------------------------------------------------------- CLI


def test_cli_plot_and_table(tmp_path):
    make_runs(tmp_path)
    result = run_cli("plot", str(tmp_path / "runs"), "--x", "wallclock", "--table", "--out", str(tmp_path / "p" / "wall"))
    assert result.returncode == 0, result.stderr
    assert "| run | lr_max |" in result.stdout
    assert (tmp_path / "p" / "wall.png").read_bytes().startswith(PNG_SIGNATURE)
    bad = run_cli("plot", str(tmp_path / "runs"), "--metric", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_cli_sweep_errors_and_dry_run(tmp_path, base_toml, capsys):
    from cs336_basics.cli import main  # in-process: the error contract is the same, without a torch import per call

    assert main(["sweep", "--config", str(base_toml)]) == 2
    assert "nothing to sweep" in capsys.readouterr().err
    assert main(["sweep", "--config", str(base_toml), "--grid", "model.d_modle=32,64"]) == 2
    err = capsys.readouterr().err
    assert "model.d_modle" in err and err.count("\n") == 1
    assert main(["sweep", "--config", str(base_toml), "--grid", "optimizer.lr_max=1e-3,3e-3", "--out", str(tmp_path / "s"),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("\tnew\t") == 2 and "--set optimizer.lr_max=3e-3" in out
    assert not (tmp_path / "s").exists()  # a dry run writes nothing
    assert main(["sweep", "--config", str(base_toml), "--grid", "train.batch_size=4", "--gpus", "x", "--out", str(tmp_path / "s")]) == 2
    assert "--gpus" in capsys.readouterr().err


def test_unset_values_are_labelled_default_and_sweep_order_is_kept(tmp_path):
    sweep = tmp_path / "sw"
    for name, sets in (("zeta", ["model.d_ff=256"]), ("alpha", [])):
        cfg = apply_overrides(RunConfig(), ["train.total_steps=4", "model.context_length=16", *sets])
        write_run(sweep / "runs" / name, cfg)
    (sweep / "sweep.json").write_text(json.dumps({"name": "sw", "runs": [{"name": "zeta"}, {"name": "alpha"}]}))
    _, _, sidecar = plot_runs([sweep], out=tmp_path / "p")
    labels = [s["label"] for s in json.loads(sidecar.read_text())["series"]]
    assert labels == ["d_ff=256", "d_ff=default"]  # zeta first: the sweep's order, not alphabetical
    assert "| zeta | 256 |" in final_metrics_table([sweep]) and "| alpha | default |" in final_metrics_table([sweep])


def test_cli_sweep_with_a_failed_run_exits_with_runs_failed(tmp_path, base_toml, monkeypatch, capsys):
    """A run that raises is recorded and the others go on; the command's exit code says some failed (4), never
    the internal-error code 1."""
    from cs336_basics.cli import main
    from cs336_basics.errors import ExitCode
    from cs336_basics.training import loop

    monkeypatch.setattr(loop, "train", FakeTrain(fail={"lr_max=0.01": ValueError("boom")}))
    code = main(["sweep", "--config", str(base_toml), "--grid", "optimizer.lr_max=0.003,0.01", "--out",
                 str(tmp_path / "s"), "--no-report"])
    assert code == ExitCode.RUNS_FAILED == 4
    assert "1 run(s) failed: lr_max=0.01" in capsys.readouterr().err
    [results] = (tmp_path / "s").rglob("results.jsonl")
    assert {r["name"]: r["status"] for r in read_jsonl(results)} == {"lr_max=0.003": "finished", "lr_max=0.01": "failed"}
