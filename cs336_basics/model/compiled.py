"""Compiling the model: swap in the compile-friendly forms of its modules once, then ``torch.compile``.

``torch.compile`` traces ``forward`` with TorchDynamo into graphs and hands them to
a backend (TorchInductor by default, which fuses elementwise work into generated
kernels). Python code that depends on tensor *data* or on memory layout cannot be
traced: Dynamo then ends the graph, runs that code eagerly and starts a new graph
(a *graph break*), and every break costs fusion opportunities and a round trip
through Python. Three of the model's modules are written for eager speed in a
way a compiler cannot follow, so each has a sibling class that computes the same
values and traces into one graph:

- :class:`~cs336_basics.model.positions.RotaryEmbedding` rotates pairs as one complex
  multiply, after asking whether the complex view of ``x`` is legal (strides and
  storage offset: a break), and Inductor generates no code for complex operators;
  :class:`~cs336_basics.model.positions.PairRotaryEmbedding` does the same
  products in real arithmetic;
- :class:`~cs336_basics.model.attention.ReferenceAttention` overwrites the score
  matrix with the probabilities (``ctx.mark_dirty``), and AOTAutograd, which
  records the backward of a compiled graph, cannot replay that, so that node always
  runs eagerly (a break); :class:`~cs336_basics.model.attention.CopyingReferenceAttention`
  works on a copy;
- :class:`~cs336_basics.model.ffn.MoEFFN` gathers the tokens routed to each expert
  (``nonzero``: a shape that depends on the data) and skips empty experts (a branch
  on data); :class:`~cs336_basics.model.ffn.DenseMoEFFN` runs every expert on every
  token with a zero gate where it was not routed.

The choice is made here, once, not by a flag inside ``forward``. The twins are
subclasses that add no state, so :func:`prepare_for_compile` re-classes the modules
in place: parameters, buffers, the rotary module shared by all layers and the
state-dict keys stay exactly as they were, and checkpoints load into either form.
The ``auto`` attention kernel needs nothing here: it is resolved to a concrete
kernel when the model is built.

To see what breaks a graph: ``torch._dynamo.explain(fn)(*args).break_reasons``, or
run with ``TORCH_LOGS=graph_breaks``; ``tests/model/test_model_compile.py`` asserts that
every model variant traces its training step and a KV-cache decoding step into
single graphs. Reference: the PyTorch ``torch.compile`` programming model
(https://pytorch.org/docs/stable/torch.compiler.html).
"""

from __future__ import annotations

import torch
from torch import nn

from cs336_basics.model.attention import CopyingReferenceAttention, ReferenceAttention
from cs336_basics.model.ffn import DenseMoEFFN, MoEFFN
from cs336_basics.model.positions import PairRotaryEmbedding, RotaryEmbedding

COMPILE_TWINS: dict[type[nn.Module], type[nn.Module]] = {
    RotaryEmbedding: PairRotaryEmbedding,
    MoEFFN: DenseMoEFFN,
    ReferenceAttention: CopyingReferenceAttention,
}
"""Eager class -> its compile-friendly sibling (a subclass computing the same values, with no state of its own)."""


def prepare_for_compile(model: nn.Module) -> nn.Module:
    """Turn every module of ``model`` that has a compile twin into that twin, in place; return ``model``.

    Matches exact classes only, so a module that is already a twin (or a user's own
    subclass) is left alone and preparing twice changes nothing.
    """
    for module in model.modules():
        twin = COMPILE_TWINS.get(type(module))
        if twin is not None:
            module.__class__ = twin  # same object: its parameters, buffers and sharing are kept
    return model


def compile_model(model: nn.Module, **compile_kwargs) -> nn.Module:
    """``torch.compile(prepare_for_compile(model), **compile_kwargs)``: what ``train.compile=true`` runs."""
    return torch.compile(prepare_for_compile(model), **compile_kwargs)
