"""`cs336 train`: train a Transformer LM from a config file, with overrides, resume and clean stops.

Precedence: the config file (or the defaults), then the shortcut options below
(the original workflow's names: run name, dataset directory, checkpoint path,
batch size, total tokens, eval batch size, lr max/min, warmup iterations), then
every ``--set section.key=value`` in order. The resolved config is written to
``RUNS_DIR/RUN_NAME/config.toml``.

Exit codes: 0 finished (or stopped at ``train.stop_at_step``), 2 bad input,
3 the run diverged (non-finite or exploding loss; see metrics.jsonl), 130
stopped by SIGINT, 143 stopped by SIGTERM (a checkpoint was saved; continue
with ``--resume auto``). See docs/training.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cs336_basics.commands import add_config_args, existing_path, positive_int


@dataclass(frozen=True)
class Shortcut:
    """A ``cs336 train`` option that is short for ``--set KEY=VALUE``; its help is the config field's docstring."""

    key: str
    """The config key the option sets."""
    type: Callable[[str], Any] | None = None
    """argparse ``type=``: checks the value early (None: the text as given; the config loader converts it)."""
    metavar: str | None = None
    const: str | None = None
    """For an option without a value: the value it sets."""


SHORTCUTS: dict[str, Shortcut] = {
    "--run-name": Shortcut("train.run_name"),
    "--runs-dir": Shortcut("train.runs_dir"),
    "--dataset": Shortcut("data.dataset_dir", metavar="DIR"),
    "--checkpoint": Shortcut("train.checkpoint", existing_path, "PATH"),
    "--batch-size": Shortcut("train.batch_size", positive_int),
    "--total-tokens": Shortcut("train.total_tokens", positive_int),
    "--total-steps": Shortcut("train.total_steps", positive_int),
    "--eval-batch-size": Shortcut("train.eval_batch_size", positive_int),
    "--lr-max": Shortcut("optimizer.lr_max", float),
    "--lr-min": Shortcut("optimizer.lr_min", float),
    "--warmup-iters": Shortcut("optimizer.warmup_iters", int),
    "--device": Shortcut("train.device"),
    "--seed": Shortcut("train.seed", int),
    "--compile": Shortcut("train.compile", const="true"),
}
"""Option -> the config key it sets; each option's help is the key's field docstring (:func:`shortcut_help`)."""


def _dest(flag: str) -> str:
    """The attribute argparse stores an option under (``--run-name`` -> ``run_name``)."""
    return flag.lstrip("-").replace("-", "_")


def shortcut_help(key: str, doc: str, default: Any) -> str:
    """An option's help text from its config field: the docstring, then the key (and its default, if any)."""
    where = key if default is None else f"{key}, default {default!r}"
    return f"{doc.rstrip('.')} ({where})".replace("%", "%%")


def add_shortcuts(parser: argparse.ArgumentParser) -> None:
    """One option per :data:`SHORTCUTS` entry, its help taken from the config field it sets."""
    from cs336_basics.config import RunConfig, describe_fields

    defaults = RunConfig()
    # only the sections the shortcuts set: describe_fields parses each one's source
    sections = {shortcut.key.partition(".")[0] for shortcut in SHORTCUTS.values()}
    fields = {f"{section}.{key}": (doc, default) for section in sections
              for key, _, default, doc in describe_fields(type(getattr(defaults, section)))}
    for flag, shortcut in SHORTCUTS.items():
        doc, default = fields[shortcut.key]
        if shortcut.const is not None:
            parser.add_argument(flag, action="store_const", const=shortcut.const,
                                help=shortcut_help(shortcut.key, doc, default))
        else:
            parser.add_argument(flag, type=shortcut.type, metavar=shortcut.metavar,
                                help=shortcut_help(shortcut.key, doc, default))


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "train", parents=parents, help="train a Transformer LM (config file + overrides; resumable)",
        description="Train a Transformer language model on token files made by 'cs336 tokenize'. Settings come "
                    "from --config (see configs/), then the shortcut options, then --set overrides. Ctrl-C (or "
                    "SIGTERM) finishes the step, saves a checkpoint and exits 130 (143); --resume auto continues.",
        epilog="Exit codes: 0 done, 2 bad input, 3 diverged, 130 SIGINT, 143 SIGTERM. "
               "Every config key: cs336 train --help-config.")
    add_config_args(parser)
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="continue a run: 'auto' = latest checkpoint of this run (fresh start if none), or a "
                             "checkpoint file / run directory")
    add_shortcuts(parser)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its default and exit")
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    from cs336_basics.config import load_config

    shortcuts = [f"{shortcut.key}={getattr(args, _dest(flag))}" for flag, shortcut in SHORTCUTS.items()
                 if getattr(args, _dest(flag)) is not None]
    if getattr(args, "quiet", False):
        shortcuts.append("logging.quiet=true")
    return load_config(args.config, shortcuts + list(args.overrides))


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        from cs336_basics.config import RunConfig, describe_fields

        for key, tp, default, doc in describe_fields(RunConfig):
            print(f"{key} ({tp}, default {default!r}): {doc}")
        return 0
    cfg = resolve_config(args)
    if args.print_config:
        import tomli_w

        from cs336_basics.config import to_dict

        print(tomli_w.dumps(to_dict(cfg)), end="")
        return 0
    from cs336_basics.training.loop import train

    result = train(cfg, resume=args.resume)
    return result.exit_code
