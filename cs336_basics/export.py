"""Export trained models for use outside this toolkit: a Hugging Face transformers folder or raw safetensors.

``cs336 export --format hf`` writes ``config.json``, ``generation_config.json``,
``model.safetensors`` and the tokenizer files (``tokenizer.json``,
``vocab.json``, ``merges.txt``, ``tokenizer_config.json``,
``special_tokens_map.json``) so that ``transformers.AutoModelForCausalLM`` and
``AutoTokenizer`` load the folder, reproduce our logits and our token ids.

Every model the trainer builds is exportable. A built-in transformers class is
used where one computes exactly our model (Llama for the handout's shape, and
the others listed in :mod:`cs336_basics.interop.hf_classes`); any other model
becomes our own ``CS336ForCausalLM``, whose source ``modeling_cs336.py`` is
copied into the folder and named in ``config.json``'s ``auto_map`` (loaded with
``trust_remote_code=True``). The export says which class it used and why.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

from cs336_basics.config import dump_config
from cs336_basics.errors import UserError
from cs336_basics.fileio import replace_dir_atomically
from cs336_basics.interop.hf_classes import REMOTE_FILE, REMOTE_SOURCE, choose_class, hf_config, hf_state_dict
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
from cs336_basics.runs.layout import CONFIG_FILE, WEIGHTS_FILE, RunDir
from cs336_basics.runs.trained import export_safetensors, load_trained_model
from cs336_basics.tokenizer.gpt2_format import token_to_str
from cs336_basics.tokenizer.tokenizer_dir import HF_TOKENIZER_FILE, MERGES_FILE, META_FILE, VOCAB_FILE

FORMATS = ("hf", "safetensors")
TOKENIZER_FILES = (HF_TOKENIZER_FILE, VOCAB_FILE, MERGES_FILE)
HF_WEIGHTS_FILE = "model.safetensors"
"""The weights file of a Hugging Face folder (transformers' name; a run directory's has the same name)."""


def _tokenizer_files(tokenizer_dir: Path, out: Path, context_length: int) -> tuple[int | None, list[str]]:
    """Copy the tokenizer files and write the transformers side-files; return (eos id, special tokens)."""
    missing = [name for name in TOKENIZER_FILES if not (tokenizer_dir / name).is_file()]
    if missing:
        raise UserError(f"tokenizer directory {tokenizer_dir} lacks {missing[0]}; retrain it with 'cs336 prepare --force'")
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out / name)
    meta_path = tokenizer_dir / META_FILE
    specials = json.loads(meta_path.read_text(encoding="utf-8")).get("special_tokens", []) if meta_path.is_file() else []
    vocab = json.loads((tokenizer_dir / VOCAB_FILE).read_text(encoding="utf-8"))
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
        "pad_token": eos,
        "additional_special_tokens": [s for s in specials if s != eos],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(token_config, indent=2, ensure_ascii=False), encoding="utf-8")
    special_map = {"bos_token": eos, "eos_token": eos, "pad_token": eos} if eos else {}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, ensure_ascii=False), encoding="utf-8")
    return eos_id, specials


HF_FILES = ("config.json", "generation_config.json", HF_WEIGHTS_FILE, *TOKENIZER_FILES, "tokenizer_config.json",
            "special_tokens_map.json", REMOTE_FILE)
RAW_FILES = (WEIGHTS_FILE, CONFIG_FILE)
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
              force: bool = False, remote_code: bool = False) -> Path:
    """Write ``model`` (our TransformerLM) as a Hugging Face transformers folder; return the folder.

    The class is a built-in one that computes the model exactly, else ours (always ours with ``remote_code``).
    """
    cfg = model.config
    choice = choose_class(cfg, remote_code=remote_code)
    state = model_state_dict(model)
    tensors = {k: v.to(dtype) for k, v in hf_state_dict(state, cfg, choice).items()}
    trust = ", trust_remote_code=True" if choice.remote_code else ""
    info(f"exporting as {choice.architecture}: {choice.reason}; load it with "
         f"AutoModelForCausalLM.from_pretrained({str(out_dir)!r}{trust})")

    def fill(tmp: Path) -> None:
        eos_id = None
        if tokenizer_dir is not None:
            eos_id, _ = _tokenizer_files(Path(tokenizer_dir), tmp, cfg.context_length)
        config = hf_config(cfg, choice, cfg.resolved_d_ff, eos_id=eos_id, dtype=dtype)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        generation = {"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": eos_id, "do_sample": True,
                      "temperature": 1.0}
        if choice.remote_code:
            generation["use_cache"] = False  # CS336ForCausalLM recomputes the whole sequence at every step
            shutil.copyfile(REMOTE_SOURCE, tmp / REMOTE_FILE)
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / HF_WEIGHTS_FILE), metadata={"format": "pt"})

    details = {"format": "hf", "dtype": str(dtype).removeprefix("torch.")}
    return _write_atomically(Path(out_dir), force, fill, details)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, format: str = "hf",
                      dtype: torch.dtype = torch.float32, force: bool = False, remote_code: bool = False) -> Path:
    """Export a checkpoint file or run directory (best.pt, else latest) in ``format``; return the output path."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out_dir)
    single_file = format == "safetensors" and out.suffix == ".safetensors"
    if single_file:
        check_output_file(out, command=EXPORTED_BY, is_previous=_exported_file, inputs=[checkpoint], force=force,
                          example=WEIGHTS_FILE)
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
            folder = RunDir(tmp)  # the run directory's weights and config, by their names there
            export_safetensors(loaded.model, folder.weights_path, metadata=metadata)
            dump_config(loaded.config, folder.config_path)

        return _write_atomically(out, force, fill, {"format": "safetensors"})
    if loaded.tokenizer_dir is None:
        info("no tokenizer directory found for this run: exporting the model without tokenizer files")
    else:
        loaded.tokenizer()  # the files exported beside the model must be the tokenizer it was trained with
    return export_hf(loaded.model, out_dir, tokenizer_dir=loaded.tokenizer_dir, dtype=dtype, force=force,
                     remote_code=remote_code)
