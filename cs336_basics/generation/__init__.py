"""Text generation from a trained Transformer LM: sampling, KV-cache decoding, streaming, ``Sampler``.

- :func:`generate` (:mod:`.loop`): batched prompts, stop at end-of-text and
  at stop strings, seeds, streaming via ``on_token``.
- :class:`SamplingParams` (:mod:`.sampling_params`): what to generate
  (temperature / top-k / top-p / repetition penalty, length, stop strings),
  declared and defaulted once.
- :mod:`.sampling`: the next-token rules as pure functions on logits.
- :mod:`.decoding`: uncached reference, sliding KV cache (RoPE/NoPE) and
  re-encoding KV cache (learned/sinusoidal positions).
- :mod:`.streaming`: incremental text with stop strings.
- :class:`Sampler` (:mod:`.sampler`): fixed prompts and options, reused by
  training and evaluation to write samples.

Public names are imported on first use (:mod:`cs336_basics.lazy`), so the CLI
can read :class:`SamplingParams`' defaults without importing torch.
"""

from __future__ import annotations

from cs336_basics.lazy import lazy_exports

_EXPORTS = {
    "GenerationResult": "loop",
    "generate": "loop",
    "DEFAULT_PROMPTS": "sampler",
    "READING_TEMPERATURE": "sampler",
    "READING_TOP_P": "sampler",
    "Sampler": "sampler",
    "results_to_markdown": "sampler",
    "SamplingParams": "sampling_params",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
