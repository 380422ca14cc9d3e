"""`cs336 sweep`: expand a grid and/or named ablations over a base config and run them all.

Examples::

    cs336 sweep --config configs/experiments/base_cpu.toml --grid optimizer.lr_max=1e-3,3e-3,1e-2
    cs336 sweep --sweep-file configs/experiments/ablations_cpu.toml
    cs336 sweep --config BASE --grid train.batch_size=8,32,128 --batch-rule sqrt --fixed-tokens
    cs336 sweep --sweep-file F --gpus 0,1,2,3      # one run per GPU at a time, as subprocesses

Rerunning the same command skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from cs336_basics.commands import config_file, positive_int
from cs336_basics.errors import ExitCode, UserError


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "sweep", parents=parents, help="run a grid of configs or named ablations, with results.jsonl and plots",
        description="Expand a sweep (a --grid over a base --config and/or a --sweep-file of named ablations), "
                    "run each in its own run directory under OUT/NAME/runs/, skip finished runs, and record "
                    "one line per run in OUT/NAME/results.jsonl; finally write OUT/NAME/report.md with plots.",
        epilog="Sweep file format and presets: docs/experiments.md and configs/experiments/.")
    parser.add_argument("--config", "-c", type=config_file, metavar="FILE",
                        help="base run config (.toml/.yaml); overrides the sweep file's base")
    parser.add_argument("--sweep-file", "-f", type=config_file, metavar="FILE",
                        help="sweep file with [sweep], [grid] and [[runs]] sections")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a swept key and its values (repeatable; runs are the cartesian product)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every run (repeatable)")
    parser.add_argument("--name", help="sweep name (default: the sweep file's name, else 'sweep')")
    parser.add_argument("--out", default="sweeps", metavar="DIR", help="parent folder of sweep directories (default: sweeps)")
    parser.add_argument("--batch-rule", choices=["none", "linear", "sqrt"], default=None,
                        help="scale the learning rate with batch size relative to the base config's batch size")
    parser.add_argument("--fixed-tokens", action="store_true", default=None,
                        help="keep the base run's token budget: steps (and warmup/eval cadence) scale with 1/batch size")
    parser.add_argument("--gpus", metavar="LIST",
                        help="run several at once as subprocesses, one per GPU: '0,1,2,3' or 'auto'")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="without GPUs: runs at once on this machine, as subprocesses (default 1)")
    parser.add_argument("--launcher", choices=["inprocess", "subprocess"], default="inprocess",
                        help="train in this process one after another (default) or as 'cs336 train' children")
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs and their overrides, run nothing")
    parser.add_argument("--no-report", action="store_true", help="do not write report.md and plots at the end")
    parser.set_defaults(func=run)


def _gpus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text == "auto":
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise UserError("--gpus auto found no CUDA GPU; drop --gpus to train on this machine's CPU")
        return [str(i) for i in range(count)]
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise UserError(f"--gpus {text!r}: give GPU indices like 0,1,2 or 'auto'")
    return gpus


def run(args: argparse.Namespace) -> int:
    from cs336_basics.experiments import load_sweep_file, merge_specs
    from cs336_basics.experiments.sweep import SweepRunner
    from cs336_basics.reporting.sweep_report import final_metrics_table
    from cs336_basics.runs.layout import RunDir
    from cs336_basics.training.loop import train

    file_spec = load_sweep_file(args.sweep_file) if args.sweep_file else None
    if file_spec is None and not args.grid:
        raise UserError("nothing to sweep: give --grid KEY=V1,V2 (with --config) or --sweep-file FILE")
    spec = merge_specs(file_spec, name=args.name, base_config=args.config, overrides=args.overrides,
                       grid=args.grid, batch_rule=args.batch_rule, fixed_tokens=args.fixed_tokens)
    runner = SweepRunner(spec, args.out, command=shlex.join(["cs336", *sys.argv[1:]]) if sys.argv else None)
    if args.dry_run:
        for run_, state in runner.plan():
            print(f"{run_.name}\t{state}\t" + " ".join(f"--set {o}" for o in run_.overrides))
        return 0
    outcome = runner.run(train_fn=train, launcher=args.launcher, gpus=_gpus(args.gpus), jobs=args.jobs,
                         report=not args.no_report, inputs=[args.sweep_file] if args.sweep_file else [])
    run_dirs = [p for p in sorted((outcome.sweep_dir / "runs").glob("*")) if RunDir(p).metrics_path.exists()]
    if run_dirs:
        print(final_metrics_table(run_dirs))
    print(f"sweep directory: {outcome.sweep_dir}" + (f"  report: {outcome.report}" if outcome.report else ""))
    failed = [n for n in outcome.failed if outcome.results.get(n, {}).get("status") == "failed"]
    if failed:
        print(f"cs336 sweep: {len(failed)} run(s) failed: {', '.join(failed)} (see results.jsonl)", file=sys.stderr)
        return ExitCode.RUNS_FAILED
    return 0
