"""The presets in configs/ load, describe the models the assignment specifies, and build."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cs336_basics.config import load_config
from cs336_basics.training.resolve import total_steps

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_every_top_level_config_loads_and_has_a_length(name):
    cfg = load_config(CONFIGS / name)
    steps = total_steps(cfg, world_size=1)  # None: the run is bounded by train.max_minutes
    assert (steps is not None and steps > 0) or (steps is None and cfg.train.max_minutes > 0)


@pytest.mark.parametrize("name, ffn, d_ff", [("tinystories.toml", "swiglu", 1344), ("tinystories_gelu.toml", "gelu", 2048)])
def test_assignment_tinystories_models(name, ffn, d_ff):
    cfg = load_config(CONFIGS / name)
    m = cfg.model
    assert (m.vocab_size, m.context_length, m.d_model, m.num_layers, m.num_heads) == (10000, 256, 512, 4, 16)
    assert (m.ffn, m.d_ff) == (ffn, d_ff)
    assert cfg.train.total_tokens == 327_680_000
    assert total_steps(cfg, world_size=1) * cfg.train.batch_size * m.context_length == 327_680_000


def test_owt_and_cpu_presets():
    owt = load_config(CONFIGS / "owt.toml")
    assert owt.model.vocab_size == 32000 and owt.model.d_model == 512 and owt.train.total_tokens == 327_680_000
    cpu = load_config(CONFIGS / "tinystories_cpu.toml")
    assert cpu.train.device == "cpu" and cpu.model.d_model < 512


@pytest.mark.parametrize("fast, handout", [("tinystories_fast", "tinystories"), ("owt_fast", "owt")])
def test_fast_presets_change_only_the_recipe(fast, handout):
    """The *_fast presets keep the handout's shape, data and token budget and change the recipe."""
    new, old = load_config(fast), load_config(handout)
    for section in ("data", "train"):
        a, b = dataclasses.asdict(getattr(new, section)), dataclasses.asdict(getattr(old, section))
        assert {k: v for k, v in a.items() if k != "run_name"} == {k: v for k, v in b.items() if k != "run_name"}
    shape = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "position", "block", "norm")
    assert [getattr(new.model, k) for k in shape] == [getattr(old.model, k) for k in shape]
    recipe = (new.optimizer.name, new.optimizer.schedule, new.model.qk_norm, new.model.ffn, new.model.init)
    assert recipe == ("muon", "wsd", "rmsnorm", "relu2", "zero_out")
    ffn_params = lambda m: (2 if m.ffn == "relu2" else 3) * m.d_model * m.d_ff  # noqa: E731
    assert abs(ffn_params(new.model) / ffn_params(old.model) - 1) < 0.02


def test_tinystories_model_builds_with_the_expected_size():
    from cs336_basics.model import TransformerLM

    cfg = load_config(CONFIGS / "tinystories.toml")
    model = TransformerLM(cfg.model)
    assert sum(p.numel() for p in model.parameters()) == 22_696_448
