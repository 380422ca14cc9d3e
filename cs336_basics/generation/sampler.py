"""``Sampler``: a fixed set of prompts and generation options, sampled again and again.

The training loop (samples every eval interval) and the evaluation report both
want "the same prompts, the same options, a given seed, on the model as it is
now". A Sampler holds those choices once; :meth:`Sampler.sample` runs
:func:`~.generate.generate` on the current weights and leaves the model's
train/eval mode as it found it. :func:`results_to_markdown` renders results for
``samples/step_XXXXXXX.md`` files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cs336_basics.generation.generate import GenerationResult, generate
from cs336_basics.generation.sampling import SamplingParams

DEFAULT_PROMPTS = [
    "Once upon a time",
    "One day, a little girl named Lily",
    "The dog and the cat",
    "",
]
"""TinyStories-style openings; the empty prompt starts a story from <|endoftext|>."""

READING_TEMPERATURE = 0.8
READING_TOP_P = 0.95
"""The sampling settings of every sample written for people to read (training samples, ``cs336 eval --samples``,
the quickstart's stories): a little sharper than the model's distribution, so the text shows what it learned."""

_OPTIONS = {"max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop", "use_cache",
            "device", "stop_at_eos"}


class Sampler:
    """Reusable sampling of ``prompts`` from ``model`` with fixed generation options."""

    def __init__(self, model: torch.nn.Module, tokenizer, prompts: str | Sequence[str] | None = None,
                 **options: Any) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(f"Sampler got unknown generation options: {', '.join(sorted(unknown))}")
        # validate the sampling options now, not at the first sample deep inside training
        SamplingParams(temperature=options.get("temperature", 1.0), top_k=options.get("top_k"),
                       top_p=options.get("top_p"), repetition_penalty=options.get("repetition_penalty", 1.0))
        self.model = model
        self.tokenizer = tokenizer
        self.prompts = [prompts] if isinstance(prompts, str) else list(DEFAULT_PROMPTS if prompts is None else prompts)
        self.options = dict(options)

    def sample(self, seed: int | None = 0, **overrides: Any) -> list[GenerationResult]:
        """Generate one continuation per prompt with the stored options (``overrides`` win)."""
        options = {**self.options, **overrides}
        return generate(self.model, self.tokenizer, self.prompts, seed=seed, **options)


def results_to_markdown(results: Sequence[GenerationResult], title: str | None = None) -> str:
    """Samples as Markdown: the prompt in bold, the continuation as text, how it stopped."""
    lines = [f"# {title}", ""] if title else []
    for i, result in enumerate(results, 1):
        prompt = result.prompt if result.prompt else "(empty prompt: start of a document)"
        lines += [f"## Sample {i}", "", f"**Prompt:** {prompt}", "", "```text", result.prompt + result.text, "```", "",
                  f"*{len(result.token_ids)} tokens, stopped by {result.stopped_by}*", ""]
    return "\n".join(lines)
