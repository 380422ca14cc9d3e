"""The tables of docs/questions.md sections 9 and 10, rendered from their committed records.

Each section's runs are recorded in ``docs/questions/records/NAME.jsonl`` (one JSON
object per run); :func:`blocks` turns them into the markdown tables that
:mod:`benchmarks.render` writes between ``<!-- bench:questions-NAME:start/end -->``
markers, so no figure in those tables is typed by hand.

Every loss and bits-per-byte column reads the periodic evaluations, which score a
fixed leading subset of the validation stories (``train.eval_tokens``). That subset
lies inside the development half of the held-out split
(:mod:`cs336_basics.evaluation.heldout`: the development half is the leading tokens),
so the choices these tables support were made without the test half.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

QUESTION_RECORDS = Path(__file__).resolve().parents[1] / "docs" / "questions" / "records"

SAMPLE_TRAIN_TOKENS = 570_496
"""Tokens of the bundled sample's training text under its 2,048-id tokenizer (docs/questions.md section 10)."""

RECIPE_CHANGES = {
    "baseline": "handout recipe: AdamW, cosine, SwiGLU, handout init",
    "baseline_again": "the same, trained last",
    "muon": "Muon (lr 0.02) for the blocks' matrices",
    "qk_norm": "QK-norm",
    "relu2": "ReLU² MLP (d_ff 512)",
    "zero_out": "zero-initialised output projections",
    "wsd_0.2": "WSD, decay over the last 20 %",
    "wsd_0.4": "WSD, decay over the last 40 %",
    "recipe": "Muon + QK-norm + zero_out + WSD 0.2",
    "recipe_relu2": "the same + ReLU²",
}
"""Section 9's runs (``docs/questions/records/recipe_cpu.jsonl``), in the record's order, and what each changes."""

QUICKSTART_CHANGES = {
    "before": "the section 9 recipe",
    "dropout": "residual + attention dropout 0.1",
    "resid_dropout_0.2": "residual dropout 0.2 only",
    "context_256": "dropout 0.1, context 256, batch 8",
    "anneal_to_zero": "dropout 0.1, WSD over the last 30 % to 1e-5",
    "tied": "the same + tied embeddings",
    "tied_no_dropout": "tied, annealed to 1e-5, no dropout",
}
"""Section 10's runs (``docs/questions/records/quickstart_9min.jsonl``) and what each changes."""


def read_records(name: str, records_dir: Path = QUESTION_RECORDS) -> list[dict]:
    with open(records_dir / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def recipe_table(records: list[dict]) -> str:
    """Section 9: steps in the 3-minute budget and the final validation loss, against the mean of the baselines."""
    by_name = {r["name"]: r for r in records}
    reference = statistics.mean(by_name[n]["final_val_loss"] for n in ("baseline", "baseline_again"))
    best = min(r["final_val_loss"] for r in records)
    rows = ["| run | what changes | steps in 3 min | final val loss (development subset) | vs baseline (mean of the two) |",
            "|---|---|---:|---:|---:|"]
    for name in sorted(by_name, key=lambda n: (n != "baseline", n != "baseline_again", list(by_name).index(n))):
        r = by_name[name]
        loss = f"{r['final_val_loss']:.4f}"
        loss = f"**{loss}**" if r["final_val_loss"] == best else loss
        delta = "" if name.startswith("baseline") else _signed(r["final_val_loss"] - reference)
        rows.append(f"| {name} | {RECIPE_CHANGES.get(name, '')} | {r['steps']:,} | {loss} | {delta} |")
    return "\n".join(rows)


def quickstart_table(records: list[dict]) -> str:
    """Section 10: each 9-minute run's last and lowest evaluation on the development subset, against ``before``."""
    reference = records[0]["evals_on_subset"][-1]["val_loss"]
    finals = [r["evals_on_subset"][-1]["val_loss"] for r in records]
    rows = ["| run | what changes | steps | training tokens (passes) | lowest val loss (at step) | "
            "final val loss | final bits/byte | final vs before |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r, final in zip(records, finals):
        evals = r["evals_on_subset"]
        low = min(evals, key=lambda e: e["val_loss"])
        last = evals[-1]
        mark = (lambda s: f"**{s}**") if final == min(finals) else (lambda s: s)
        rows.append(f"| {r['name']} | {QUICKSTART_CHANGES.get(r['name'], '')} | {r['steps']:,} | "
                    f"{r['train_tokens'] / 1e6:.2f}M ({r['train_tokens'] / SAMPLE_TRAIN_TOKENS:.1f}) | "
                    f"{low['val_loss']:.3f} ({low['step']:,}) | {mark(f'{final:.3f}')} | "
                    f"{mark(format(last['val_bpb'], '.3f'))} | {'' if r is records[0] else _signed(final - reference)} |")
    return "\n".join(rows)


SWEEPS = ("ffn_width_cpu", "ffn_cpu", "position_cpu", "norm_cpu", "moe_cpu", "dropout_cpu", "lr_cpu",
          "batch_size_cpu", "parallel_cpu")
"""Sections 1 to 7: the sweeps of ``configs/experiments/NAME.toml`` (``scripts/question_sweeps.sh`` reruns them)."""


def _loss(value) -> str:
    if not isinstance(value, (int, float)):
        return "none"  # the run ended before its first evaluation
    return f"{value:.4f}" if math.isfinite(value) else "not finite"


def sweep_table(records: list[dict]) -> str:
    """One sweep's runs as its ``results.jsonl`` has them: what each changes, how it ended, its validation loss."""
    rows = ["| run | what changes | status | steps | final val loss | lowest val loss |", "|---|---|---|---:|---:|---:|"]
    for r in records:
        changes = ", ".join(f"`{key}={value}`" for key, value in r.get("config_diff", {}).items()) or "the base config"
        rows.append(f"| {r['name']} | {changes} | {r['status']} | {r['steps']:,} | {_loss(r.get('final_val_loss'))} | "
                    f"{_loss(r.get('best_val_loss'))} |")
    return "\n".join(rows)


def blocks(records_dir: Path = QUESTION_RECORDS) -> dict[str, str]:
    out = {"questions-recipe_cpu": recipe_table(read_records("recipe_cpu", records_dir)),
           "questions-quickstart_9min": quickstart_table(read_records("quickstart_9min", records_dir))}
    for name in SWEEPS:
        if (records_dir / f"{name}.jsonl").exists():
            out[f"questions-{name}"] = sweep_table(read_records(name, records_dir))
    return out
