"""`cs336 tokenizer ...`: placeholder until the BPE training issue lands."""

from cs336_basics.commands import not_implemented


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser("tokenizer", parents=parents, help="train a byte-level BPE tokenizer",
                                   description="Tokenizer tools.")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    train = sub.add_parser("train", parents=parents, help="(not implemented yet)")
    train.set_defaults(func=not_implemented("tokenizer train"))
