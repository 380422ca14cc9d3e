"""Export trained models for use outside this toolkit: a Hugging Face ``LlamaForCausalLM`` folder or raw safetensors.

``cs336 export --format hf`` writes ``config.json``, ``generation_config.json``,
``model.safetensors`` and the tokenizer files (``tokenizer.json``,
``vocab.json``, ``merges.txt``, ``tokenizer_config.json``,
``special_tokens_map.json``) so that ``transformers.AutoModelForCausalLM`` and
``AutoTokenizer`` load the folder and reproduce our logits.

Only the Llama-style architecture maps onto ``LlamaForCausalLM``: RoPE,
SwiGLU, RMSNorm, pre-norm blocks, no biases (tied or untied LM head). Any
other choice is a one-line "not exportable" error naming the blocking feature.

Two layout conversions, both exact:

- our attention keeps one fused ``qkv_proj`` weight ``(3*d_model, d_model)``
  (rows: all of q, then k, then v; head h at rows ``h*D:(h+1)*D`` of each);
  Llama has separate ``q_proj``/``k_proj``/``v_proj``;
- our RoPE rotates adjacent pairs ``(2i, 2i+1)`` of each head (the CS336
  handout's layout) while Llama's ``rotate_half`` pairs ``(i, i + D/2)`` with the
  same frequency ``theta^(-2i/D)``. Permuting the rows of q and k within every
  head by ``[0, 2, 4, ..., D-2, 1, 3, ..., D-1]`` turns one into the other, and
  since q and k get the same permutation the dot products are unchanged.

The SwiGLU weights map as ``w1 -> gate_proj``, ``w3 -> up_proj``, ``w2 -> down_proj``.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from cs336_basics.config import dump_config
from cs336_basics.errors import UserError
from cs336_basics.fileio import replace_dir_atomically
from cs336_basics.outputs import (
    MARKER,
    DirOutput,
    check_holds_no_input,
    check_output_dir,
    check_output_file,
    has_marker,
    write_marker,
)
from cs336_basics.progress import info
from cs336_basics.runs.checkpoint import model_state_dict
from cs336_basics.runs.trained import export_safetensors, load_trained_model
from cs336_basics.tokenizer.gpt2_format import token_to_str

FORMATS = ("hf", "safetensors")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")


def blocking_feature(cfg) -> str | None:
    """The first ModelConfig choice that LlamaForCausalLM cannot express, as ``key=value``; None if exportable."""
    required = {"position": "rope", "ffn": "swiglu", "norm": "rmsnorm", "block": "prenorm"}
    for key, wanted in required.items():
        value = getattr(cfg, key)
        if value != wanted:
            return f"{key}={value} (Llama needs {key}={wanted})"
    return None


def check_exportable(cfg) -> None:
    problem = blocking_feature(cfg)
    if problem is not None:
        raise UserError(f"not exportable to Hugging Face LlamaForCausalLM: {problem}; "
                        "use --format safetensors for the raw weights")


def rope_permutation(d_head: int) -> torch.Tensor:
    """Row order that turns adjacent-pair RoPE (2i, 2i+1) into rotate-half RoPE (i, i + D/2)."""
    return torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])


def _permute_heads(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    d_out, d_in = weight.shape
    d_head = d_out // num_heads
    per_head = weight.view(num_heads, d_head, d_in)  # (H, D, d_model)
    return per_head[:, rope_permutation(d_head), :].reshape(d_out, d_in)  # (H*D, d_model)


def hf_state_dict(state: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """Our TransformerLM state dict -> LlamaForCausalLM names and layouts (fresh contiguous tensors)."""
    d, H = cfg.d_model, cfg.num_heads
    out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": state["token_embeddings.weight"]}
    for i in range(cfg.num_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        qkv = state[ours + "attn.qkv_proj.weight"]  # (3d, d): q rows, then k rows, then v rows
        q, k, v = qkv[:d], qkv[d:2 * d], qkv[2 * d:]
        out[theirs + "self_attn.q_proj.weight"] = _permute_heads(q, H)
        out[theirs + "self_attn.k_proj.weight"] = _permute_heads(k, H)
        out[theirs + "self_attn.v_proj.weight"] = v
        out[theirs + "self_attn.o_proj.weight"] = state[ours + "attn.output_proj.weight"]
        out[theirs + "mlp.gate_proj.weight"] = state[ours + "ffn.w1.weight"]
        out[theirs + "mlp.up_proj.weight"] = state[ours + "ffn.w3.weight"]
        out[theirs + "mlp.down_proj.weight"] = state[ours + "ffn.w2.weight"]
        out[theirs + "input_layernorm.weight"] = state[ours + "ln1.weight"]
        out[theirs + "post_attention_layernorm.weight"] = state[ours + "ln2.weight"]
    out["model.norm.weight"] = state["ln_final.weight"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def llama_config(cfg, d_ff: int, *, bos_id: int | None, eos_id: int | None, dtype: torch.dtype) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": d_ff,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_heads,
        "head_dim": cfg.d_model // cfg.num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": bool(cfg.tie_embeddings),
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def _tokenizer_files(tokenizer_dir: Path, out: Path, context_length: int) -> tuple[int | None, list[str]]:
    """Copy the tokenizer files and write the transformers side-files; return (eos id, special tokens)."""
    missing = [name for name in TOKENIZER_FILES if not (tokenizer_dir / name).is_file()]
    if missing:
        raise UserError(f"tokenizer directory {tokenizer_dir} lacks {missing[0]}; retrain it with 'cs336 prepare --force'")
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out / name)
    meta_path = tokenizer_dir / "meta.json"
    specials = json.loads(meta_path.read_text(encoding="utf-8")).get("special_tokens", []) if meta_path.is_file() else []
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    eos = "<|endoftext|>" if "<|endoftext|>" in specials else (specials[0] if specials else None)
    eos_id = vocab.get(token_to_str(eos.encode("utf-8"))) if eos else None
    token_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": eos,
        "eos_token": eos,
        "unk_token": None,
        "additional_special_tokens": [s for s in specials if s != eos],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(token_config, indent=2, ensure_ascii=False), encoding="utf-8")
    special_map = {"bos_token": eos, "eos_token": eos} if eos else {}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, ensure_ascii=False), encoding="utf-8")
    return eos_id, specials


HF_FILES = ("config.json", "generation_config.json", "model.safetensors", *TOKENIZER_FILES, "tokenizer_config.json",
            "special_tokens_map.json")
RAW_FILES = ("model.safetensors", "config.toml")
EXPORT_DIR = DirOutput("cs336 export", "export folder", has_marker("export"),
                       frozenset((*HF_FILES, *RAW_FILES, MARKER)))
"""An export folder: marked by MARKER; --force replaces one that holds nothing but the files export writes."""
EXPORTED_BY = "cs336 export"
"""The ``exported_by`` metadata of a single .safetensors file written by export (how a previous one is recognised)."""


def _exported_file(path: Path) -> bool:
    """True for a .safetensors file whose header metadata says export wrote it."""
    try:
        with open(path, "rb") as fh:
            size = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(min(size, 1 << 26)).decode("utf-8"))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get("exported_by") == EXPORTED_BY


def _write_atomically(out_dir: Path, force: bool, fill, details: dict[str, str]) -> Path:
    """Check ``out_dir`` (see outputs.py), build the folder in a temp dir beside it and rename it into place."""
    check_output_dir(out_dir, EXPORT_DIR, force=force)

    def fill_marked(tmp: Path) -> None:
        fill(tmp)
        write_marker(tmp, "export", **details)

    replace_dir_atomically(out_dir, fill_marked, EXPORT_DIR.owned)
    return Path(out_dir)


def export_hf(model, out_dir: str | Path, *, tokenizer_dir: str | Path | None = None, dtype: torch.dtype = torch.float32,
              force: bool = False) -> Path:
    """Write ``model`` (our TransformerLM) as a Hugging Face LlamaForCausalLM folder; return the folder."""
    cfg = model.config
    check_exportable(cfg)
    state = model_state_dict(model)
    tensors = {k: v.to(dtype) for k, v in hf_state_dict(state, cfg).items()}
    d_ff = state["layers.0.ffn.w1.weight"].shape[0]

    def fill(tmp: Path) -> None:
        eos_id = None
        if tokenizer_dir is not None:
            eos_id, _ = _tokenizer_files(Path(tokenizer_dir), tmp, cfg.context_length)
        config = llama_config(cfg, d_ff, bos_id=eos_id, eos_id=eos_id, dtype=dtype)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        generation = {"bos_token_id": eos_id, "eos_token_id": eos_id, "do_sample": True, "temperature": 1.0}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})

    details = {"format": "hf", "dtype": str(dtype).removeprefix("torch.")}
    return _write_atomically(Path(out_dir), force, fill, details)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, format: str = "hf",
                      dtype: torch.dtype = torch.float32, force: bool = False) -> Path:
    """Export a checkpoint file or run directory (best.pt, else latest) in ``format``; return the output path."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out_dir)
    single_file = format == "safetensors" and out.suffix == ".safetensors"
    if single_file:
        check_output_file(out, command=EXPORTED_BY, is_previous=_exported_file, inputs=[checkpoint], force=force,
                          example="model.safetensors")
    else:
        check_output_dir(out, EXPORT_DIR, inputs=[checkpoint], force=force)
    loaded = load_trained_model(checkpoint)
    inputs = [checkpoint, loaded.checkpoint_path, loaded.tokenizer_dir]
    if not single_file:
        check_holds_no_input(out, inputs)
    metadata = {"step": str(loaded.step), "exported_by": EXPORTED_BY}
    if single_file:
        out.parent.mkdir(parents=True, exist_ok=True)
        return export_safetensors(loaded.model, out, metadata=metadata)
    if format == "safetensors":
        def fill(tmp: Path) -> None:
            export_safetensors(loaded.model, tmp / "model.safetensors", metadata=metadata)
            dump_config(loaded.config, tmp / "config.toml")

        return _write_atomically(out, force, fill, {"format": "safetensors"})
    check_exportable(loaded.config.model)
    if loaded.tokenizer_dir is None:
        info("no tokenizer directory found for this run: exporting the model without tokenizer files")
    else:
        loaded.tokenizer()  # the files exported beside the model must be the tokenizer it was trained with
    return export_hf(loaded.model, out_dir, tokenizer_dir=loaded.tokenizer_dir, dtype=dtype, force=force)
