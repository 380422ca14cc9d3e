"""`cs336 download`: placeholder until its issue lands."""

from cs336_basics.commands import not_implemented


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser("download", parents=parents, help="(not implemented yet)",
                                   description="(not implemented yet)")
    parser.set_defaults(func=not_implemented("download"))
