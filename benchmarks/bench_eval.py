"""Validation-loss evaluation: what sliding windows buy and cost, and batch-size invariance.

For one trained checkpoint and one token file, runs ``evaluate_loss`` with
non-overlapping windows and with strides C/2, C/4, C/8 (interleaved repeats,
medians, time ratios vs the non-overlapping pass), and records the loss each
gives. Also checks that batch sizes 1 and 64 give the same loss (relative
difference) and times the naive anchor: the same windows one at a time
(batch 1), which is what a first implementation usually does.

    python benchmarks/bench_eval.py --checkpoint runs/main --data data/ts/valid.npy --max-tokens 65536

Results go to stdout as Markdown (copy into benchmarks/results/evaluation.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Contender, compare, print_table  # noqa: E402

from cs336_basics.evaluation import bytes_per_token_from_manifest, evaluate_loss  # noqa: E402
from cs336_basics.tokenizer.token_files import open_token_file, read_manifest  # noqa: E402
from cs336_basics.runs.trained import load_trained_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-tokens", type=int, default=65536)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_trained_model(args.checkpoint)
    model, context = loaded.model, loaded.config.model.context_length
    tokens = np.asarray(open_token_file(args.data)[: args.max_tokens])
    bpt = bytes_per_token_from_manifest(read_manifest(args.data))
    strides = [None, context // 2, context // 4, context // 8]
    losses: dict[str, object] = {}

    def runner(stride, batch):
        def fn():
            losses[(stride, batch)] = evaluate_loss(model, tokens, context, batch, stride=stride, bytes_per_token=bpt,
                                                    show_progress=False)
        return fn

    contenders = [Contender("non-overlapping", runner(None, args.batch_size), work=len(tokens), work_unit="tok")]
    contenders += [Contender(f"stride {s}", runner(s, args.batch_size), work=len(tokens), work_unit="tok")
                   for s in strides[1:]]
    contenders.append(Contender("non-overlapping, batch 1 (naive anchor)", runner(None, 1), work=len(tokens),
                                work_unit="tok"))
    results = compare(contenders, repeats=args.repeats)
    print(f"\ncheckpoint {loaded.checkpoint_path} (step {loaded.step}), {len(tokens):,} tokens of {args.data}, "
          f"context {context}, torch threads {args.threads}\n")
    print_table(results, baseline="non-overlapping")
    print("\n| windows | loss | perplexity | bits/byte | top-1 | top-5 | forward tokens per scored token |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stride in strides:
        r = losses[(stride, args.batch_size)]
        cost = 1.0 if stride is None else context / stride
        bpb = "-" if r.bits_per_byte is None else f"{r.bits_per_byte:.4f}"
        print(f"| {'non-overlapping' if stride is None else f'stride {stride}'} | {r.loss:.4f} | {r.perplexity:.2f} | "
              f"{bpb} | {r.top1:.4f} | {r.top5:.4f} | {cost:.0f} |")
    a, b = losses[(None, args.batch_size)].loss, losses[(None, 1)].loss
    print(f"\nbatch {args.batch_size} vs batch 1: loss {a:.10f} vs {b:.10f}, relative difference {abs(a - b) / b:.2e}")


if __name__ == "__main__":
    main()
