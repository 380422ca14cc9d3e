"""The optional C accelerators: load them once, say which engine runs, and why.

Six extension modules are built from ``cs336_basics/**/*.c`` at ``pip install``:

- ``tokenizer._bpe_count``     pre-tokenize and count (BPE training, first phase);
- ``tokenizer._bpe_merge``     the incremental merge engine (BPE training, second phase);
- ``tokenizer._encode_native`` the encoder's pre-tokenizer and merge loop;
- ``training._adamw_native``   AdamW's update of CPU float32 tensors in one pass
  (:mod:`cs336_basics.training.fused_adamw`);
- ``model._layers_native``       RMSNorm and the SwiGLU gate over CPU float32 or bf16
  activations, forward and backward (:mod:`cs336_basics.model.fused_layers`);
- ``training._cross_entropy_native`` the loss's forward and backward over CPU float32 or bf16
  logits, one pass per row (:mod:`cs336_basics.training.fused_cross_entropy`).

The registry lives here, in the runtime layer below every package that has C code, so
that ``cs336 doctor`` and ``CS336_REQUIRE_NATIVE`` cover every extension; it names the
modules only as strings (importing one imports nothing of ours but its package).
Each has a pure-Python fallback with identical results (for AdamW, the
cross-entropy and the layers: the same results within the bounds their docstrings state), much slower. pip hides the
compiler's output, so a failed build would go unnoticed; this module keeps the
reason an extension is unavailable, and:

- :func:`status` lists every extension with ``loaded`` and the reason (``cs336 doctor``);
- :func:`warn_if_fallback` prints one warning line naming what falls back and how to fix it
  (the tokenizing commands call it);
- ``CS336_REQUIRE_NATIVE=1`` turns a missing or unloadable extension into an ImportError
  when the tokenizer package is imported, so a broken build cannot pass CI;
- ``CS336_NO_NATIVE=1`` still forces the fallbacks (for tests and comparisons).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType

EXTENSIONS = {
    "_bpe_count": "BPE training: pre-tokenize and count",
    "_bpe_merge": "BPE training: merges",
    "_encode_native": "encoding",
    "_adamw_native": "AdamW steps on CPU float32 parameters",
    "_cross_entropy_native": "cross-entropy over CPU float32 and bf16 logits",
    "_layers_native": "RMSNorm and the SwiGLU gate over CPU float32 and bf16 activations",
}
TOKENIZER = ("_bpe_count", "_bpe_merge", "_encode_native")
"""The extensions that tokenizing (training a tokenizer, encoding) uses."""
PACKAGES = {"_adamw_native": "cs336_basics.training", "_cross_entropy_native": "cs336_basics.training",
            "_layers_native": "cs336_basics.model"}
"""The package of an extension that does not live in ``cs336_basics.tokenizer``."""
DISABLE_ENV = "CS336_NO_NATIVE"
REQUIRE_ENV = "CS336_REQUIRE_NATIVE"
BUILD_HINT = ("install a C compiler and the Python headers, then reinstall with "
              "'pip install -e . -v' to see the build log")


@dataclass(frozen=True)
class ExtensionStatus:
    name: str
    purpose: str
    loaded: bool
    """The compiled module imported."""
    reason: str
    """Why it did not import ('' when it did)."""
    path: str = ""


_MODULES: dict[str, ModuleType | None] = {}
_REASONS: dict[str, str] = {}


def qualified_name(name: str) -> str:
    """The full module name of extension ``name``."""
    return f"{PACKAGES.get(name, 'cs336_basics.tokenizer')}.{name}"


def loaded(name: str) -> ModuleType | None:
    """The compiled module ``name`` if it imports (whatever ``CS336_NO_NATIVE`` says), else None."""
    if name not in _MODULES:
        qualified = qualified_name(name)
        try:
            module = importlib.import_module(qualified)
            _MODULES[name], _REASONS[name] = module, ""
        except ImportError as exc:
            _MODULES[name] = None
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == qualified
            _REASONS[name] = "not built" if missing else f"cannot be loaded ({exc})"
    return _MODULES[name]


def disabled() -> bool:
    """True when ``CS336_NO_NATIVE`` asks for the Python paths."""
    return bool(os.environ.get(DISABLE_ENV))


def module(name: str) -> ModuleType | None:
    """The compiled module ``name`` when it is built and not disabled, else None (use the fallback)."""
    if name not in EXTENSIONS:
        raise KeyError(f"unknown native extension {name!r}")
    mod = loaded(name)
    return None if disabled() else mod


def status() -> list[ExtensionStatus]:
    """Every extension, whether it imported, and why not."""
    out = []
    for name, purpose in EXTENSIONS.items():
        mod = loaded(name)
        out.append(ExtensionStatus(name, purpose, mod is not None, _REASONS[name], getattr(mod, "__file__", "") or ""))
    return out


def fallback_reason(names: tuple[str, ...] = tuple(EXTENSIONS)) -> str | None:
    """Why any of ``names`` runs in Python right now (None when all run in C).

    Only ``names`` are loaded: loading AdamW's extension imports the training package, and with it torch
    (a second of start-up for a tokenizing command)."""
    if disabled():
        return f"{DISABLE_ENV} is set"
    broken = [name for name in names if loaded(name) is None]
    if not broken:
        return None
    return "; ".join(f"{name} {_REASONS[name]}" for name in broken)


def warn_if_fallback(what: str, names: tuple[str, ...] = tuple(EXTENSIONS)) -> bool:
    """Print one warning line on stderr when ``what`` will run the slow Python path; True if it does."""
    reason = fallback_reason(names)
    if reason is None:
        return False
    fix = f"unset {DISABLE_ENV}" if disabled() else BUILD_HINT
    print(f"warning: {what} runs the pure-Python path, much slower than the C one ({reason}); to fix: {fix} "
          "('cs336 doctor' shows what is built)", file=sys.stderr)
    return True


def require_if_asked(names: tuple[str, ...]) -> None:
    """Raise ImportError naming every missing extension of ``names`` when ``CS336_REQUIRE_NATIVE`` is set.

    Each package asks for its own extensions when it is imported (the tokenizer for its three, the model for
    its layers', the training package for AdamW's and the loss's): loading another package's extension from here
    would import that package, and ``cs336_basics.training`` imports the tokenizer."""
    if not os.environ.get(REQUIRE_ENV):
        return
    broken = [name for name in names if loaded(name) is None]
    if broken:
        detail = "; ".join(f"{name}: {_REASONS[name]}" for name in broken)
        raise ImportError(f"{REQUIRE_ENV} is set but C extensions are unavailable ({detail}); {BUILD_HINT}")
