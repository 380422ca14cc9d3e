"""Evaluation: know whether a run is good while it trains.

- :mod:`.loss`: validation loss / perplexity / bits per byte / top-k accuracy over a whole
  token file, in non-overlapping or sliding windows (:func:`evaluate_loss`).
"""

from cs336_basics.evaluation.loss import (
    EvalResult,
    Window,
    bytes_per_token_from_manifest,
    evaluate_loss,
    evaluation_mode,
    plan_windows,
)

__all__ = [
    "EvalResult",
    "Window",
    "bytes_per_token_from_manifest",
    "evaluate_loss",
    "evaluation_mode",
    "plan_windows",
]
