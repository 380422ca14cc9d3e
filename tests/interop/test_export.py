"""Export parity: our Llama-style TransformerLM vs transformers' LlamaForCausalLM loading the exported folder.

Every other variant is covered by tests/interop/test_export_variants.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from cs336_basics.config import ModelConfig, RunConfig, dump_config, to_dict
from cs336_basics.errors import UserError
from cs336_basics.export import export_checkpoint, export_hf
from cs336_basics.interop.hf_classes import hf_state_dict, rope_permutation
from cs336_basics.model.positions import RotaryEmbedding
from cs336_basics.model.transformer import TransformerLM
from cs336_basics.runs.checkpoint import save_checkpoint
from tests.conftest import run_cli

SMALL = dict(vocab_size=300, context_length=64, d_model=64, num_layers=2, num_heads=4)


def _hf_model(folder: Path):
    model = transformers.LlamaForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32)
    return model.eval()


def _greedy(model: TransformerLM, ids: torch.Tensor, n: int) -> list[int]:
    """Oracle: plain argmax decoding with full re-forwards (no cache), our model."""
    out = ids.clone()
    with torch.no_grad():
        for _ in range(n):
            nxt = model(out)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
    return out[0, ids.shape[1]:].tolist()


def test_rope_permutation_turns_adjacent_pairs_into_rotate_half():
    """Apply our RoPE, then permute: equals HF's rotate_half RoPE applied to the permuted vector."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    d_head, T = 16, 10
    rope = RotaryEmbedding(d_head, theta=500.0)
    x = torch.randn(1, 1, T, d_head)
    pos = torch.arange(T)
    perm = rope_permutation(d_head)
    ours = rope(x, pos)[..., perm]
    inv_freq = 500.0 ** (-torch.arange(0, d_head, 2).float() / d_head)
    angles = pos[:, None].float() * inv_freq  # (T, D/2)
    emb = torch.cat([angles, angles], dim=-1)  # HF duplicates the half-angles
    theirs, _ = apply_rotary_pos_emb(x[..., perm], x[..., perm], emb.cos()[None], emb.sin()[None])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("tie", [False, True])
def test_logits_and_greedy_tokens_match_transformers(tmp_path, tie):
    cfg = ModelConfig(**SMALL, tie_embeddings=tie, rope_theta=1000.0, norm_eps=1e-6)
    model = TransformerLM(cfg, seed=1).eval()
    with torch.no_grad():  # non-trivial norm weights so a mis-mapped norm would show
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.mul_(1 + 0.3 * torch.randn_like(p))
    folder = export_hf(model, tmp_path / "hf")
    hf = _hf_model(folder)
    ids = torch.randint(0, cfg.vocab_size, (3, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    prompt = ids[:1, :8]
    hf_tokens = hf.generate(prompt, max_new_tokens=20, do_sample=False, min_new_tokens=20,
                            pad_token_id=0)[0, 8:].tolist()
    assert _greedy(model, prompt, 20) == hf_tokens
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is tie and config["intermediate_size"] == model.layers[0].ffn.w1.weight.shape[0]


def test_state_dict_mapping_covers_every_weight():
    cfg = ModelConfig(**SMALL)
    model = TransformerLM(cfg, seed=0)
    mapped = hf_state_dict(model.state_dict(), cfg)
    assert sum(t.numel() for t in mapped.values()) == model.num_parameters()


def _tiny_tokenizer_dir(path: Path) -> Path:
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    vocab = {i: bytes([i]) for i in range(256)}
    merges = [(b"t", b"h"), (b"th", b"e"), (b" ", b"the"), (b"e", b"r")]
    for a, b in merges:
        vocab[len(vocab)] = a + b
    vocab[len(vocab)] = b"<|endoftext|>"
    return save_tokenizer_dir(path, vocab, merges, ["<|endoftext|>"], {})


def _run_dir(tmp_path: Path, cfg: ModelConfig, tokenizer: Path | None) -> Path:
    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    rc = RunConfig(model=cfg)
    if tokenizer is not None:
        rc.data.tokenizer_dir = str(tokenizer)
    dump_config(rc, run / "config.toml")
    model = TransformerLM(cfg, seed=3)
    save_checkpoint(model, None, 7, run / "checkpoints" / "best.pt", config=to_dict(rc))
    return run


def test_run_directory_export_with_tokenizer_loads_in_transformers(tmp_path):
    tok = _tiny_tokenizer_dir(tmp_path / "tok")
    cfg = ModelConfig(**{**SMALL, "vocab_size": 261})
    run = _run_dir(tmp_path, cfg, tok)
    folder = export_checkpoint(run, tmp_path / "hf", format="hf")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in folder.iterdir()}
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    text = "the other<|endoftext|>there"
    ids = hf_tok(text)["input_ids"]
    assert hf_tok.decode(ids) == text
    assert hf_tok.eos_token_id == hf_tok.pad_token_id == 260 and 260 in ids
    assert json.loads((folder / "config.json").read_text())["eos_token_id"] == 260
    # refusing to overwrite, then force
    with pytest.raises(UserError, match="--force"):
        export_checkpoint(run, folder)
    assert export_checkpoint(run, folder, force=True) == folder


def test_safetensors_export_and_hf_export_of_a_non_llama_model_cli(tmp_path):
    from safetensors.torch import load_file

    cfg = ModelConfig(**{**SMALL, "ffn": "gelu", "position": "learned"})
    run = _run_dir(tmp_path, cfg, None)
    out = export_checkpoint(run, tmp_path / "st", format="safetensors")
    weights = load_file(str(out / "model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == TransformerLM(cfg).num_parameters()
    assert (out / "config.toml").is_file()
    proc = run_cli("export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr
    assert "exporting as CS336ForCausalLM: position=learned" in proc.stderr and "trust_remote_code=True" in proc.stderr
    assert (tmp_path / "hf" / "modeling_cs336.py").is_file()
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_cs336.CS336ForCausalLM"
