"""Evaluation: know whether a run is good while it trains.

- :mod:`.token_file_loss`: validation loss / perplexity / bits per byte / top-k accuracy over a whole
  token file, in non-overlapping or sliding windows (:func:`evaluate_loss`).
- :mod:`.text_metrics`: quality metrics of generated text (:func:`generation_metrics`).
- :mod:`.samples`: samples from fixed prompts during training (:func:`write_training_samples`).
- :mod:`.baseline`: the unigram baseline a trained model is compared with.

Reports and plots that read finished runs live in :mod:`cs336_basics.reporting`.

docs/evaluation.md explains the choices and answers the questions that motivated them.
"""

from cs336_basics.evaluation.samples import read_samples, training_vocabulary, write_training_samples
from cs336_basics.evaluation.text_metrics import (
    distinct_n,
    generation_metrics,
    in_vocab_rate,
    reference_perplexity,
    repetition_rate,
    word_vocabulary,
)
from cs336_basics.evaluation.token_file_loss import (
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
    "distinct_n",
    "evaluate_loss",
    "evaluation_mode",
    "generation_metrics",
    "in_vocab_rate",
    "plan_windows",
    "read_samples",
    "reference_perplexity",
    "repetition_rate",
    "training_vocabulary",
    "word_vocabulary",
    "write_training_samples",
]
