"""The variant registries: one list of names per axis, every name builds, the config takes its choices from them,
and the model's maps of classes hold exactly those names."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from cs336_basics.config import ModelConfig, RunConfig, describe_fields
from cs336_basics.config.accounting import count_parameters
from cs336_basics.config.variants import ATTENTION, REGISTRIES, attention_kernel
from cs336_basics.model import TransformerLM
from cs336_basics.model.attention import ReferenceAttention, SDPAAttention
from cs336_basics.model.variant_classes import ATTENTION_KERNELS, CLASSES

TINY = dict(vocab_size=40, context_length=16, d_model=32, num_layers=2, num_heads=4, num_experts=3)


def test_config_choices_are_the_registry_names():
    hints = typing.get_type_hints(ModelConfig)
    for registry in REGISTRIES:
        assert typing.get_args(hints[registry.axis]) == registry.names
    help_rows = {key: tp for key, tp, _, _ in describe_fields(RunConfig)}
    assert all(f"'{name}'" in help_rows[f"model.{r.axis}"] for r in REGISTRIES for name in r.names)


def test_model_maps_hold_exactly_the_registry_names():
    assert list(CLASSES) == [registry.axis for registry in REGISTRIES]
    for registry in REGISTRIES:
        assert tuple(CLASSES[registry.axis]) == registry.implemented, registry.axis
        assert all(isinstance(cls, type) for cls in CLASSES[registry.axis].values())
    # the one name without a class of its own resolves to another entry
    assert [(r.axis, n) for r in REGISTRIES for n in r.names if n not in CLASSES[r.axis]] == [("attention", "auto")]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.axis)
def test_every_entry_builds(registry):
    for name in registry.names:
        if name not in registry.implemented:  # auto: names another entry per device type
            assert attention_kernel(name, "cpu") in ATTENTION_KERNELS
            continue
        cfg = ModelConfig(**{**TINY, registry.axis: name})
        model = TransformerLM(cfg, seed=0)
        assert model(torch.randint(0, 40, (2, 8))).shape == (2, 8, 40)
        # the config-only accounting agrees with the built model for every variant
        assert count_parameters(cfg)["total"] == sum(p.numel() for p in model.parameters())


def test_auto_attention_is_chosen_once_at_build_time():
    cpu = TransformerLM(ModelConfig(**TINY), device="cpu")
    assert all(type(layer.attn.kernel) is SDPAAttention for layer in cpu.layers)
    other = TransformerLM(ModelConfig(**TINY), device="meta")  # a device without a fused kernel in the table
    assert all(type(layer.attn.kernel) is ReferenceAttention for layer in other.layers)
    assert attention_kernel("auto", "cuda") == "sdpa" and attention_kernel("auto", "mps") == "reference"
    assert attention_kernel("reference", "cuda") == "reference"
    assert "auto" not in ATTENTION_KERNELS
    assert all(kernel in ATTENTION_KERNELS for _, kernel in ATTENTION["auto"].by_device)


def test_unknown_names_are_rejected_with_the_choices():
    for registry in REGISTRIES:
        with pytest.raises(ValueError, match=registry.names[0]):
            dataclasses.replace(ModelConfig(**TINY), **{registry.axis: "bogus"})
