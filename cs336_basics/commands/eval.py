"""`cs336 eval`: loss, perplexity, bits per byte and top-k accuracy of a checkpoint over a whole token file.

Optionally also samples from fixed prompts with a fixed seed and reports the
generation metrics (distinct-n, repetition, end-of-text, in-vocabulary rate),
with the samples' perplexity under a second checkpoint given by
``--reference-checkpoint``. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from cs336_basics.commands import existing_file, existing_path, positive_int


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "eval", parents=parents, help="evaluate a checkpoint: loss, perplexity, bits/byte, accuracy, sample metrics",
        description="Evaluate a trained model on a whole token file: mean next-token loss, perplexity, bits per "
                    "byte (from the token file's manifest) and top-1/top-5 accuracy, in non-overlapping windows "
                    "of the context length (default) or a sliding window (--stride). With --samples, also "
                    "generation metrics of samples from fixed prompts.")
    parser.add_argument("--checkpoint", "--model", dest="checkpoint", type=existing_path, required=True,
                        metavar="PATH", help="a checkpoint .pt file or a run directory (uses best.pt, else latest)")
    parser.add_argument("--data", type=existing_file, metavar="TOKENS.npy",
                        help="token file to evaluate (default: the run's validation file)")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="sliding window: score each token with at least context-STRIDE tokens of history "
                             "(costs context/STRIDE times more); default: non-overlapping windows")
    parser.add_argument("--context-length", type=positive_int, default=None,
                        help="window length (default: the model's context length)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass (default 16)")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help="evaluate only the first N tokens of the file")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="autocast dtype: auto (default) is bf16 on CUDA and on CPUs where it measures faster")
    parser.add_argument("--samples", action="store_true",
                        help="also generate from fixed prompts and report generation-quality metrics")
    parser.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                        help="prompt for --samples (repeatable; default: built-in story openings)")
    parser.add_argument("--samples-per-prompt", type=positive_int, default=1, metavar="K",
                        help="draw K samples per prompt (batched; more samples make the metrics less noisy)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=128, help="tokens per sample (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--reference-checkpoint", type=existing_path, default=None, metavar="PATH",
                        help="another checkpoint/run: report the perplexity of the samples under it (implies --samples)")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, metavar="FILE",
                        help="also write the results as JSON to FILE (new, or an earlier 'cs336 eval --json' file)")
    parser.set_defaults(func=run)


def _print_results(out: dict[str, Any]) -> None:
    mode = f"sliding window, stride {out['stride']}" if out["stride"] else "non-overlapping windows"
    print(f"checkpoint   {out['checkpoint']} (step {out['step']})")
    print(f"data         {out['data']}: {out['num_tokens']:,} tokens scored, context {out['context_length']}, "
          f"{mode}, {out['seconds']:.1f}s")
    print(f"dtype        {out['dtype']} ({out['dtype_reason']})")
    print(f"loss         {out['loss']:.4f} nats/token")
    print(f"perplexity   {out['perplexity']:.3f}")
    bpb = out["bits_per_byte"]
    print(f"bits/byte    {bpb:.4f}" if bpb is not None else "bits/byte    - (the token file has no manifest with num_bytes)")
    print(f"top-1 / top-5 accuracy  {out['top1']:.4f} / {out['top5']:.4f}")
    samples = out.get("samples")
    if samples:
        print("samples:")
        for key, value in samples.items():
            if key != "texts":
                print(f"  {key:20s} {value:.4f}" if isinstance(value, float) else f"  {key:20s} {value}")


EVAL_KEYS = ("checkpoint", "step", "loss", "perplexity", "top1")
"""Keys every ``--json`` file holds: how an earlier one (which may be overwritten) is recognised."""


def run(args: argparse.Namespace) -> int:
    from cs336_basics.evaluation.checkpoint_eval import SampleSettings, evaluate_checkpoint
    from cs336_basics.fileio import atomic_write_text
    from cs336_basics.outputs import check_output_file, json_object_with

    if args.json_out is not None:
        check_output_file(args.json_out, command="cs336 eval", flag="--json", example="eval.json",
                          is_previous=lambda path: json_object_with(path, EVAL_KEYS),
                          inputs=[args.checkpoint, args.data, args.reference_checkpoint])
    samples = (SampleSettings(args.prompt, args.samples_per_prompt, args.max_new_tokens, args.seed)
               if args.samples else None)
    out = evaluate_checkpoint(args.checkpoint, args.data, device=args.device, batch_size=args.batch_size,
                              context_length=args.context_length, stride=args.stride, max_tokens=args.max_tokens,
                              samples=samples, dtype=args.dtype, reference_checkpoint=args.reference_checkpoint)
    _print_results(out)
    if args.json_out is not None:
        clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
        atomic_write_text(args.json_out, json.dumps(clean, indent=1, ensure_ascii=False))
    return 0
