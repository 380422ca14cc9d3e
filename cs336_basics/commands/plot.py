"""`cs336 plot`: learning curves of several runs in one PNG + SVG, and a table of final metrics.

The assignment's two views::

    cs336 plot runs/lr_* --x steps       # validation loss vs gradient steps
    cs336 plot runs/lr_* --x wallclock   # validation loss vs wall-clock time
"""

from __future__ import annotations

import argparse
import json

from cs336_basics.commands import existing_dir


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "plot", parents=parents, help="plot learning curves of runs (PNG + SVG); --table for final metrics",
        description="Plot one metric of several runs against steps, tokens or wall-clock time. The legend "
                    "names the config keys that differ between the runs. A sweep directory or runs/ folder "
                    "stands for all the runs inside it.")
    parser.add_argument("run_dirs", nargs="+", type=existing_dir, metavar="RUN_DIR",
                        help="run directories (runs/NAME) or folders of them")
    parser.add_argument("--x", choices=["steps", "tokens", "wallclock"], default="steps", help="x axis (default steps)")
    parser.add_argument("--metric", default="val_loss",
                        help="metrics.jsonl field to plot: val_loss (default), loss, lr, grad_norm, tokens_per_s, ...")
    parser.add_argument("--out", metavar="FILE",
                        help="output path without suffix (.png, .svg and a .json of the plotted data are written); "
                             "default: plots/METRIC_vs_X beside the runs")
    parser.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    parser.add_argument("--title", help="plot title")
    parser.add_argument("--table", action="store_true", help="also print a Markdown table of final metrics")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cs336_basics.reporting.plotting import plot_runs
    from cs336_basics.reporting.sweep_report import final_metrics_table

    if args.table:
        print(final_metrics_table(args.run_dirs))
    paths = plot_runs(args.run_dirs, x=args.x, metric=args.metric, out=args.out, title=args.title, log_y=args.log_y)
    print("wrote " + ", ".join(str(p) for p in paths[:2]))
    keys_table = json.loads(paths[2].read_text(encoding="utf-8")).get("keys_table")
    if keys_table:  # the legend names the runs; what each one changed
        print(keys_table, end="")
    return 0
