"""Config loading, overrides and their errors."""

from __future__ import annotations

import pytest

from cs336_basics.config import (RunConfig, apply_override, describe_fields, dump_config, from_dict, load_config,
                                 to_dict, unused_fields)
from cs336_basics.config.run import CONDITIONAL_FIELDS, MUON_FIELDS
from cs336_basics.errors import ConfigError


def test_defaults_round_trip_through_toml_and_yaml(tmp_path):
    cfg = RunConfig()
    for suffix in (".toml", ".yaml"):
        path = dump_config(cfg, tmp_path / f"c{suffix}")
        assert load_config(path) == cfg


def test_file_values_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nd_model = 128\nposition = "learned"\n[optimizer]\nlr_max = 3e-4\n')
    cfg = load_config(path, ["model.num_layers=2", "optimizer.lr_max=1e-3", "train.total_steps=none",
                             "model.position=none", "train.compile=true"])
    assert cfg.model.d_model == 128
    assert cfg.model.num_layers == 2
    assert cfg.optimizer.lr_max == pytest.approx(1e-3)
    assert cfg.train.total_steps is None
    assert cfg.model.position == "none"
    assert cfg.train.compile is True


def test_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  d_model: 64\ntrain:\n  batch_size: 8\n")
    cfg = load_config(path)
    assert (cfg.model.d_model, cfg.train.batch_size) == (64, 8)


@pytest.mark.parametrize("text, key", [
    ("[model]\nd_modle = 1\n", "model.d_modle"),
    ("[modle]\nd_model = 1\n", "modle"),
    ("[model]\nd_model = 'big'\n", "model.d_model"),
    ("[model]\nposition = 'alibi'\n", "model.position"),
    ("[train]\ncompile = 1\n", "train.compile"),
    ("[optimizer]\nlr_max = true\n", "optimizer.lr_max"),
])
def test_bad_file_names_the_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)


@pytest.mark.parametrize("override, key", [
    ("model.nope=3", "model.nope"),
    ("nosection.x=3", "nosection.x"),
    ("model.d_model=abc", "model.d_model"),
    ("model.d_model=1.5", "model.d_model"),
    ("model.block=sideways", "model.block"),
])
def test_bad_override_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_override(RunConfig(), override)


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_override(RunConfig(), "model.d_model")


def test_int_accepted_for_float_but_not_bool_for_int():
    cfg = from_dict(RunConfig, {"optimizer": {"lr_max": 1}})
    assert isinstance(cfg.optimizer.lr_max, float)
    with pytest.raises(ConfigError):
        from_dict(RunConfig, {"model": {"d_model": True}})


def test_unparseable_file_is_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(path)


def test_a_derived_d_ff_follows_the_shape_an_explicit_one_stays():
    """tinystories_cpu spells out d_ff 704, SwiGLU's default for d_model 256: overriding d_model re-derives it."""
    cfg = load_config("tinystories_cpu", ["model.d_model=768"])
    assert cfg.model.resolved_d_ff == 2048 and cfg.model.d_ff is None
    assert load_config("tinystories_cpu", ["model.ffn=gelu"]).model.resolved_d_ff == 4 * 256
    explicit = load_config("tinystories_cpu", ["model.d_model=768", "model.d_ff=1000"])
    assert explicit.model.d_ff == 1000
    kept = load_config(None, ["model.d_ff=999", "model.d_model=256", "model.num_heads=8"])
    assert kept.model.d_ff == 999  # a width that is not the default is the user's choice
    # overrides are checked together: an intermediate d_model that the old head count cannot divide is fine
    assert load_config(None, ["model.d_model=104", "model.num_heads=4"]).model.head_size == 26


def _flat(cfg: RunConfig) -> dict:
    return {f"{section}.{key}": value for section, table in to_dict(cfg).items() for key, value in table.items()}


def test_unused_fields_follow_the_runs_own_choices():
    keys = {key for key, *_ in describe_fields(RunConfig)}
    for rule in CONDITIONAL_FIELDS:  # every rule names real fields and decides on a field with a list of choices
        assert rule.choice in keys and set(rule.keys) <= keys and rule.allowed
    assert MUON_FIELDS == ("optimizer.muon_lr", "optimizer.muon_momentum", "optimizer.muon_nesterov",
                           "optimizer.muon_ns_steps", "optimizer.muon_weight_decay")
    default = unused_fields(_flat(RunConfig()))  # AdamW, cosine, RoPE, SwiGLU
    assert set(MUON_FIELDS) <= default and "optimizer.wsd_decay_fraction" in default
    assert {"model.num_experts", "model.moe_top_k"} <= default and "model.rope_theta" not in default
    muon = unused_fields(_flat(load_config(None, ["optimizer.name=muon", "optimizer.schedule=wsd",
                                                  "model.ffn=moe", "model.position=learned"])))
    assert not set(MUON_FIELDS) & muon and "model.num_experts" not in muon and "model.rope_theta" in muon
    assert "optimizer.wsd_decay_fraction" not in muon and "optimizer.cosine_cycle_iters" not in muon
    # a choice this version does not know (or a missing one) decides nothing
    unknown = {**_flat(RunConfig()), "optimizer.name": "lion", "model.ffn": "kan"}
    assert not {"optimizer.muon_lr", "model.num_experts"} & unused_fields(unknown)
    assert unused_fields({"optimizer.muon_lr": 0.02}) == set()
