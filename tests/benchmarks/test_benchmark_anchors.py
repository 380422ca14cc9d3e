"""The standard PyTorch loops the training benchmark compares against compute what they claim to."""

from __future__ import annotations

import torch

from benchmarks.bench_train import STANDARD_LOOPS
from benchmarks.reference_models import ROPE_FORMS, StdGPT, rope_frequencies
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


# ----------------------------------------------------------------------------- the evaluation benchmark's reference


def _eval_case():
    from benchmarks.bench_eval import sharpen
    from cs336_basics.model import TransformerLM

    cfg = ModelConfig(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4)
    tokens = torch.randint(0, 64, (300,), generator=torch.Generator().manual_seed(0)).numpy()  # last window: 11 inputs
    return sharpen(TransformerLM(cfg, seed=0).eval()), tokens


def _largest_difference(model, tokens) -> float:
    from benchmarks.bench_eval import padded_reference
    from cs336_basics.evaluation import evaluate_loss

    out = []
    for stride, batch in ((None, 8), (None, 1), (8, 8), (4, 8)):
        ref = padded_reference(model, tokens, 16, stride, 8)
        out.append(abs(evaluate_loss(model, tokens, 16, batch, stride=stride, show_progress=False).loss - ref) / ref)
    return max(out)


def test_the_padded_reference_agrees_with_evaluate_loss_to_rounding():
    assert _largest_difference(*_eval_case()) < 1e-7


def test_the_padded_reference_exposes_a_score_mask_that_is_ignored(monkeypatch):
    from cs336_basics.evaluation import token_file_loss

    score = token_file_loss._score_batch
    monkeypatch.setattr(token_file_loss, "_score_batch",
                        lambda logits, targets, mask: score(logits, targets, torch.ones_like(mask)))
    assert _largest_difference(*_eval_case()) > 1e-4  # overlapping targets of the sliding windows scored twice


def test_the_padded_reference_exposes_attention_that_sees_later_tokens(monkeypatch):
    from cs336_basics.model import attention

    fused = attention.fused_attention
    monkeypatch.setattr(attention, "fused_attention",
                        lambda q, k, v, mask, is_causal, dropout_p=0.0: fused(q, k, v, None, False, dropout_p))
    assert _largest_difference(*_eval_case()) > 1e-4  # the short window's padding leaks into its logits
