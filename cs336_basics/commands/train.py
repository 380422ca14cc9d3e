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

from cs336_basics.commands import add_config_args, existing_path, positive_int

# option -> config key; each is a shortcut for --set KEY=VALUE
SHORTCUTS = {
    "run_name": "train.run_name",
    "runs_dir": "train.runs_dir",
    "dataset": "data.dataset_dir",
    "checkpoint": "train.checkpoint",
    "batch_size": "train.batch_size",
    "total_tokens": "train.total_tokens",
    "total_steps": "train.total_steps",
    "eval_batch_size": "train.eval_batch_size",
    "lr_max": "optimizer.lr_max",
    "lr_min": "optimizer.lr_min",
    "warmup_iters": "optimizer.warmup_iters",
    "device": "train.device",
    "seed": "train.seed",
}


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
    parser.add_argument("--run-name", help="run directory name under train.runs_dir (train.run_name)")
    parser.add_argument("--runs-dir", help="parent folder of run directories (train.runs_dir, default runs)")
    parser.add_argument("--dataset", metavar="DIR", help="dataset directory with train.npy, valid.npy, tokenizer/ "
                                                         "(data.dataset_dir)")
    parser.add_argument("--checkpoint", type=existing_path, metavar="PATH",
                        help="start from this checkpoint's weights, optimizer and step (train.checkpoint)")
    parser.add_argument("--batch-size", type=positive_int, help="sequences per step (train.batch_size)")
    parser.add_argument("--total-tokens", type=positive_int,
                        help="training tokens; steps = tokens / (batch x context) (train.total_tokens)")
    parser.add_argument("--total-steps", type=positive_int, help="optimizer steps (train.total_steps)")
    parser.add_argument("--eval-batch-size", type=positive_int, help="validation batch size (train.eval_batch_size)")
    parser.add_argument("--lr-max", type=float, help="peak learning rate (optimizer.lr_max)")
    parser.add_argument("--lr-min", type=float, help="final learning rate (optimizer.lr_min)")
    parser.add_argument("--warmup-iters", type=int, help="linear warmup steps (optimizer.warmup_iters)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (train.device)")
    parser.add_argument("--seed", type=int, help="seed for init and batches (train.seed)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (train.compile)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its default and exit")
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    from cs336_basics.config import load_config

    shortcuts = [f"{key}={getattr(args, opt)}" for opt, key in SHORTCUTS.items() if getattr(args, opt) is not None]
    if args.compile:
        shortcuts.append("train.compile=true")
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
