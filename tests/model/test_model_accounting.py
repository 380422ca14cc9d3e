"""Parameter/FLOP/memory accounting against the handout's numbers, built models, and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336_basics.config.accounting import (
    activation_elements,
    count_parameters,
    flops_per_token,
    matmul_params,
    memory_bytes,
)
from cs336_basics.model import Linear, ModelConfig, TiedLMHead, TransformerLM, preset
from cs336_basics.cli import main
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded

TINY = dict(vocab_size=50, context_length=16, d_model=32, num_layers=3, num_heads=4)


def test_gpt2_xl_parameter_count_from_the_handout():
    assert count_parameters(preset("gpt2-xl"))["total"] == 1_637_176_000


@pytest.mark.parametrize("name, total", [("gpt2-small", 162_935_040), ("gpt2-medium", 406_014_976),
                                         ("gpt2-large", 837_850_880)])
def test_gpt2_shapes_by_hand(name, total):
    cfg = preset(name)
    d, L, V = cfg.d_model, cfg.num_layers, cfg.vocab_size
    by_hand = V * d + 1024 * d + L * (4 * d * d + 8 * d * d + 2 * d) + d + d * V
    assert by_hand == total
    assert count_parameters(cfg)["total"] == total


def test_gpt2_small_tied_is_openai_count_minus_biases():
    # OpenAI's 124,439,808 has a tied head plus 102,144 bias/LayerNorm-bias parameters we do not have
    cfg = preset("gpt2-small", tie_embeddings=True)
    assert count_parameters(cfg)["total"] == 124_439_808 - 102_144


def test_tinystories_non_embedding_count_both_ways():
    counts = count_parameters(preset("tinystories"))
    assert round(counts["non_embedding"] / 1e6, 2) == 17.71  # the handout's "17.70 M": head in, embeddings out
    assert counts["non_embedding"] == 17_707_520
    assert counts["non_embedding_no_head"] == 17_707_520 - 512 * 10000
    assert counts["embedding"] == 10000 * 512 + 256 * 512


VARIANT_KWARGS = [dict(), dict(ffn="moe", num_experts=3, moe_top_k=2), dict(block="parallel", norm="layernorm"),
                  dict(norm="none"), dict(tie_embeddings=True), dict(ffn="silu", position="sinusoidal"),
                  dict(block="postnorm", position="none"), dict(ffn="gelu", position="learned"),
                  dict(ffn="relu2", qk_norm="rmsnorm", init="zero_out"), dict(qk_norm="rmsnorm", block="parallel")]


@pytest.mark.parametrize("kwargs", VARIANT_KWARGS)
def test_counts_match_built_models(kwargs):
    cfg = preset("llama", **TINY, **kwargs)
    model = TransformerLM(cfg)
    counts = count_parameters(cfg)
    assert counts["total"] == model.num_parameters()
    assert counts["total"] - counts["embedding"] == model.num_parameters(exclude_embeddings=True)
    # every matmul a token goes through: all Linear weights (MoE: router + top_k experts) + the head
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    dense = sum(m.weight.numel() for m in linears)
    if cfg.ffn == "moe":
        expert = sum(p.numel() for p in model.layers[0].ffn.experts[0].parameters())
        dense -= cfg.num_layers * (cfg.num_experts - cfg.moe_top_k) * expert
    if isinstance(model.lm_head, TiedLMHead):
        dense += model.lm_head.weight.numel()
    assert matmul_params(cfg) == dense


def test_flops_are_twice_matmul_params_plus_attention_scores():
    cfg = preset("tinystories")
    flops = flops_per_token(cfg)
    T, d, L = 256, 512, 4
    assert flops["attention_scores"] == L * 4 * T * d
    assert flops["total"] == 2 * matmul_params(cfg) + flops["attention_scores"]
    assert flops["train"] == 3 * flops["total"]
    assert flops["lm_head"] == 2 * d * 10000
    assert flops_per_token(cfg, seq_len=128)["attention_scores"] == flops["attention_scores"] // 2


def test_memory_components():
    cfg = preset("llama", **TINY)
    params = count_parameters(cfg)["total"]
    mem = memory_bytes(cfg, batch_size=2)
    assert mem["parameters"] == mem["gradients"] == 4 * params
    assert mem["adamw_state"] == 8 * params
    acts = activation_elements(cfg, 2)
    assert mem["activations"] == 4 * acts["total"]
    assert acts["layers.scores_and_softmax"] == 3 * 2 * 2 * 4 * 16 * 16
    assert acts["logits_and_cross_entropy"] == 2 * 2 * 16 * 50
    assert activation_elements(cfg, 4)["total"] == 2 * acts["total"]


# A second small shape: learned positions, GELU, LayerNorm (weight + bias), tied head.
GPT_STYLE = dict(position="learned", ffn="gelu", norm="layernorm", tie_embeddings=True)


def _tiny(style: str):
    return preset("llama", **TINY, **(GPT_STYLE if style == "gpt" else {}))


def test_parameter_counts_by_hand():
    V, T, d, L = 50, 16, 32, 3
    # token embeddings; per layer fused QKV + output projection, SwiGLU W1/W2/W3 (d_ff = 64), two
    # RMSNorm weights; the final RMSNorm; the LM head
    llama = V * d + L * (4 * d * d + 3 * d * 64 + 2 * d) + d + d * V
    # token + learned position embeddings; per layer attention, GELU W1/W2 (d_ff = 4 d), two
    # LayerNorms of weight and bias; the final LayerNorm; no head (tied)
    gpt = V * d + T * d + L * (4 * d * d + 2 * d * 4 * d + 2 * 2 * d) + 2 * d
    assert (llama, gpt) == (34_144, 39_424)
    for style, by_hand in (("llama", llama), ("gpt", gpt)):
        cfg = _tiny(style)
        assert count_parameters(cfg)["total"] == by_hand
        assert sum(p.numel() for p in TransformerLM(cfg).parameters()) == by_hand


@pytest.mark.parametrize("style", ["llama", "gpt"])
def test_forward_flops_by_hand_and_measured(style):
    V, T, d, L = 50, 16, 32, 3
    ffn_params = 3 * d * 64 if style == "llama" else 2 * d * 4 * d
    by_hand = {
        "attention_projections": L * 2 * 4 * d * d,
        "attention_scores": L * 2 * (T * d + T * d),  # QK^T and AV over the full T x T, per token
        "ffn": L * 2 * ffn_params,
        "lm_head": 2 * d * V,  # a tied head is still a matmul
    }
    total = sum(by_hand.values())
    assert total == (70_784 if style == "llama" else 83_072)
    cfg = _tiny(style)
    flops = flops_per_token(cfg)
    assert flops == {**by_hand, "total": total, "train": 3 * total}
    # torch's FLOP counter over one forward pass of 2 x T tokens counts the same matmuls (the reference
    # attention kernel: it does not count the fused kernel's work on CPU)
    model = TransformerLM(dataclasses.replace(cfg, attention="reference"))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros((2, T), dtype=torch.long))
    assert counter.get_total_flops() == 2 * T * total


def test_activation_elements_and_memory_by_hand():
    B, T, d, H, V, L, d_ff = 2, 16, 32, 4, 50, 3, 64
    BT = B * T
    per_layer = {
        "norms": 2 * BT * d,
        "qkv": 3 * BT * d,
        "scores_and_softmax": 2 * B * H * T * T,
        "attention_output": 2 * BT * d,
        "ffn": BT * (4 * d_ff + d),  # W1 and W3 outputs, SiLU, the gated product; the W2 output
    }
    by_hand = {f"layers.{name}": L * n for name, n in per_layer.items()}
    by_hand.update(final_norm=BT * d, logits_and_cross_entropy=2 * BT * V)
    total = sum(by_hand.values())
    assert total == 65_664
    cfg = _tiny("llama")
    assert activation_elements(cfg, B) == {**by_hand, "total": total}
    params = 34_144
    memory = {"parameters": 4 * params, "gradients": 4 * params, "adamw_state": 8 * params, "activations": 4 * total}
    assert memory_bytes(cfg, batch_size=B) == {**memory, "total": sum(memory.values())}


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``cs336 ARGS`` in-process (a subprocess costs seconds of imports); return (code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_model_info_prints_counts(capsys):
    code, out, err = _cli(capsys, "model", "info", "--preset", "gpt2-xl", "--batch-size", "2")
    assert code == 0, err
    assert "1,637,176,000" in out
    assert "attention_scores" in out and "adamw_state" in out


def test_cli_model_info_config_set_and_json(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[model]\nd_model = 256\nnum_heads = 8\n[train]\nbatch_size = 3\n')
    code, out, err = _cli(capsys, "model", "info", "--config", str(config), "--set", "model.num_layers=2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["batch_size"] == 3
    assert data["model"]["num_layers"] == 2 and data["model"]["d_model"] == 256
    expected = preset("llama", vocab_size=10000, context_length=256, d_model=256, num_layers=2, num_heads=8)
    assert data["parameters"]["total"] == count_parameters(expected)["total"]


@pytest.mark.parametrize("args", [("--set", "model.num_heads=7"), ("--preset", "nope"), ("--set", "model.bogus=1")])
def test_cli_model_info_bad_input_one_line_exit_2(args, capsys):
    code, out, err = _cli(capsys, "model", "info", *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow  # a fresh interpreter importing torch: seconds on a loaded machine
def test_cli_model_info_subprocess_error_contract():
    proc = run_cli("model", "info", "--set", "model.d_model=100", "--set", "model.num_heads=3")
    assert proc.returncode == 2
    assert proc.stderr.startswith("cs336: error:") and "divisible" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_training_flops_per_token_is_the_mfu_formula():
    """The one FLOPs formula (trainer MFU, gpu_check, benchmarks): 6N + 12 L d T, N the matmul parameters."""
    cfg = ModelConfig(vocab_size=512, context_length=64, d_model=64, num_layers=3, num_heads=4)
    assert flops_per_token(cfg)["train"] == 6 * matmul_params(cfg) + 12 * 3 * 64 * 64
