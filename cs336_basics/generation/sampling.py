"""Next-token selection as pure functions on a batch of logits ``(B, V)``.

Order of operations follows the usual decoding pipeline (Keskar et al. 2019 for
the repetition penalty; Holtzman et al. 2020 for nucleus sampling; Fan et al.
2018 for top-k):

1. only ids of the tokenizer's vocabulary are candidates (``generate`` slices
   the logits to it: a model may be built with a larger ``vocab_size`` than its
   tokenizer has tokens, and rows past the tokenizer's were never trained, so
   they must never be sampled);
2. repetition penalty, as in CTRL / Hugging Face: for every id already present
   in a row's sequence, a positive logit is divided by the penalty and a
   negative one multiplied by it;
3. temperature 0 means greedy (argmax), otherwise logits are divided by it, after
   subtracting each row's maximum in float64: the largest logit becomes 0 and the
   others at most 0, so however small the temperature the quotient never holds
   inf - inf, and a temperature that underflows (``1e-45``) is greedy decoding
   (ties at the maximum share the probability);
4. top-k keeps exactly the k largest logits (ties at the boundary broken by
   ``torch.topk``'s choice, so the support has exactly k ids);
5. top-p keeps the smallest set of most-probable ids whose probability reaches
   p, and renormalises;
6. one draw per row from a ``torch.Generator`` (reproducible for a given seed).

Filtering works by setting removed logits to ``-inf``, so a later softmax
renormalises automatically and removed ids have probability exactly 0.
"""

from __future__ import annotations

import torch

from cs336_basics.config.sampling import SamplingParams


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty: for ids with ``seen`` True, divide positive logits by ``penalty``, multiply negative ones.

    ``logits`` (B, V) float, ``seen`` (B, V) bool. ``penalty`` > 1 discourages repeats.
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep exactly the ``k`` largest logits of each row (others -> -inf)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    _, keep = torch.topk(logits, k, dim=-1)  # (B, k)
    kept = torch.full_like(logits, float("-inf"))
    return kept.scatter(-1, keep, logits.gather(-1, keep))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most-probable ids whose total probability reaches ``p``.

    An id is kept when the probability mass strictly before it (in descending
    order) is still below ``p``; so the most probable id is always kept and the
    last kept id is the one whose inclusion makes the sum reach ``p``.
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (B, V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    keep_sorted = mass_before < p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the logits whose softmax is the sampling distribution."""
    wide = logits.double()
    top = wide.amax(dim=-1, keepdim=True)  # (B, 1)
    logits = ((wide - top) / params.temperature).float()
    logits = top_k_filter(logits, params.top_k)
    return top_p_filter(logits, params.top_p)


def sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The exact distribution :func:`choose_next` draws from, (B, V); useful for tests and analysis."""
    if params.greedy:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    return torch.softmax(filter_logits(logits, params), dim=-1)


def choose_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """One next id per row, (B,) long, from already-masked and penalised logits (B, V)."""
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, params), dim=-1)
    # multinomial never returns an id of probability 0, so filtered ids are impossible.
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator | None:
    """A generator seeded with ``seed`` on ``device``; None (torch's global RNG) when no seed is given."""
    if seed is None:
        return None
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator
