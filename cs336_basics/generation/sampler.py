"""``Sampler``: a fixed set of prompts and generation options, sampled again and again.

The training loop (samples every eval interval) and the evaluation report both
want "the same prompts, the same options, a given seed, on the model as it is
now". A Sampler holds those choices once; :meth:`Sampler.sample` runs
:func:`~.autoregressive.generate` on the current weights and leaves the model's
train/eval mode as it found it. :func:`results_to_markdown` renders results for
``samples/step_XXXXXXX.md`` files.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from cs336_basics.generation.autoregressive import GenerationResult, generate
from cs336_basics.config.sampling import SamplingParams

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

SAMPLING_OPTIONS = frozenset(field.name for field in dataclasses.fields(SamplingParams))
"""Options that are fields of :class:`SamplingParams`; the others go to :func:`generate` as they are."""
GENERATE_OPTIONS = frozenset(name for name, parameter in inspect.signature(generate).parameters.items()
                             if parameter.kind is parameter.KEYWORD_ONLY and name != "seed")
""":func:`generate`'s own keyword options (the seed is :meth:`Sampler.sample`'s argument)."""


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SamplingParams fields, generate() keywords) of ``options``; TypeError naming any that is neither."""
    unknown = set(options) - SAMPLING_OPTIONS - GENERATE_OPTIONS
    if unknown:
        raise TypeError(f"Sampler got unknown generation options: {', '.join(sorted(unknown))}")
    sampling = {key: value for key, value in options.items() if key in SAMPLING_OPTIONS}
    return sampling, {key: value for key, value in options.items() if key not in SAMPLING_OPTIONS}


class Sampler:
    """Reusable sampling of ``prompts`` from ``model`` with fixed generation options.

    ``options`` are fields of :class:`SamplingParams` (they replace those of ``sampling``) and
    :func:`generate`'s keyword options (``use_cache``, ``device``, ``dtype``, ...).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, prompts: str | Sequence[str] | None = None,
                 sampling: SamplingParams | None = None, **options: Any) -> None:
        changes, self.options = _split_options(options)
        # validated now, not at the first sample deep inside training
        self.sampling = dataclasses.replace(sampling or SamplingParams(), **changes)
        self.model = model
        self.tokenizer = tokenizer
        self.prompts = [prompts] if isinstance(prompts, str) else list(DEFAULT_PROMPTS if prompts is None else prompts)

    def sample(self, seed: int | None = 0, **overrides: Any) -> list[GenerationResult]:
        """Generate one continuation per prompt with the stored options (``overrides`` win)."""
        changes, options = _split_options(overrides)
        return generate(self.model, self.tokenizer, self.prompts, dataclasses.replace(self.sampling, **changes),
                        seed=seed, **{**self.options, **options})


def results_to_markdown(results: Sequence[GenerationResult], title: str | None = None) -> str:
    """Samples as Markdown: the prompt in bold, the continuation as text, how it stopped."""
    lines = [f"# {title}", ""] if title else []
    for i, result in enumerate(results, 1):
        prompt = result.prompt if result.prompt else "(empty prompt: start of a document)"
        lines += [f"## Sample {i}", "", f"**Prompt:** {prompt}", "", "```text", result.prompt + result.text, "```", "",
                  f"*{len(result.token_ids)} tokens, stopped by {result.stopped_by}*", ""]
    return "\n".join(lines)
