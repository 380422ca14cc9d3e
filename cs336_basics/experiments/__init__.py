"""Experiments: sweeps over configs and ablations, run one after another or side by side.

- :mod:`.grid`: sweep specifications (grid, named ablations, batch-size LR rules) and their expansion;
- :mod:`.sweep`: running a sweep (in-process or subprocesses over GPUs), resumable, ``results.jsonl``;

Reading run directories is :mod:`cs336_basics.runs.records`; plots and the sweep report are
:mod:`cs336_basics.reporting`.

See docs/experiments.md for the commands (``cs336 sweep``, ``cs336 plot``).
"""

from cs336_basics.experiments.grid import (
    Ablation,
    PlannedRun,
    SweepSpec,
    batch_rule_overrides,
    expand,
    load_sweep_file,
    merge_specs,
    parse_grid_arg,
)
from cs336_basics.experiments.sweep import SweepOutcome, SweepRunner, run_sweep


def expand_grid(base_config=None, grid=None, *, overrides=None, ablations=None, batch_rule="none",
                fixed_tokens=False, name="sweep") -> list[PlannedRun]:
    """Convenience: expand ``--grid``-style strings (``["optimizer.lr_max=1e-4,3e-4"]``) into planned runs."""
    spec = SweepSpec(name=name, base_config=None if base_config is None else str(base_config),
                     overrides=list(overrides or []), ablations=list(ablations or []),
                     batch_rule=batch_rule, fixed_tokens=fixed_tokens)
    return expand(merge_specs(spec, grid=list(grid or [])))


__all__ = [
    "Ablation", "PlannedRun", "SweepOutcome", "SweepRunner", "SweepSpec", "batch_rule_overrides", "expand",
    "expand_grid", "load_sweep_file", "merge_specs", "parse_grid_arg", "run_sweep",
]
