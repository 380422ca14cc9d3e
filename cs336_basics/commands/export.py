"""`cs336 export --checkpoint PATH --format hf|safetensors --out DIR`: models for use outside this toolkit."""

from __future__ import annotations

import argparse

from cs336_basics.commands import existing_path


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "export", parents=parents, help="export a checkpoint as a Hugging Face transformers folder or safetensors",
        description="Export a trained model. --format hf writes a folder that transformers' AutoModelForCausalLM "
                    "and AutoTokenizer load (config.json, model.safetensors, tokenizer files): a built-in class "
                    "where one computes exactly this model (LlamaForCausalLM for the handout's shape), else "
                    "CS336ForCausalLM, whose source modeling_cs336.py goes into the folder (load it with "
                    "trust_remote_code=True); the export says which class and why. --format safetensors writes "
                    "the raw weights and the run config.")
    parser.add_argument("--checkpoint", required=True, type=existing_path, metavar="PATH",
                        help="a checkpoint .pt file or a run directory (best.pt, else latest.pt)")
    parser.add_argument("--format", choices=["hf", "safetensors"], default="hf", help="output format (default hf)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (or a .safetensors file)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weight dtype of the hf export (default float32)")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")
    parser.add_argument("--remote-code", action="store_true",
                        help="hf only: ship CS336ForCausalLM even where a built-in transformers class matches")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cs336_basics.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, format=args.format, dtype=getattr(torch, args.dtype),
                            force=args.force, remote_code=args.remote_code)
    print(out)
    return 0
