"""``SamplingParams``: every option of what ``generation.generate`` produces, declared and defaulted once.

One frozen dataclass holds the choices that decide the generated text: how the
next token is picked (temperature, top-k, top-p, repetition penalty; applied by
:mod:`cs336_basics.generation.sampling`) and when a row stops (``max_new_tokens``, stop strings, the
end-of-text id). ``generate`` takes one, ``generation.Sampler`` builds one
from its keyword options (the field names below are the option names), and
``cs336 generate`` builds one from its flags, whose defaults are the defaults
here. How the tokens are computed (KV cache, device, autocast dtype, seed,
streaming callback) stays with ``generate``'s own arguments.

The values are checked when the object is made, so a bad option fails before a
model is loaded or a training run reaches its first sample, and the decode loop
need not re-check. This module imports no torch: the CLI reads the defaults
while it builds its parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from cs336_basics.errors import UserError


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token and when a row stops; validated once so the decode loop need not re-check."""

    temperature: float = 1.0
    """Softmax temperature; 0 is greedy decoding (argmax)."""
    top_k: int | None = None
    """Sample among the k likeliest ids; None keeps all."""
    top_p: float | None = None
    """Nucleus sampling: the smallest set of most likely ids whose probability reaches p; None keeps all."""
    repetition_penalty: float = 1.0
    """CTRL-style penalty for ids already in the row's sequence (prompt included); > 1 discourages repeats, 1 is off."""
    max_new_tokens: int = 256
    """New tokens per prompt at most (a row that reaches it stops with "length")."""
    stop: tuple[str, ...] = ()
    """Strings that end a row when its text contains one; the text is cut before it (any sequence of strings)."""
    stop_at_eos: bool = True
    """End a row at the tokenizer's end-of-text id."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "repetition_penalty", float(self.repetition_penalty))
        object.__setattr__(self, "stop", tuple(self.stop or ()))
        if not (self.temperature >= 0.0) or self.temperature == float("inf"):
            raise UserError(f"temperature must be a finite number >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"top_k must be >= 1 (or omitted to disable it), got {self.top_k}")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise UserError(f"top_p must be in (0, 1] (or omitted to disable it), got {self.top_p}")
        if not (self.repetition_penalty > 0.0) or self.repetition_penalty == float("inf"):
            raise UserError(f"repetition_penalty must be a finite number > 0 (1 disables it), "
                            f"got {self.repetition_penalty}")
        if self.max_new_tokens < 0:
            raise UserError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0
