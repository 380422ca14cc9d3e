"""One module per ``cs336`` subcommand: each defines ``register(subparsers, parents)``.

Commands are thin: they parse arguments, call the library, and print. The
argument helpers here give every command the same spelling for shared options
(``--config``/``--set``) and the same one-line errors for missing files.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path

from cs336_basics.errors import UserError, not_a_file


def existing_file(text: str) -> Path:
    """argparse ``type=`` for an input file that must exist (usage error, exit 2, otherwise)."""
    path = Path(text)
    problem = not_a_file(path)
    if problem == "does not exist":
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    if problem == "is a directory, not a file":
        raise argparse.ArgumentTypeError(f"expected a file but got a directory: {text}")
    if problem is not None and "FIFO" not in problem:  # a pipe (<(...)) is a readable input
        raise argparse.ArgumentTypeError(f"{text} {problem}")
    return path


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"directory not found: {text}")
    return path


def existing_path(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"not found: {text}")
    return path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (nan and inf are refused: no option means anything with them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def byte_size(text: str) -> int:
    """argparse ``type=`` for sizes like ``512M``, ``2G``, ``1000000``."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 512M or 2G, got {text!r}")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def config_file(text: str) -> Path:
    """argparse ``type=`` for ``--config``: a file, or the name of a shipped preset (``tinystories``,
    ``experiments/lr_cpu``, ``models/gpt2-xl``), which also works after a non-editable install."""
    from cs336_basics.config import resolve_config_path
    from cs336_basics.errors import ConfigError

    try:
        path = resolve_config_path(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return existing_file(str(path))


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--config FILE`` (TOML/YAML, or a preset name) and repeatable ``--set section.key=value``."""
    parser.add_argument("--config", "-c", type=config_file, required=required, metavar="FILE",
                        help="run config file (.toml or .yaml) or a preset name such as 'tinystories' "
                             "(the files in configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set model.d_model=256 (repeatable)")


def add_special_token_options(parser: argparse.ArgumentParser) -> None:
    """``--special-token`` (repeatable) and ``--no-special-tokens``: the commands that train a tokenizer share them."""
    parser.add_argument("--special-token", dest="special_tokens", action="append", default=None, metavar="TOKEN",
                        help="a special token, never split or merged across (repeatable; default <|endoftext|>)")
    parser.add_argument("--no-special-tokens", action="store_true",
                        help="no special tokens at all (an <|endoftext|> in the text becomes ordinary text)")


def chosen_special_tokens(args: argparse.Namespace, defaults: Sequence[str]) -> list[str]:
    """The special tokens the options of :func:`add_special_token_options` ask for."""
    if args.no_special_tokens and args.special_tokens:
        raise UserError("--no-special-tokens contradicts --special-token; give one of them")
    return [] if args.no_special_tokens else list(dict.fromkeys(args.special_tokens or defaults))
