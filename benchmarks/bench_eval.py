"""Validation-loss evaluation: what sliding windows cost, what batching buys, and a padded reference to match.

Runs ``evaluate_loss`` over the first ``--max-tokens`` tokens of the TinyStories
validation stories (tokenized with a 2,048-token BPE trained on the TinyStories head)
with a model of the quickstart's shape (d_model 128, 4 layers, 4 heads, context 128,
random weights, the attention projections and the output layer scaled by 4 so that
attention is peaked and predictions are not uniform: the cost of a pass does not
depend on the weights): non-overlapping windows
in batches of ``--batch-size``, sliding windows with strides C/2, C/4 and C/8, and the
naive anchor, non-overlapping windows one at a time (batch 1). Interleaved repeats, one
torch thread.

Every repetition also records how far each of those five losses lies from a
reference computed apart from ``evaluate_loss``, in a setting where padding would
leak if a mask were wrong: the windows are built from their definition (the module
docstring of ``cs336_basics.evaluation.token_file_loss``), every window is right-padded with
random token ids to the full context and all of them run as batches of full rows,
and each row is scored on its own targets only (per-token ``F.cross_entropy``
summed in float64). The default token counts leave a short final window (63
inputs), which ``evaluate_loss`` runs unpadded and the reference pads with 65
random ids; the stride C/k passes score only the last C/k targets of every
window. A model whose causal mask let a position see later ones, a pass that
scored padded or already-scored targets, or one that padded the short window into
a batch without a mask, moves the loss far beyond float32 rounding; a correct
build differs by rounding alone (the metric: the largest relative difference of
the five). tests/benchmarks/test_benchmark_anchors.py breaks the score mask and the causal
mask on purpose and checks that the reference then disagrees by far more than the
target.

    python benchmarks/bench_eval.py --quick
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.corpora import TINYSTORIES_TRAIN, TINYSTORIES_VALID, text_prefix, token_array, tokenizer_dir
from benchmarks.harness import Contender, compare, group
from benchmarks.script import script_main

# The package entry points this script uses (one place, so a restructured package is one edit away).
from cs336_basics.evaluation import evaluate_loss
from cs336_basics.model import ModelConfig, TransformerLM

SIZES = {
    "quick": dict(max_tokens=4_160, batch_size=32, repeats=3),
    "full": dict(max_tokens=32_832, batch_size=64, repeats=5),
}


def sharpen(model, scale: float = 4.0):
    """Random weights made to depend on their context: the attention projections and the output layer times ``scale``.

    At initialisation attention is nearly uniform and the predictions nearly so, so a leak would move the loss
    little; scaled, attention is peaked and the predictions are not, while the cost of a pass stays the same.
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("attn.qkv_proj.weight") or name == "lm_head.weight":
                param.mul_(scale)
    return model


def padded_reference(model, tokens, context: int, stride: int | None, batch_size: int) -> float:
    """Mean next-token loss over ``tokens`` without ``evaluate_loss``: every window right-padded with random ids.

    The first window's inputs end at index ``context``, each next one's ``stride`` later (``context`` for
    non-overlapping windows), never past the last input; each window scores the targets after the previous
    window's end. A sliding window reaches back a whole context; a non-overlapping one starts where the
    previous one ended, so the last may be short.
    """
    ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    last, step = len(ids) - 1, stride or context
    junk = torch.Generator().manual_seed(0)
    rows, spans = [], []
    scored, end = 0, min(context, last)
    while scored < last:
        start = max(0, end - context) if stride else scored
        row = torch.randint(model.config.vocab_size, (context + 1,), generator=junk)  # the padding
        row[:end + 1 - start] = ids[start:end + 1]
        rows.append(row)
        spans.append((scored - start, end - start))  # the row's scored inputs
        scored, end = end, min(end + step, last)
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = torch.stack(rows[i:i + batch_size])  # (B, C + 1)
            logits = model(batch[:, :-1])  # (B, C, V)
            for row, row_logits, (a, b) in zip(batch, logits, spans[i:i + batch_size]):
                nll += F.cross_entropy(row_logits[a:b], row[a + 1:b + 1], reduction="none").double().sum().item()
                count += b - a
    return nll / count


def measure(settings: dict, data_dir) -> dict:
    torch.set_num_threads(1)
    cfg = ModelConfig(vocab_size=2048, context_length=128, d_model=128, num_layers=4, num_heads=4)  # quickstart shape
    model = sharpen(TransformerLM(cfg, seed=0).eval())
    tok = tokenizer_dir(text_prefix(TINYSTORIES_TRAIN, None, data_dir), cfg.vocab_size)
    tokens = token_array(tok, text_prefix(TINYSTORIES_VALID, None, data_dir), settings["max_tokens"])
    C, batch = cfg.context_length, settings["batch_size"]
    strides = [None] + [C // k for k in (2, 4, 8)]
    reference = {stride: padded_reference(model, tokens, C, stride, batch) for stride in strides}
    losses: dict[tuple, float] = {}
    rel_diff: list[float] = []

    def runner(stride, size):
        def fn():
            losses[(stride, size)] = evaluate_loss(model, tokens, C, size, stride=stride, show_progress=False).loss
            if size == 1:  # the last pass of a round: every loss of the round is in
                rel_diff.append(max(abs(loss - reference[s]) / reference[s] for (s, _), loss in losses.items()))
        return fn

    n = len(tokens)
    contenders = [Contender("non-overlapping", runner(None, batch), work=n, work_unit="tok")]
    contenders += [Contender(f"stride C/{k}", runner(C // k, batch), work=n, work_unit="tok") for k in (2, 4, 8)]
    contenders.append(Contender("non-overlapping, batch 1", runner(None, 1), work=n, work_unit="tok"))
    results = compare(contenders, repeats=settings["repeats"], warmup=1)
    title = (f"{n:,} validation tokens, context {C}, batch {batch} (stride C/k: k times the forward tokens), "
             f"{model.num_parameters() / 1e6:.2f}M parameters, 1 thread")
    return {"groups": [group("windows", title, results, size=f"{n:,} tokens, context {C}",
                             metrics={"largest relative loss difference vs the padded reference":
                                      rel_diff[-settings["repeats"]:]},
                             facts={"short final window, inputs": (n - 1) % C})],
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
