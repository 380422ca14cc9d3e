"""Package exports that import their submodule on first use (PEP 562).

``cs336_basics.config`` imports ``model/config.py`` and ``training/config.py``,
which runs those packages' ``__init__``; if that imported the network and the
loop, every command that only reads a config would pay the two seconds torch
takes to import. So ``model`` and ``training`` list their public names here and
import each one when it is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``, whose ``exports`` map a public name to its submodule."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
