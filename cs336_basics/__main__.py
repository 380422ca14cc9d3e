"""``python -m cs336_basics`` starts the same CLI as the ``cs336`` command."""

from cs336_basics.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
