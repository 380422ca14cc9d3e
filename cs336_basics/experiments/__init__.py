"""Experiments: sweeps over configs, ablations, learning-curve plots and sweep reports.

- :mod:`.grid`: sweep specifications (grid, named ablations, batch-size LR rules) and their expansion;
- :mod:`.sweep`: running a sweep (in-process or subprocesses over GPUs), resumable, ``results.jsonl``;
- :mod:`.runs`: reading run directories (curves, summaries, which config keys differ);
- :mod:`.plotting`: PNG/SVG learning curves with a JSON sidecar of the plotted series;
- :mod:`.report`: the final-metrics Markdown table and the one-page sweep report.

See docs/experiments.md for the commands (``cs336 sweep``, ``cs336 plot``).
"""

from cs336_basics.experiments.grid import (Ablation, PlannedRun, SweepSpec, batch_rule_overrides, expand,
                                           load_sweep_file, merge_specs, parse_grid_arg)
from cs336_basics.experiments.plotting import plot_runs
from cs336_basics.experiments.report import final_metrics_table, is_sweep_dir, write_sweep_report
from cs336_basics.experiments.runs import Run, RunSummary, differing_keys, load_run, summarize_records
from cs336_basics.experiments.sweep import SweepOutcome, SweepRunner, run_sweep


def expand_grid(base_config=None, grid=None, *, overrides=None, ablations=None, batch_rule="none",
                fixed_tokens=False, name="sweep") -> list[PlannedRun]:
    """Convenience: expand ``--grid``-style strings (``["optimizer.lr_max=1e-4,3e-4"]``) into planned runs."""
    spec = SweepSpec(name=name, base_config=None if base_config is None else str(base_config),
                     overrides=list(overrides or []), ablations=list(ablations or []),
                     batch_rule=batch_rule, fixed_tokens=fixed_tokens)
    return expand(merge_specs(spec, grid=list(grid or [])))


__all__ = [
    "Ablation", "PlannedRun", "Run", "RunSummary", "SweepOutcome", "SweepRunner", "SweepSpec",
    "batch_rule_overrides", "differing_keys", "expand", "expand_grid", "final_metrics_table", "is_sweep_dir", "load_run",
    "load_sweep_file", "merge_specs", "parse_grid_arg", "plot_runs", "run_sweep", "summarize_records",
    "write_sweep_report",
]
