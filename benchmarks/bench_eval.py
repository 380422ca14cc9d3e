"""Validation-loss evaluation: what sliding windows cost, what batching buys, and batch-size invariance.

Runs ``evaluate_loss`` over the first ``--max-tokens`` tokens of the TinyStories
validation stories (tokenized with a 2,048-token BPE trained on the TinyStories head)
with a model of the quickstart's shape (d_model 128, 4 layers, 4 heads, context 128,
random weights: the cost of a pass does not depend on them): non-overlapping windows
in batches of ``--batch-size``, sliding windows with strides C/2, C/4 and C/8, and the
naive anchor, non-overlapping windows one at a time (batch 1). Interleaved repeats, one
torch thread. Every repetition also records the relative difference between the
batched and the batch-1 loss (summed in float64, so it should be ~0).

    python benchmarks/bench_eval.py --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.corpora import TINYSTORIES_TRAIN, TINYSTORIES_VALID, text_prefix, token_array, tokenizer_dir
from benchmarks.harness import Contender, compare, group, script_main

# The package entry points this script uses (one place, so a restructured package is one edit away).
from cs336_basics.evaluation import evaluate_loss
from cs336_basics.model import ModelConfig, TransformerLM

SIZES = {
    "quick": dict(max_tokens=4_096, batch_size=32, repeats=3),
    "full": dict(max_tokens=32_768, batch_size=64, repeats=5),
}


def measure(settings: dict, data_dir) -> dict:
    torch.set_num_threads(1)
    cfg = ModelConfig(vocab_size=2048, context_length=128, d_model=128, num_layers=4, num_heads=4)  # quickstart shape
    model = TransformerLM(cfg, seed=0).eval()
    tok = tokenizer_dir(text_prefix(TINYSTORIES_TRAIN, None, data_dir), cfg.vocab_size)
    tokens = token_array(tok, text_prefix(TINYSTORIES_VALID, None, data_dir), settings["max_tokens"])
    C, batch = cfg.context_length, settings["batch_size"]
    losses: dict[tuple, float] = {}
    rel_diff: list[float] = []

    def runner(stride, size):
        def fn():
            losses[(stride, size)] = evaluate_loss(model, tokens, C, size, stride=stride, show_progress=False).loss
            if size == 1:  # runs after the batched pass of the same round
                rel_diff.append(abs(losses[(None, batch)] - losses[(None, 1)]) / losses[(None, 1)])
        return fn

    n = len(tokens)
    contenders = [Contender("non-overlapping", runner(None, batch), work=n, work_unit="tok")]
    contenders += [Contender(f"stride C/{k}", runner(C // k, batch), work=n, work_unit="tok") for k in (2, 4, 8)]
    contenders.append(Contender("non-overlapping, batch 1", runner(None, 1), work=n, work_unit="tok"))
    results = compare(contenders, repeats=settings["repeats"], warmup=1)
    title = (f"{n:,} validation tokens, context {C}, batch {batch} (stride C/k: k times the forward tokens), "
             f"{model.num_parameters() / 1e6:.2f}M parameters, 1 thread")
    return {"groups": [group("windows", title, results, size=f"{n:,} tokens, context {C}",
                             metrics={"relative loss difference, batched vs 1": rel_diff[-settings["repeats"]:]})],
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
