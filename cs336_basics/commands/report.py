"""`cs336 report RUN_DIR`: a Markdown report with plots for one run, or the sweep report for a sweep directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from cs336_basics.commands import existing_dir


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "report", parents=parents, help="write a Markdown report with plots for a run (or a sweep)",
        description="Write RUN_DIR/report.md with plots in RUN_DIR/plots/: summary and final metrics, train and "
                    "validation loss vs steps and vs wall-clock, learning rate, gradient norm, tokens/s, a "
                    "power-law fit of the validation curve with a plateau verdict, and the generated samples "
                    "with their metrics. Given a sweep directory (made by 'cs336 sweep'), writes the sweep report.")
    parser.add_argument("run_dir", type=existing_dir, metavar="RUN_DIR", help="a run directory (runs/NAME) or a sweep directory")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="where to write the report (default: RUN_DIR/report.md)")
    parser.set_defaults(func=run)


def is_sweep(path: Path) -> bool:
    from cs336_basics.reporting.sweep_report import is_sweep_dir

    return is_sweep_dir(path) or (path / "results.jsonl").is_file()


def run(args: argparse.Namespace) -> int:
    path: Path = args.run_dir
    if is_sweep(path):
        from cs336_basics.errors import UserError
        from cs336_basics.reporting.sweep_report import write_sweep_report

        if args.out is not None:
            raise UserError("--out is not supported for sweep reports; they are written to SWEEP_DIR/report.md")
        out = write_sweep_report(path)
    else:
        from cs336_basics.reporting.run_report import write_run_report

        out = write_run_report(path, args.out)
    print(out)
    return 0
