"""Evaluation: know whether a run is good while it trains.

- :mod:`.loss`: validation loss / perplexity / bits per byte / top-k accuracy over a whole
  token file, in non-overlapping or sliding windows (:func:`evaluate_loss`).
- :mod:`.text_metrics`: quality metrics of generated text (:func:`generation_metrics`).
- :mod:`.samples`: samples from fixed prompts during training (:func:`write_training_samples`).
- :mod:`.convergence`: power-law fit of the validation curve and a plateau verdict.
- :mod:`.report`: the ``cs336 report`` page for one run.

docs/evaluation.md explains the choices and answers the questions that motivated them.
"""

from cs336_basics.evaluation.convergence import (
    PlateauVerdict,
    PowerLawFit,
    convergence_report,
    fit_power_law,
    plateau_verdict,
    plot_convergence,
)
from cs336_basics.evaluation.loss import (
    EvalResult,
    Window,
    bytes_per_token_from_manifest,
    evaluate_loss,
    evaluation_mode,
    plan_windows,
)
from cs336_basics.evaluation.samples import read_samples, training_vocabulary, write_training_samples
from cs336_basics.evaluation.text_metrics import (
    distinct_n,
    generation_metrics,
    in_vocab_rate,
    reference_perplexity,
    repetition_rate,
    word_vocabulary,
)

__all__ = [
    "EvalResult",
    "PlateauVerdict",
    "PowerLawFit",
    "Window",
    "bytes_per_token_from_manifest",
    "convergence_report",
    "distinct_n",
    "evaluate_loss",
    "evaluation_mode",
    "fit_power_law",
    "generation_metrics",
    "in_vocab_rate",
    "plan_windows",
    "plateau_verdict",
    "plot_convergence",
    "read_samples",
    "reference_perplexity",
    "repetition_rate",
    "training_vocabulary",
    "word_vocabulary",
    "write_training_samples",
]
