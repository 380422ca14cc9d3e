"""The standard PyTorch loops the training benchmark compares against compute what they claim to."""

from __future__ import annotations

import torch

from benchmarks.bench_train import ROPE_FORMS, STANDARD_LOOPS, StdGPT, rope_frequencies
from cs336_basics.model import ModelConfig


def test_the_real_valued_rope_is_the_complex_rotation():
    freqs = rope_frequencies(16, 32, 1e4)
    x = torch.randn(2, 32, 4, 16)
    torch.testing.assert_close(ROPE_FORMS["real"](x, freqs), ROPE_FORMS["complex"](x, freqs), rtol=0, atol=1e-6)


def test_both_rope_forms_give_the_same_standard_model():
    cfg = ModelConfig(vocab_size=128, context_length=16, d_model=32, num_layers=2, num_heads=4)
    torch.manual_seed(0)
    complex_model = StdGPT.like(cfg, "complex")
    real_model = StdGPT.like(cfg, "real")
    real_model.load_state_dict(complex_model.state_dict())
    ids = torch.randint(0, 128, (2, 16))
    torch.testing.assert_close(real_model(ids), complex_model(ids), rtol=0, atol=1e-5)
    assert {rope for _, compiled, rope in STANDARD_LOOPS if compiled} == {"real"}  # Inductor fuses only that form
