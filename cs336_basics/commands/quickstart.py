"""`cs336 quickstart`: from text (or nothing) to a trained model, its scores, stories and a report."""

from __future__ import annotations

import argparse

from cs336_basics.commands import add_config_args, byte_size, existing_file, non_negative_float, positive_int


def _data_source(text: str):
    from cs336_basics.sample import SAMPLE_NAME

    return SAMPLE_NAME if text == SAMPLE_NAME else existing_file(text)


DEFAULT_MINUTES = 9.0
"""The time budget of a plain ``cs336 quickstart`` (the README promises about 10 minutes on a 2-core laptop)."""


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "quickstart", parents=parents, help="download, prepare, train, evaluate and sample in one command",
        description="The whole pipeline on a CPU-sized model: get TinyStories text (download a prefix, or --data), "
                    "train a tokenizer and tokenize (OUT/data), train configs/quickstart.toml (OUT/runs/quickstart), "
                    "print validation bits per byte next to the unigram baseline, print generated stories, and "
                    "write OUT/quickstart.md plus the run report with plots.")
    parser.add_argument("--data", type=_data_source, default=None, metavar="FILE|sample",
                        help="local training text (documents separated by <|endoftext|>), or 'sample' for the "
                             "TinyStories sample shipped with the package; default: download a TinyStories "
                             "prefix, or use the sample when there is no network")
    parser.add_argument("--valid", type=existing_file, default=None, metavar="FILE",
                        help="validation text (default: the last 5%% of --data; downloaded with the train prefix when there is no --data)")
    parser.add_argument("--out", default="quickstart", metavar="DIR", help="output folder (default: quickstart/)")
    parser.add_argument("--minutes", type=non_negative_float, default=DEFAULT_MINUTES, metavar="M",
                        help="total time budget: the training step count is fitted to it after measuring a step on "
                             f"this machine (default {DEFAULT_MINUTES:g}); 0 trains the preset's fixed "
                             "train.total_steps instead (reproducible; also implied by --set train.total_steps=N)")
    parser.add_argument("--max-bytes", type=byte_size, default=None, metavar="N",
                        help="size of the TinyStories prefix to download (default 20M)")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="processes for tokenizer training and tokenizing")
    parser.add_argument("--seed", type=int, default=0, help="seed for training and sampling (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted quickstart in --out from its latest checkpoint, with the "
                             "settings it started with (its time budget counts the time already spent)")
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cs336_basics.fileio import atomic_write_text
    from cs336_basics.quickstart import run_quickstart
    from cs336_basics.tokenizer import native as native_ext

    native_ext.warn_if_fallback("cs336 quickstart")
    result = run_quickstart(args.out, args.data, args.valid, minutes=args.minutes or None,
                            config=args.config, overrides=args.overrides, max_bytes=args.max_bytes,
                            workers=args.workers, seed=args.seed, resume=args.resume)

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print()
    for i, sample in enumerate(result.samples, 1):
        print(f"--- story {i} ---")
        print(sample.strip())
    print()
    scope = (f"whole validation file, {result.val_tokens:,} tokens" if result.val_tokens >= result.valid_total - 1
             else f"first {result.val_tokens:,} of {result.valid_total:,} validation tokens")
    print(f"validation:        {fmt(result.val_loss)} nats/token, {fmt(result.val_bpb)} bits/byte ({scope})")
    print(f"unigram baseline:  {fmt(result.unigram_loss)} nats/token, {fmt(result.unigram_bpb)} bits/byte")
    print(f"improvement:       {result.gain_over_unigram:.2f} nats/token below the unigram baseline")
    print("time (s):          " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
    summary = atomic_write_text(result.out / "quickstart.md", quickstart_markdown(result))
    print(f"summary:           {summary}")
    if result.report is not None:
        print(f"report:            {result.report}")
    print(f"next:              cs336 generate --checkpoint {result.run_dir} --prompt 'Once upon a time'")
    return 0


def quickstart_markdown(qs) -> str:
    """OUT/quickstart.md: scores next to the baseline, time per phase, the samples."""

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["# Quickstart result", "",
             f"Trained {qs.steps} steps ({qs.tokens:,} tokens); run directory `{qs.run_dir}`.", "",
             "| model | loss (nats/token) | bits per byte |", "|---|---:|---:|",
             f"| trained Transformer | {fmt(qs.val_loss)} | {fmt(qs.val_bpb)} |",
             f"| unigram (token frequencies) | {fmt(qs.unigram_loss)} | {fmt(qs.unigram_bpb)} |", "",
             f"The model is {qs.gain_over_unigram:.2f} nats/token below the unigram baseline.", "",
             "Seconds per phase: " + ", ".join(f"{k} {v}" for k, v in qs.seconds.items()), "",
             "## Samples", ""]
    for sample in qs.samples:
        lines += ["```text", sample.strip(), "```", ""]
    if qs.report is not None:
        lines += [f"Full report with plots: `{qs.report}`", ""]
    return "\n".join(lines)
