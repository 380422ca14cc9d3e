"""``cs336 report RUN_DIR``: one Markdown page that says how a run went and whether it is done.

The page (``RUN_DIR/report.md``, images in ``RUN_DIR/plots/``, so the folder is
self-contained and renders on GitHub or in any Markdown viewer) holds:

- a summary and the final metrics (last/best validation loss, perplexity, bits
  per byte, top-k accuracy when logged, throughput);
- train and validation loss against steps and against wall-clock time in one
  figure each (drawn here: :func:`~cs336_basics.reporting.plotting.plot_runs`
  compares one metric across runs; here two metrics of one run share axes);
- learning rate, gradient norm and tokens/s against steps (drawn with
  :func:`~cs336_basics.reporting.plotting.plot_runs`, given this single run);
- the convergence analysis of :mod:`.convergence` with its plot;
- the evolution of the generation metrics of ``samples/step_*.json`` and the
  text of the latest samples.

Everything is read from the run-directory contract (``config.toml``,
``metrics.jsonl``, ``samples/``), so the report also works on a run that is
still training or that crashed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.evaluation.samples import read_samples
from cs336_basics.fileio import atomic_write_text
from cs336_basics.outputs import check_output_file, starts_with
from cs336_basics.reporting.convergence import PowerLawFit, convergence_report, plot_convergence
from cs336_basics.reporting.figures import pyplot, save_figure
from cs336_basics.reporting.plotting import X_LABELS, plot_runs
from cs336_basics.runs.layout import REPORT_FILE, RunDir
from cs336_basics.runs.metrics import Event, Field
from cs336_basics.runs.records import as_float, load_run

SAMPLE_METRICS = ["distinct_1", "distinct_2", "distinct_3", "repetition_4gram", "eos_rate", "mean_tokens_to_eos",
                  "mean_tokens", "in_vocab_rate", "reference_ppl"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return lines + [""]


def _plot_two(run, x: str, out_stem: Path) -> Path | None:
    """Train loss and validation loss of one run against ``x`` on shared axes (PNG)."""
    train = run.curve(Field.LOSS, x)
    val = run.curve(Field.VAL_LOSS, x)
    if not train[0] and not val[0]:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.3))
    if train[0]:
        ax.plot(train[0], train[1], linewidth=1.0, alpha=0.8, label="train loss")
    if val[0]:
        subset = _eval_scope(run)
        ax.plot(val[0], val[1], "o-", markersize=3, linewidth=1.5, label=f"validation loss{subset}")
    whole = run.curve(Field.VAL_LOSS, x, event=Event.EVAL_FULL)
    if whole[0]:  # the final pass over the whole file: its own marker, never part of the curve
        ax.plot(whole[0], whole[1], "*", markersize=12, color="tab:red", label="validation loss, whole file (final)")
    finite = [y for y in train[1] + val[1] + whole[1] if math.isfinite(y)]
    if finite and max(finite) > 3 * min(finite):  # keep the interesting part visible after a huge first loss
        ax.set_yscale("log")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"loss vs {X_LABELS[x]}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out_stem)[0]


def _eval_scope(run) -> str:
    """`` (N-token subset)`` when the periodic evaluations scored a leading part of the validation file."""
    full = _last(run.records, Event.EVAL_FULL, Field.VAL_TOKENS)
    periodic = _last(run.records, Event.EVAL, Field.VAL_TOKENS)
    if full is not None and periodic is not None and periodic < full:
        return f" ({int(periodic) + 1:,}-token subset)"
    return ""


def _last(records: list[dict[str, Any]], event: str, key: str) -> Any:
    for rec in reversed(records):
        if rec.get(Field.EVENT) == event and key in rec:
            return rec[key]
    return None


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None and math.isfinite(v))
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summary_section(run) -> list[str]:
    s = run.summary()
    cfg = run.config
    rows = [
        ["status", "diverged" if s.diverged else ("finished" if s.finished else "running or interrupted")],
        ["stop reason", s.stop_reason],
        ["model", ", ".join(f"{k.split('.')[-1]}={cfg[k]}" for k in ("model.d_model", "model.num_layers",
                            "model.num_heads", "model.context_length", "model.vocab_size") if k in cfg) or None],
        ["steps", s.steps], ["tokens", s.tokens],
        ["wall-clock (s)", None if s.wallclock is None else round(s.wallclock, 1)],
        ["final train loss", s.final_train_loss],
        ["final validation loss", s.final_val_loss],
        ["best validation loss", s.best_val_loss],
    ]
    scope = _eval_scope(run)
    if scope:
        rows[rows.index(["final validation loss", s.final_val_loss])][0] += scope
        rows[rows.index(["best validation loss", s.best_val_loss])][0] += scope
    for key, label in ((Field.VAL_PPL, "final validation perplexity"), (Field.VAL_BPB, "final validation bits/byte"),
                       (Field.VAL_TOP1, "final validation top-1 accuracy"),
                       (Field.VAL_TOP5, "final validation top-5 accuracy")):
        value = as_float(_last(run.records, Event.EVAL, key))
        if value is not None:
            rows.append([label + scope, value])
    tokens = _last(run.records, Event.EVAL_FULL, Field.VAL_TOKENS)
    for key, label in ((Field.VAL_LOSS, "validation loss"), (Field.VAL_PPL, "validation perplexity"),
                       (Field.VAL_BPB, "validation bits/byte")):
        value = as_float(_last(run.records, Event.EVAL_FULL, key))
        if value is not None:
            rows.append([f"{label}, whole file at the end ({int(tokens):,} tokens)", value])
    tps = _median([as_float(r.get(Field.TOKENS_PER_S)) for r in run.records if r.get(Field.EVENT) == Event.TRAIN])
    if tps is not None:
        rows.append(["median training tokens/s", round(tps)])
    return ["## Summary", ""] + _table(["", "value"], rows)


def _link(path: Path, page_dir: Path) -> str:
    """A link from the report page to ``path``, relative so the folder can be moved or published."""
    return Path(os.path.relpath(path, page_dir)).as_posix()


def convergence_section(run, plots: Path, page_dir: Path) -> tuple[list[str], dict[str, Any] | None]:
    tokens, losses = run.curve(Field.VAL_LOSS, "tokens")
    source = "validation loss"
    if len(tokens) < 4:
        tokens, losses = run.curve(Field.LOSS, "tokens")
        source = "training loss (fewer than 4 validation points)"
    lines = ["## Convergence", ""]
    if len(tokens) < 3:
        return lines + ["Not enough points yet for a convergence analysis.", ""], None
    report = convergence_report(tokens, losses)
    lines += [f"Fitted to the {source} against training tokens: L(t) = E + A·t^(−α).", ""]
    if report["fit"] is None:
        lines += [f"No fit: {report.get('fit_error')}", ""]
    else:
        fit = PowerLawFit(**report["fit"])
        lines += _table(["quantity", "value"], [
            ["asymptote E", fit.E], ["exponent α", fit.alpha], ["fit RMSE", fit.rmse],
            ["points fitted", fit.num_points], ["final loss", report["final_loss"]],
            [f"projected at 2× tokens ({_fmt(2 * fit.t_max)})", report["projected_2x"]],
            [f"projected at 10× tokens ({_fmt(10 * fit.t_max)})", report["projected_10x"]],
        ])
        png = plot_convergence(tokens, losses, fit, plots / "convergence", title=f"{source} and power-law fit")[0]
        lines += [f"![convergence fit]({_link(png, page_dir)})", ""]
    lines += [f"**Plateau verdict:** {report['verdict_text']}.", ""]
    return lines, report


def samples_section(run_dir: RunDir, max_shown: int = 4) -> list[str]:
    samples = read_samples(run_dir)
    if not samples:
        return ["## Samples", "", "No samples were written (the run had no tokenizer, or samples are disabled).", ""]
    present = [k for k in SAMPLE_METRICS if any(s.get("metrics", {}).get(k) is not None for s in samples)]
    lines = ["## Samples", "", "Generation metrics on the fixed prompts at each evaluation (see docs/evaluation.md):", ""]
    lines += _table(["step"] + present, [[s.get("step")] + [s.get("metrics", {}).get(k) for k in present]
                                         for s in samples])
    last = samples[-1]
    lines += [f"Latest samples (step {last.get('step')}, settings {last.get('settings')}):", ""]
    rows = [[rec["prompt"] or "(empty: start of a document)", rec["text"].strip()[:400], rec["stopped_by"],
             rec["num_tokens"]]
            for rec in last.get("samples", [])[:max_shown]]
    lines += _table(["prompt", "continuation", "stopped by", "tokens"], rows)
    return lines


REPORT_HEADING = "# Run report: "
"""The first line of every run report: how an earlier one (which a new report replaces) is recognised."""


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report.md`` (plots into ``RUN_DIR/plots/``) and return its path.

    ``out`` may name a new file or an earlier run report, never a directory or another file."""
    rd = RunDir(Path(run_dir))
    out_path = Path(out) if out is not None else rd.report_path
    check_output_file(out_path, command="cs336 report", is_previous=starts_with(REPORT_HEADING), example=REPORT_FILE,
                      inputs=[rd.config_path, rd.metrics_path])
    run = load_run(run_dir)
    if not run.records:
        raise UserError(f"{run_dir} has no metrics yet (metrics.jsonl is missing or empty); train first")
    page_dir = out_path.parent
    plots = rd.plots
    plots.mkdir(parents=True, exist_ok=True)
    lines = [f"{REPORT_HEADING}{run.name}", ""]
    lines += summary_section(run)
    lines += ["## Learning curves", ""]
    for x in ("steps", "wallclock"):
        png = _plot_two(run, x, plots / f"loss_vs_{x}")
        if png is not None:
            lines += [f"![loss vs {x}]({_link(png, page_dir)})", ""]
    for metric in (Field.LR, Field.GRAD_NORM, Field.TOKENS_PER_S):
        if run.curve(metric, "steps")[0]:
            png = plot_runs([rd.root], x="steps", metric=metric, out=plots / f"{metric}_vs_steps")[0]
            lines += [f"![{metric} vs steps]({_link(png, page_dir)})", ""]
    conv_lines, _ = convergence_section(run, plots, page_dir)
    lines += conv_lines
    lines += samples_section(rd)
    if rd.config_path.exists():
        lines += ["## Configuration", "", "<details><summary>config.toml</summary>", "", "```toml",
                  rd.config_path.read_text(encoding="utf-8").rstrip(), "```", "", "</details>", ""]
    atomic_write_text(out_path, "\n".join(lines))
    return out_path
