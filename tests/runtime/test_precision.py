"""train.dtype=auto: the decision with CPU features injected, its cache, the run's record of it, bf16 loss
parity with float32, resume across a dtype change, and the same rule in evaluation and generation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336_basics.errors import UserError
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.runtime.devices import CpuInfo
from cs336_basics.runtime.precision import MIN_SPEEDUP, choose_dtype, decide_from_timings
from cs336_basics.training import train
from tests.training_fixtures import make_byte_dataset, tiny_config, train_losses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
NATIVE = CpuInfo("Test CPU with AVX512-BF16", 2, 2, frozenset({"avx2", "avx512f", "avx512_bf16"}))
AMX = CpuInfo("Test CPU with AMX", 2, 2, frozenset({"avx2", "amx_bf16", "amx_tile"}))
ARM = CpuInfo("Test Arm CPU", 2, 2, frozenset({"neon", "bf16"}))
EMULATED = CpuInfo("Test CPU with AVX2 only", 2, 2, frozenset({"avx2", "fma"}))


class Timer:
    """A measure() that returns fixed seconds per dtype and counts its calls."""

    def __init__(self, float32_s: float, bfloat16_s: float) -> None:
        self.seconds = {torch.float32: float32_s, torch.bfloat16: bfloat16_s}
        self.calls: list[torch.dtype] = []

    def __call__(self, dtype: torch.dtype) -> float:
        self.calls.append(dtype)
        return self.seconds[dtype]


def test_cuda_is_bf16_and_explicit_settings_are_kept(tmp_path):
    timer = Timer(1.0, 0.5)
    assert choose_dtype("auto", torch.device("cuda"), measure=timer, cache=tmp_path / "c.json").dtype == torch.bfloat16
    assert choose_dtype("auto", torch.device("mps"), measure=timer, cache=tmp_path / "c.json").dtype == torch.float32
    for name, dtype in [("float32", torch.float32), ("bfloat16", torch.bfloat16)]:
        choice = choose_dtype(name, CPU, measure=timer, cpu=NATIVE, cache=tmp_path / "c.json")
        assert choice.dtype == dtype and choice.reason == "as configured"
    assert choose_dtype("float16", torch.device("cuda")).dtype == torch.float16
    assert timer.calls == []  # nothing above needed a measurement
    with pytest.raises(UserError, match="float16 needs a CUDA device"):
        choose_dtype("float16", CPU)
    with pytest.raises(UserError, match="not a dtype"):
        choose_dtype("half", CPU)


def test_a_cpu_that_emulates_bf16_keeps_float32_without_measuring(tmp_path):
    timer = Timer(1.0, 0.1)  # even a (bogus) fast bf16 timing is never asked for
    choice = choose_dtype("auto", CPU, measure=timer, key="k", d_model=512, cpu=EMULATED, cache=tmp_path / "c.json")
    assert choice.dtype == torch.float32 and "no native bf16" in choice.reason and timer.calls == []
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("cpu", [NATIVE, AMX, ARM], ids=["avx512_bf16", "amx", "arm_bf16"])
def test_native_bf16_is_measured_once_then_cached_per_machine_and_shape(cpu, tmp_path):
    cache = tmp_path / "c.json"
    fast = Timer(1.0, 0.6)
    first = choose_dtype("auto", CPU, measure=fast, key="train:a", d_model=512, cpu=cpu, cache=cache)
    assert first.dtype == torch.bfloat16 and not first.cached
    assert (first.float32_s, first.bfloat16_s) == (1.0, 0.6) and "1.67x faster" in first.reason
    assert sorted(map(str, fast.calls)) == ["torch.bfloat16", "torch.float32"]
    again = Timer(1.0, 2.0)  # a second call must not measure again, whatever the timings would say now
    second = choose_dtype("auto", CPU, measure=again, key="train:a", d_model=512, cpu=cpu, cache=cache)
    assert second.dtype == torch.bfloat16 and second.cached and again.calls == []
    other_shape = choose_dtype("auto", CPU, measure=again, key="train:b", d_model=512, cpu=cpu, cache=cache)
    assert other_shape.dtype == torch.float32 and len(again.calls) == 2
    other_machine = CpuInfo("Another CPU", 2, 2, cpu.flags)
    assert not choose_dtype("auto", CPU, measure=Timer(1.0, 0.6), key="train:b", d_model=512, cpu=other_machine,
                            cache=cache).cached


def test_narrow_models_and_marginal_gains_keep_float32(tmp_path):
    timer = Timer(1.0, 0.5)
    narrow = choose_dtype("auto", CPU, measure=timer, key="k", d_model=128, cpu=NATIVE, cache=tmp_path / "c.json")
    assert narrow.dtype == torch.float32 and "too narrow" in narrow.reason and timer.calls == []
    assert decide_from_timings(1.0, 1.0 / (MIN_SPEEDUP - 0.01)).dtype == torch.float32
    assert decide_from_timings(1.0, 1.0 / (MIN_SPEEDUP + 0.01)).dtype == torch.bfloat16
    unmeasured = choose_dtype("auto", CPU, key="k", d_model=512, cpu=NATIVE, cache=tmp_path / "c.json")
    assert unmeasured.dtype == torch.float32 and "not measured" in unmeasured.reason


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": {"dtype": "bfloat16", "float32_s": -1}}'])
def test_a_damaged_cache_means_measuring_again_not_an_error(content, tmp_path):
    cache = tmp_path / "c.json"
    cache.write_text(content)
    timer = Timer(1.0, 0.5)
    assert choose_dtype("auto", CPU, measure=timer, key="x", d_model=512, cpu=NATIVE, cache=cache).dtype == torch.bfloat16
    assert len(timer.calls) == 2 and isinstance(json.loads(cache.read_text()), dict)


def test_an_unwritable_cache_only_costs_a_measurement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = blocker / "sub" / "c.json"  # its parent cannot be created: a file is in the way
    choice = choose_dtype("auto", CPU, measure=Timer(1.0, 0.5), key="x", d_model=512, cpu=NATIVE, cache=cache)
    assert choice.dtype == torch.bfloat16 and not cache.exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_byte_dataset(tmp_path_factory.mktemp("data") / "bytes")


def _native_cpu(monkeypatch, cache_dir: Path, float32_s: float | None = None, bfloat16_s: float | None = None):
    """Make this machine look like a native-bf16 CPU; optionally replace the timed trial steps."""
    import cs336_basics.runtime.precision as precision
    import cs336_basics.training.step as step

    monkeypatch.setattr(precision, "cpu_info", lambda: NATIVE)
    monkeypatch.setenv("CS336_CACHE_DIR", str(cache_dir / "cache"))  # a decision of its own, not a cached one
    if float32_s is not None:
        timings = {"float32": float32_s, "bfloat16": bfloat16_s}
        monkeypatch.setattr(step, "measure_step_seconds", lambda cfg, tokens, steps, warmup: timings[cfg.train.dtype])


def test_a_run_prints_and_records_the_decision_and_both_timings(dataset, tmp_path, monkeypatch, capsys):
    _native_cpu(monkeypatch, tmp_path)  # the real trial steps run: a wide (d_model 256) but short model
    cfg = tiny_config(dataset, tmp_path, "model.d_model=256", "model.num_heads=4", "model.d_ff=256",
                      "train.total_steps=2", "train.eval_interval=100", "logging.quiet=false")
    result = train(cfg)
    start = read_jsonl(result.run_dir / "metrics.jsonl")[0]
    assert start["event"] == "start" and start["dtype"] in ("float32", "bfloat16")
    assert start["dtype_float32_step_s"] > 0 and start["dtype_bfloat16_step_s"] > 0
    assert start["dtype_cached"] is False and "measured" in start["dtype_reason"]
    ratio = start["dtype_float32_step_s"] / start["dtype_bfloat16_step_s"]
    assert (start["dtype"] == "bfloat16") == (ratio >= MIN_SPEEDUP)
    assert f"cpu, {start['dtype']} (" in capsys.readouterr().err
    again = train(tiny_config(dataset, tmp_path, "model.d_model=256", "model.num_heads=4", "model.d_ff=256",
                              "train.total_steps=2", "train.eval_interval=100", "train.run_name=again"))
    start2 = read_jsonl(again.run_dir / "metrics.jsonl")[0]
    assert start2["dtype_cached"] is True and start2["dtype"] == start["dtype"]


def test_auto_trains_in_bf16_where_it_measured_faster(dataset, tmp_path, monkeypatch):
    _native_cpu(monkeypatch, tmp_path, float32_s=1.0, bfloat16_s=0.5)
    result = train(tiny_config(dataset, tmp_path, "model.d_model=256", "model.num_heads=4", "model.d_ff=256",
                               "train.total_steps=3", "train.eval_interval=100"))
    start = read_jsonl(result.run_dir / "metrics.jsonl")[0]
    assert start["dtype"] == "bfloat16" and start["dtype_bfloat16_step_s"] == 0.5
    assert result.stop_reason == "completed" and math.isfinite(result.final_val_loss)
    from cs336_basics.runs.trained import load_trained_model

    weights = load_trained_model(result.run_dir).model.state_dict().values()
    assert all(w.dtype == torch.float32 for w in weights)  # autocast only: parameters stay float32


def test_bf16_training_tracks_float32_over_two_hundred_steps(dataset, tmp_path):
    """bf16 keeps 8 bits of mantissa, so every matmul output carries ~0.4 % relative rounding error; with float32
    parameters, optimizer state and loss reduction (autocast leaves softmax/log-sum-exp and the update in float32)
    those errors act as small noise, not a drift. Over 200 steps the tiny model's loss falls by about 2 nats; the
    two runs' mean losses over the last 20 steps must agree to within 0.05 nats (2-3 % of that progress), a
    tolerance about 5x the differences seen between bf16 runs here and far below what a wrong cast costs (a bf16
    softmax or bf16 optimizer state shifts it by tenths of a nat)."""
    common = ("train.total_steps=200", "train.eval_interval=1000", "train.checkpoint_interval=1000",
              "logging.log_interval=1")
    f32 = train_losses(train(tiny_config(dataset, tmp_path, "train.run_name=f32", "train.dtype=float32",
                                         *common)).run_dir)
    bf16 = train_losses(train(tiny_config(dataset, tmp_path, "train.run_name=bf16", "train.dtype=bfloat16",
                                          *common)).run_dir)
    assert f32[1] - np.mean([f32[s] for s in range(181, 201)]) > 1.5  # both learned a lot
    tail = abs(np.mean([f32[s] for s in range(181, 201)]) - np.mean([bf16[s] for s in range(181, 201)]))
    assert tail < 0.05, tail
    assert f32 != bf16  # the bf16 run really ran in bf16


def test_resume_across_a_dtype_change(dataset, tmp_path):
    first = train(tiny_config(dataset, tmp_path, "train.dtype=float32", "train.stop_at_step=10"))
    assert first.steps == 10
    second = train(tiny_config(dataset, tmp_path, "train.dtype=bfloat16"), resume="auto")
    assert second.steps == 20 and second.stop_reason == "completed"
    records = read_jsonl(second.run_dir / "metrics.jsonl")
    resume = next(r for r in records if r["event"] == "resume")
    assert resume["dtype"] == "bfloat16" and resume["dtype_reason"] == "as configured"
    losses = train_losses(second.run_dir)
    assert sorted(losses) == list(range(1, 21)) and all(math.isfinite(v) for v in losses.values())
    straight = train_losses(train(tiny_config(dataset, tmp_path, "train.run_name=straight",
                                              "train.dtype=float32")).run_dir)
    assert all(losses[s] == straight[s] for s in range(1, 11))  # the float32 half is the same run
    assert abs(losses[20] - straight[20]) < 0.1  # and the bf16 half continues it


def test_eval_and_generate_use_the_same_rule(dataset, tmp_path, monkeypatch):
    from cs336_basics.evaluation.checkpoint_eval import evaluate_checkpoint
    from cs336_basics.generation import SamplingParams, generate
    from cs336_basics.runs.trained import load_trained_model

    run = train(tiny_config(dataset, tmp_path, "train.total_steps=10")).run_dir
    f32 = evaluate_checkpoint(run, device="cpu", dtype="float32")
    bf16 = evaluate_checkpoint(run, device="cpu", dtype="bfloat16")
    assert (f32["dtype"], bf16["dtype"]) == ("float32", "bfloat16")
    assert f32["loss"] != bf16["loss"] and abs(f32["loss"] - bf16["loss"]) < 0.05
    auto = evaluate_checkpoint(run, device="cpu")  # this tiny model is narrower than any measured one
    assert auto["dtype"] == "float32"
    _native_cpu(monkeypatch, tmp_path)
    assert "too narrow" in evaluate_checkpoint(run, device="cpu")["dtype_reason"]
    loaded = load_trained_model(run)
    tok = loaded.tokenizer()
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    a = generate(loaded.model, tok, "Once upon", greedy, dtype=torch.float32)[0]
    b = generate(loaded.model, tok, "Once upon", greedy, dtype=torch.bfloat16)[0]
    assert len(a.token_ids) == len(b.token_ids) > 0 and a.token_ids[:3] == b.token_ids[:3]


def test_inference_measurement_times_a_real_forward_pass(tmp_path, monkeypatch):
    import cs336_basics.runtime.precision as precision
    from cs336_basics.model import ModelConfig, TransformerLM

    monkeypatch.setattr(precision, "cpu_info", lambda: NATIVE)
    cfg = ModelConfig(vocab_size=64, context_length=16, d_model=256, num_layers=1, num_heads=4)
    model = TransformerLM(cfg)
    choice = precision.choose_inference_dtype("auto", model, cfg, CPU, batch=2, context=16)
    assert choice.float32_s > 0 and choice.bfloat16_s > 0 and model.training  # mode restored
    assert precision.choose_inference_dtype("auto", model, cfg, CPU, batch=2, context=16).cached
