"""``train.compile``: explicit settings obeyed, ``auto`` decided per device and run length, the decision recorded."""

from __future__ import annotations

import pytest
import torch

from cs336_basics.config import load_config
from cs336_basics.errors import ConfigError
from cs336_basics.runs.metrics import read_jsonl
from cs336_basics.training import train
from cs336_basics.training.compile_choice import CUDA_MIN_STEPS, choose_compile
from tests.training_fixtures import make_byte_dataset, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("device", [CPU, CUDA, torch.device("mps")])
@pytest.mark.parametrize("setting", [True, False])
def test_an_explicit_setting_is_obeyed_on_every_device(device, setting):
    choice = choose_compile(setting, device, planned_steps=10**6)
    assert choice.compiled is setting and choice.reason == f"train.compile={str(setting).lower()}"


def test_auto_keeps_cpu_and_mps_eager_however_long_the_run():
    for device in (CPU, torch.device("mps")):
        choice = choose_compile("auto", device, planned_steps=10**7)
        assert not choice.compiled and choice.reason.startswith(f"auto: {device.type} runs eager")


def test_auto_compiles_a_cuda_run_long_enough_to_repay_it():
    assert choose_compile("auto", CUDA, CUDA_MIN_STEPS).compiled
    short = choose_compile("auto", CUDA, CUDA_MIN_STEPS - 1)
    assert not short.compiled and "repay no compile" in short.reason


def test_the_setting_accepts_auto_true_false_and_nothing_else():
    assert load_config(None, []).train.compile == "auto"
    assert load_config(None, ["train.compile=true"]).train.compile is True
    assert load_config(None, ["train.compile=off"]).train.compile is False
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(None, ["train.compile=sometimes"])


def test_a_run_records_and_prints_its_decision(tmp_path, capsys):
    dataset = make_byte_dataset(tmp_path / "bytes")
    result = train(tiny_config(dataset, tmp_path, "train.total_steps=2", "train.eval_interval=100",
                               "logging.quiet=false"))
    start = read_jsonl(result.run_dir / "metrics.jsonl")[0]
    assert start["compile"] is False and start["compile_reason"] == "auto: cpu runs eager, with its C kernels"
    assert "eager (auto: cpu runs eager, with its C kernels)" in capsys.readouterr().err
