"""`cs336 generate`: placeholder until its issue lands."""

from cs336_basics.commands import not_implemented


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser("generate", parents=parents, help="(not implemented yet)",
                                   description="(not implemented yet)")
    parser.set_defaults(func=not_implemented("generate"))
