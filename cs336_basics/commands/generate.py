"""`cs336 generate`: sample text from a trained checkpoint, printed as it is produced.

The checkpoint may be a ``.pt`` file or a run directory (best.pt, else the
latest); the tokenizer is found from the run's config (``data.tokenizer_dir``
or ``DATASET_DIR/tokenizer``) or given with ``--tokenizer DIR`` (the original
workflow's "tokenizer directory + checkpoint file" style). Prompts come from
``--prompt`` (repeatable; ``-`` reads all of stdin as one prompt) or
``--prompt-file`` (one prompt per line). Without ``--batch`` each sample is
streamed to stdout token by token; with it all samples are generated as one
batch and printed at the end. Statistics go to stderr. The sampling flags store
under the names of :class:`~cs336_basics.generation.SamplingParams`' fields and
take its defaults, so the command builds its ``SamplingParams`` field by field.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from cs336_basics.commands import existing_dir, existing_file, existing_path, non_negative_float, positive_int
from cs336_basics.errors import UserError
from cs336_basics.config.sampling import SamplingParams
from cs336_basics.progress import info


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "generate", parents=parents, help="sample text from a trained model (streams tokens as they come)",
        description="Sample text from a trained checkpoint with a KV cache; tokens are printed as they are produced.",
        epilog="Examples: cs336 generate --checkpoint runs/tinystories --prompt 'Once upon a time' --temperature 0.8 "
               "--top-p 0.95 | cs336 generate --checkpoint runs/x/checkpoints/best.pt --tokenizer data/ts/tokenizer "
               "--prompt-file prompts.txt --num-samples 3 --seed 0")
    parser.add_argument("--checkpoint", required=True, type=existing_path, metavar="PATH_OR_RUN",
                        help="a checkpoint .pt file or a run directory (uses best.pt, else the latest checkpoint)")
    parser.add_argument("--tokenizer", type=existing_dir, metavar="DIR",
                        help="tokenizer directory (default: the one named by the run's config)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", action="append", metavar="TEXT",
                        help="prompt text (repeatable); '-' reads all of stdin as one prompt; "
                             "default: an empty prompt (start of a new document)")
    source.add_argument("--prompt-file", type=existing_file, metavar="FILE",
                        help="a UTF-8 text file with one prompt per line (blank lines skipped)")
    defaults = SamplingParams()
    parser.add_argument("--max-tokens", dest="max_new_tokens", type=int, default=defaults.max_new_tokens, metavar="N",
                        help="new tokens per sample (default %(default)s)")
    parser.add_argument("--temperature", type=non_negative_float, default=defaults.temperature, metavar="T",
                        help="softmax temperature; 0 = greedy (default %(default)s)")
    parser.add_argument("--top-p", type=_probability, default=defaults.top_p, metavar="P",
                        help="nucleus sampling: smallest set of tokens whose probability reaches P")
    parser.add_argument("--top-k", type=positive_int, default=defaults.top_k, metavar="K",
                        help="sample among the K likeliest tokens")
    parser.add_argument("--repetition-penalty", type=non_negative_float, default=defaults.repetition_penalty,
                        metavar="R", help="CTRL-style penalty for tokens already in the text; > 1 discourages "
                                          "repeats (default %(default)s)")
    parser.add_argument("--stop", action="append", default=list(defaults.stop), metavar="S",
                        help="stop when the text contains S (cut before it); repeatable")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="random seed; sample i uses S + i (default: nondeterministic)")
    parser.add_argument("--num-samples", type=positive_int, default=1, metavar="N", help="samples per prompt (default 1)")
    parser.add_argument("--device", default="auto", metavar="D", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="autocast dtype: auto (default) is bf16 on CUDA and on CPUs where it measures faster")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole context every step (slow reference)")
    parser.add_argument("--ignore-eos", dest="stop_at_eos", action="store_false", default=defaults.stop_at_eos,
                        help="keep generating past the end-of-text token")
    parser.add_argument("--batch", action="store_true",
                        help="generate all samples as one batch and print them at the end (faster, not streamed)")
    parser.set_defaults(func=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    """The prompts from --prompt / --prompt-file / stdin, with one-line errors for unusable input."""
    if args.prompt_file is not None:
        try:
            text = Path(args.prompt_file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"prompt file {args.prompt_file} is not UTF-8 text; convert it to UTF-8") from None
        prompts = [line for line in text.splitlines() if line.strip()]
        if not prompts:
            raise UserError(f"prompt file {args.prompt_file} has no non-blank line; write one prompt per line")
        return prompts
    if not args.prompt:
        return [""]
    prompts = []
    for prompt in args.prompt:
        if prompt == "-":
            data = sys.stdin.buffer.read()
            try:
                prompt = data.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError:
                raise UserError("stdin is not UTF-8 text; pipe a UTF-8 prompt into --prompt -") from None
        prompts.append(prompt)
    return prompts


def sampling_params(args: argparse.Namespace) -> SamplingParams:
    """The :class:`SamplingParams` the flags ask for: each field's flag stores under the field's own name."""
    return SamplingParams(**{field.name: getattr(args, field.name) for field in dataclasses.fields(SamplingParams)})


def run(args: argparse.Namespace) -> int:
    from cs336_basics.generation import generate
    from cs336_basics.generation.autoregressive import check_tokenizer_fits
    from cs336_basics.runtime.devices import resolve_device
    from cs336_basics.runtime.precision import choose_inference_dtype
    from cs336_basics.runs.trained import load_trained_model

    if args.max_new_tokens < 0:
        raise UserError(f"--max-tokens must be >= 0, got {args.max_new_tokens}")
    sampling = sampling_params(args)
    prompts = read_prompts(args)
    device = resolve_device(args.device, option="--device")
    loaded = load_trained_model(args.checkpoint, device=device)
    tokenizer = loaded.tokenizer(args.tokenizer)
    check_tokenizer_fits(loaded.model, tokenizer)
    jobs = [(prompt, i) for prompt in prompts for i in range(args.num_samples)]
    choice = choose_inference_dtype(args.dtype, loaded.model, loaded.config.model, device,
                                    batch=len(jobs) if args.batch else 1, context=loaded.config.model.context_length)
    info(f"model: {loaded.checkpoint_path} (step {loaded.step}), tokenizer: {args.tokenizer or loaded.tokenizer_dir}, "
         f"device: {device}, dtype: {choice.describe()}")
    options = dict(use_cache=not args.no_cache, device=device, dtype=choice.dtype)
    out = sys.stdout
    many = len(jobs) > 1
    if args.batch:
        start = time.perf_counter()
        results = generate(loaded.model, tokenizer, [p for p, _ in jobs], sampling, seed=args.seed, **options)
        elapsed = time.perf_counter() - start
        for n, result in enumerate(results):
            if many:
                out.write(f"=== sample {n + 1}/{len(jobs)} ===\n")
            out.write(result.prompt + result.text + "\n")
        total = sum(len(r.token_ids) for r in results)
        info(f"{total} tokens in {elapsed:.2f}s ({total / max(elapsed, 1e-9):.1f} tokens/s, batch of {len(jobs)})")
        out.flush()
        return 0

    for n, (prompt, _) in enumerate(jobs):
        if many:
            out.write(f"=== sample {n + 1}/{len(jobs)} ===\n")
        out.write(prompt)
        out.flush()

        def show(row: int, piece: str) -> None:
            out.write(piece)
            out.flush()

        start = time.perf_counter()
        seed = None if args.seed is None else args.seed + n
        result, = generate(loaded.model, tokenizer, prompt, sampling, seed=seed, on_token=show, **options)
        elapsed = time.perf_counter() - start
        out.write("\n")
        out.flush()
        count = len(result.token_ids)
        info(f"[{count} tokens in {elapsed:.2f}s, {count / max(elapsed, 1e-9):.1f} tokens/s, stopped by {result.stopped_by}]")
    return 0
