"""`cs336 quickstart`: from text (or nothing) to a trained model, its scores, stories and a report."""

from __future__ import annotations

import argparse

from cs336_basics.commands import add_config_args, byte_size, existing_file, non_negative_float, positive_int


def _data_source(text: str):
    from cs336_basics.sample import SAMPLE_NAME

    return SAMPLE_NAME if text == SAMPLE_NAME else existing_file(text)


DEFAULT_MINUTES = 9.0
"""The time budget of a plain ``cs336 quickstart``, in minutes (the README and docs/quickstart.md state it)."""


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "quickstart", parents=parents, help="download, prepare, train, evaluate and sample in one command",
        description="The whole pipeline on a CPU-sized model: get TinyStories text (download a prefix, or --data), "
                    "train a tokenizer and tokenize (OUT/data), train configs/quickstart.toml (OUT/runs/quickstart), "
                    "print bits per byte on the held-out test half of the validation text (the development half, "
                    "which the evaluations during training see, beside it) next to the unigram baseline, print "
                    "generated stories, and "
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
    from cs336_basics.runtime import native as native_ext

    native_ext.warn_if_fallback("cs336 quickstart")
    result = run_quickstart(args.out, args.data, args.valid, minutes=args.minutes or None,
                            config=args.config, overrides=args.overrides, max_bytes=args.max_bytes,
                            workers=args.workers, seed=args.seed, resume=args.resume)

    print()
    for i, sample in enumerate(result.samples, 1):
        print(f"--- story {i} ---")
        print(sample.strip())
    print()
    for line in score_lines(result):
        print(line)
    print("time (s):          " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
    summary = atomic_write_text(result.out / "quickstart.md", quickstart_markdown(result))
    print(f"summary:           {summary}")
    if result.report is not None:
        print(f"report:            {result.report}")
    print(f"next:              cs336 generate --checkpoint {result.run_dir} --prompt 'Once upon a time'")
    return 0


def _scope(score, half: str) -> str:
    if score.tokens >= score.total - 1:
        return f"{half}, {score.total:,} tokens"
    return f"first {score.tokens:,} of the {half}'s {score.total:,} tokens"


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def score_lines(qs) -> list[str]:
    """The summary lines of the scores: the test half as the headline, the development half beside it."""

    def figure(label: str, score, scope: str) -> str:
        return f"{label:<19}{fmt(score.loss)} nats/token, {fmt(score.bpb)} bits/byte ({scope})"

    if qs.test is None:
        lines = [figure("development:", qs.dev, _scope(qs.dev, "whole validation file") + "; no held-out half: "
                        "the validation text is too small to split")]
        scope = "the same tokens"
    else:
        held_out = "held-out half of the validation text, nothing chosen on it"
        lines = [figure("test:", qs.test, _scope(qs.test, held_out)),
                 figure("development:", qs.dev, _scope(qs.dev, "half seen by the evaluations during training"))]
        scope = "the test half"
    return lines + [f"{'unigram baseline:':<19}{fmt(qs.unigram_loss)} nats/token, {fmt(qs.unigram_bpb)} bits/byte "
                    f"({scope})",
                    f"{'improvement:':<19}{qs.gain_over_unigram:.2f} nats/token below the unigram baseline"]


def quickstart_markdown(qs) -> str:
    """OUT/quickstart.md: scores next to the baseline, time per phase, the samples."""
    lines = ["# Quickstart result", "",
             f"Trained {qs.steps} steps ({qs.tokens:,} tokens); run directory `{qs.run_dir}`.", "",
             "| model | tokens | loss (nats/token) | bits per byte |", "|---|---|---:|---:|"]
    if qs.test is not None:
        lines.append(f"| trained Transformer | test half (held out, nothing chosen on it) | {fmt(qs.test.loss)} "
                     f"| {fmt(qs.test.bpb)} |")
    dev_name = "development half" if qs.test is not None else "whole validation file (too small to split)"
    lines += [f"| trained Transformer | {dev_name} | {fmt(qs.dev.loss)} | {fmt(qs.dev.bpb)} |",
              f"| unigram (token frequencies) | {'test half' if qs.test is not None else dev_name} "
              f"| {fmt(qs.unigram_loss)} | {fmt(qs.unigram_bpb)} |", "",
             f"The model is {qs.gain_over_unigram:.2f} nats/token below the unigram baseline.", "",
             "Seconds per phase: " + ", ".join(f"{k} {v}" for k, v in qs.seconds.items()), "",
             "## Samples", ""]
    for sample in qs.samples:
        lines += ["```text", sample.strip(), "```", ""]
    if qs.report is not None:
        lines += [f"Full report with plots: `{qs.report}`", ""]
    return "\n".join(lines)
