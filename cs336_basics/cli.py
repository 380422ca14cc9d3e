"""The ``cs336`` command: argument parsing, error reporting, and dispatch to subcommands.

Each subcommand lives in its own module under :mod:`cs336_basics.commands` and
exposes ``register(subparsers, parents)``; this file only wires them together
and enforces the error contract shared by all of them:

- bad usage (unknown option, bad value) -> one line on stderr, exit code 2;
- :class:`~cs336_basics.errors.UserError` or a missing/unreadable file -> one line, exit 2;
- anything else is a bug -> one line naming it, exit 1;
- ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from cs336_basics import __version__
from cs336_basics.errors import ExitCode, UserError
from cs336_basics.progress import set_quiet

# Subcommand modules, in the order --help lists them (the pipeline's order).
COMMAND_MODULES = [
    "download",
    "prepare",
    "tokenizer",
    "tokenize",
    "train",
    "generate",
    "eval",
    "sweep",
    "plot",
    "report",
    "model",
    "export",
    "quickstart",
    "doctor",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with a pointer to --help, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or status lines")
    return common


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first non-option word), if it is one of ours."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMAND_MODULES else None


def build_parser(argv: Sequence[str] | None = None) -> ArgumentParser:
    """The full parser; given ``argv`` that names a command, only that command's module is imported.

    Registering every command imports what their help texts need (numpy, HTTP code);
    a command run skips the others. ``cs336 --help`` and unknown commands still see them all.
    """
    common = _common_options()
    parser = ArgumentParser(
        prog="cs336",
        description="Train byte-level BPE tokenizers and Transformer language models from scratch.",
        epilog="Run 'cs336 COMMAND --help' for the options of a command. "
               "Quickest start: 'cs336 quickstart'. What runs here: 'cs336 doctor'.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"cs336_basics {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    only = _requested_command(argv) if argv is not None else None
    for name in [only] if only else COMMAND_MODULES:
        module = importlib.import_module(f"cs336_basics.commands.{name}")
        module.register(subparsers, [common])
    return parser


MAX_ERROR_CHARS = 600


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = " ".join(text.split("\n")[0].split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 4] + " ..."


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        hint = {
            FileNotFoundError: "check the path",
            PermissionError: "check permissions or choose another location",
            IsADirectoryError: "give a file, not a directory",
            NotADirectoryError: "give a directory",
        }.get(type(exc), "")
        return f"{exc.strerror}: {exc.filename}" + (f" ({hint})" if hint else "")
    return _one_line(exc)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or bool(os.environ.get("CS336_DEBUG"))
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if quiet:
        set_quiet(True)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return ExitCode.USER_ERROR
    try:
        result = args.func(args)
        sys.stdout.flush()
        return int(result or 0)
    except BrokenPipeError:
        # the reader closed the pipe (cs336 plot ... | head): it has what it wanted; leave quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except KeyboardInterrupt:
        if debug:
            raise
        print("cs336: interrupted", file=sys.stderr)
        return ExitCode.SIGINT
    except UserError as exc:
        if debug:
            raise
        print(f"cs336: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if debug:
            raise
        print(f"cs336: error: {_describe_os_error(exc)}", file=sys.stderr)
        return ExitCode.USER_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        print(f"cs336: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return ExitCode.INTERNAL_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
