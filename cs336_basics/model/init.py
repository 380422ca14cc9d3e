"""Weight initialisation, as in the CS336 spring-2025 handout, reproducible from a seed.

- Linear weights: truncated normal, mean 0, ``sigma^2 = 2 / (d_in + d_out)``,
  cut at +-3 sigma (a Xavier-style variance that keeps activations O(1)).
- Embeddings: truncated normal, mean 0, ``sigma = 1`` cut at +-3. When the
  embedding is tied to the LM head the model asks for ``sigma = c / d_model``
  instead (:func:`tied_embedding_std`): the same matrix then turns the final
  normalised features ``h`` (RMS 1, norm ``sqrt(d_model)``) into logits
  ``h . e_j``. Wherever ``h`` still points along the input token's own embedding
  (a block that starts as the identity, a post-norm stack), that token's logit is
  ``|e| sqrt(d_model) = sigma d_model``; with ``sigma = d_model^-1/2`` it was
  ``sqrt(d_model)`` (the first loss grew from 8 nats at width 64 to 22 at 512 with
  a 512-token vocabulary, where the uniform loss is 6.2). With ``sigma = c / d_model``
  that logit is ``c`` at every width and the others have standard deviation
  ``c / sqrt(d_model)``. ``c = min(4, ln(vocab_size))``: the input token starts at
  most as likely as all the others together (the first loss stays within
  ``ln 2`` of ``ln(vocab_size)``, about 0.2 nats for a vocabulary of 257 or more),
  and the embedding is not needlessly small (on the quickstart recipe with a
  byte vocabulary, two seeds of 300 steps: validation loss 0.04 nats above the
  old ``sigma = d_model^-1/2`` with ``c = 1``, 0.010 and 0.019 above it with ``c = 4``).
- Normalisation gains: ones (biases of LayerNorm: zeros).

Schemes (``ModelConfig.init``, the map in :mod:`cs336_basics.model.variant_classes`)
run once the layers have drawn their weights, so every scheme consumes the
same random numbers and two models built from one seed differ only where a
scheme changes them:

- :class:`HandoutInit`: nothing more to do;
- :class:`ZeroOutInit`: zero the matrices that write into the residual stream
  (attention output projection, FFN down-projection, of every block). Each
  block then starts as the identity and the logits depend only on the
  embeddings, as in the modded-nanoGPT speed runs; gradients still reach
  those matrices (their inputs are not zero) and, through them, the rest of
  the block from the second step on (cf. Fixup, Zhang et al. 2019; ReZero,
  Bachlechner et al. 2020, which zero a residual gain instead).

Every function takes an optional ``torch.Generator``; the model builds one from
its ``seed`` so the same seed gives the same weights regardless of the global
RNG state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def trunc_normal_(tensor: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place from N(0, std^2) truncated to [-3 std, 3 std]."""
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-3.0 * std, b=3.0 * std, generator=generator)


def linear_std(d_in: int, d_out: int) -> float:
    return math.sqrt(2.0 / (d_in + d_out))


def init_linear_(weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Handout init of a ``(d_out, d_in)`` weight."""
    d_out, d_in = weight.shape[-2], weight.shape[-1]
    return trunc_normal_(weight, linear_std(d_in, d_out), generator)


def tied_embedding_std(d_model: int, vocab_size: int) -> float:
    """The standard deviation of an embedding shared with the LM head: initial logits whose scale does not grow
    with the width (the input token's own logit starts at ``min(4, ln(vocab_size))``)."""
    return min(4.0, math.log(vocab_size)) / d_model


def init_embedding_(weight: Tensor, std: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    return trunc_normal_(weight, std, generator)


def make_generator(seed: int | None, device=None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (None: use the global RNG)."""
    if seed is None:
        return None
    gen = torch.Generator(device="cpu" if device is None else torch.device(device))
    gen.manual_seed(seed)
    return gen


class HandoutInit:
    """The handout's initialisation, which the layers already drew."""

    @staticmethod
    def apply(model: nn.Module) -> None:
        return None


class ZeroOutInit:
    """Zero every ``output_projections()`` layer of the model's attention and FFN modules."""

    @staticmethod
    def apply(model: nn.Module) -> None:
        with torch.no_grad():
            for module in model.modules():
                for layer in getattr(module, "output_projections", lambda: [])():
                    layer.weight.zero_()
