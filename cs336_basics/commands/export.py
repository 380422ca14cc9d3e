"""`cs336 export --checkpoint PATH --format hf|safetensors --out DIR`: models for use outside this toolkit."""

from __future__ import annotations

import argparse

from cs336_basics.commands import existing_path


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "export", parents=parents, help="export a checkpoint as a Hugging Face Llama folder or safetensors",
        description="Export a trained model. --format hf writes a transformers LlamaForCausalLM folder "
                    "(config.json, model.safetensors, tokenizer files) for Llama-style models (rope, swiglu, "
                    "rmsnorm, prenorm); --format safetensors writes the raw weights and the run config.")
    parser.add_argument("--checkpoint", required=True, type=existing_path, metavar="PATH",
                        help="a checkpoint .pt file or a run directory (best.pt, else latest.pt)")
    parser.add_argument("--format", choices=["hf", "safetensors"], default="hf", help="output format (default hf)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (or a .safetensors file)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weight dtype of the hf export (default float32)")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cs336_basics.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, format=args.format, dtype=getattr(torch, args.dtype),
                            force=args.force)
    print(out)
    return 0
