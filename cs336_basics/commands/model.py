"""`cs336 model ...`: placeholder until the model issue lands."""

from cs336_basics.commands import not_implemented


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser("model", parents=parents, help="model accounting (parameters, memory, FLOPs)",
                                   description="Model tools.")
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    info = sub.add_parser("info", parents=parents, help="(not implemented yet)")
    info.set_defaults(func=not_implemented("model info"))
