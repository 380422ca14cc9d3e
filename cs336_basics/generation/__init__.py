"""Text generation from a trained Transformer LM: sampling, KV-cache decoding, streaming, ``Sampler``.

- :func:`generate` (:mod:`.autoregressive`): batched prompts, stop at end-of-text and
  at stop strings, seeds, streaming via ``on_token``.
- :class:`~cs336_basics.config.sampling.SamplingParams`: what to generate
  (temperature / top-k / top-p / repetition penalty, length, stop strings),
  declared and defaulted once in the torch-free config package.
- :mod:`.sampling`: the next-token rules as pure functions on logits.
- :mod:`.decoding`: uncached reference, sliding KV cache (RoPE/NoPE) and
  re-encoding KV cache (learned/sinusoidal positions).
- :mod:`.streaming`: incremental text with stop strings.
- :class:`Sampler` (:mod:`.sampler`): fixed prompts and options, reused by
  training and evaluation to write samples.
"""

from cs336_basics.config.sampling import SamplingParams
from cs336_basics.generation.autoregressive import GenerationResult, generate
from cs336_basics.generation.sampler import (
    DEFAULT_PROMPTS,
    READING_TEMPERATURE,
    READING_TOP_P,
    Sampler,
    results_to_markdown,
)

__all__ = ["generate", "GenerationResult", "Sampler", "SamplingParams", "DEFAULT_PROMPTS", "READING_TEMPERATURE",
           "READING_TOP_P", "results_to_markdown"]
