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
from cs336_basics.errors import UserError


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
                        help="also write the results as JSON to FILE")
    parser.set_defaults(func=run)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    return name


def _default_valid_path(loaded) -> Path:
    data = loaded.config.data
    candidates = [data.valid_path] if data.valid_path else []
    if data.dataset_dir:
        candidates.append(str(Path(data.dataset_dir) / "valid.npy"))
    bases = [Path.cwd()] + ([loaded.run_dir, loaded.run_dir.parent, loaded.run_dir.parent.parent]
                            if loaded.run_dir is not None else [])
    for cand in candidates:
        for base in bases:
            path = base / cand
            if path.is_file():
                return path
    raise UserError(f"no validation token file found for {loaded.checkpoint_path} (looked for "
                    f"{', '.join(candidates) or 'data.valid_path / data.dataset_dir in its config'}); pass --data FILE")


def _tokenizer_or_none(loaded):
    try:
        return loaded.tokenizer()
    except UserError:
        return None


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """The work of ``cs336 eval``, returning the JSON-able results (used by the command and by tests)."""
    from cs336_basics.evaluation import bytes_per_token_from_manifest, evaluate_loss
    from cs336_basics.tokenizer.token_files import open_token_file, read_manifest
    from cs336_basics.training.checkpoint import load_trained_model

    device = resolve_device(args.device)
    loaded = load_trained_model(args.checkpoint, device=device)
    model, mcfg = loaded.model, loaded.config.model
    tokenizer = _tokenizer_or_none(loaded)
    data = Path(args.data) if args.data is not None else _default_valid_path(loaded)
    tokens = open_token_file(data, vocab_size=mcfg.vocab_size,
                             tokenizer_fingerprint=getattr(tokenizer, "fingerprint", None))
    context = args.context_length or mcfg.context_length
    if context > mcfg.context_length and mcfg.position == "learned":
        raise UserError(f"--context-length {context} exceeds the model's learned position table "
                        f"({mcfg.context_length}); use at most {mcfg.context_length}")
    if args.stride is not None and args.stride > context:
        raise UserError(f"--stride {args.stride} is larger than the context length {context}; use 1..{context}")
    bpt = bytes_per_token_from_manifest(read_manifest(data))
    result = evaluate_loss(model, tokens, context, args.batch_size, device, stride=args.stride,
                           max_tokens=args.max_tokens, bytes_per_token=bpt)
    out: dict[str, Any] = {"checkpoint": str(loaded.checkpoint_path), "step": loaded.step, "data": str(data),
                           "bytes_per_token": bpt, **result.to_dict()}
    if args.samples or args.reference_checkpoint is not None:
        out["samples"] = sample_metrics(args, model, tokenizer, loaded, device)
    return out


def sample_metrics(args, model, tokenizer, loaded, device: str) -> dict[str, Any]:
    from cs336_basics.evaluation import generation_metrics, reference_perplexity, training_vocabulary
    from cs336_basics.evaluation.loss import evaluation_mode
    from cs336_basics.generation import DEFAULT_PROMPTS, generate
    from cs336_basics.rundir import RunDir
    from cs336_basics.training.checkpoint import load_trained_model

    if tokenizer is None:
        raise UserError(f"--samples needs the run's tokenizer, and none was found for {loaded.checkpoint_path}; "
                        "set data.tokenizer_dir in its config.toml")
    prompts = list(args.prompt or DEFAULT_PROMPTS) * args.samples_per_prompt  # rows draw independently
    with evaluation_mode(model):
        results = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, temperature=0.8,
                           top_p=0.95, seed=args.seed, device=device)
    ref_ppl = None
    if args.reference_checkpoint is not None:
        ref = load_trained_model(args.reference_checkpoint, device=device)
        ref_tok = _tokenizer_or_none(ref) or tokenizer
        ref_ppl = reference_perplexity(ref.model, ref_tok, prompts, [r.text for r in results], device=device)
    vocab = training_vocabulary(RunDir(loaded.run_dir) if loaded.run_dir else None, tokenizer)
    metrics = generation_metrics(results, vocabulary=vocab, reference_ppl=ref_ppl)
    metrics["texts"] = [{"prompt": r.prompt, "text": r.text, "stopped_by": r.stopped_by} for r in results]
    return metrics


def _print_results(out: dict[str, Any]) -> None:
    mode = f"sliding window, stride {out['stride']}" if out["stride"] else "non-overlapping windows"
    print(f"checkpoint   {out['checkpoint']} (step {out['step']})")
    print(f"data         {out['data']}: {out['num_tokens']:,} tokens scored, context {out['context_length']}, "
          f"{mode}, {out['seconds']:.1f}s")
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


def run(args: argparse.Namespace) -> int:
    from cs336_basics.fileio import atomic_write_text

    out = evaluate_checkpoint(args)
    _print_results(out)
    if args.json_out is not None:
        clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
        atomic_write_text(args.json_out, json.dumps(clean, indent=1, ensure_ascii=False))
    return 0
