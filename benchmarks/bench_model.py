"""Forward+backward throughput of our TransformerLM vs a standard PyTorch GPT of the same shape.

Contenders, run interleaved in the same process on one fixed batch of real
TinyStories tokens (one repetition: ``--steps`` forward + ``F.cross_entropy`` +
backward + zeroing the gradients; the loss is PyTorch's for every contender):

- ``ours-default``: ``TransformerLM`` built from the default config that ``cs336
  train`` uses (``load_config(None)``; ``model.attention="auto"``, which is
  PyTorch's fused SDPA on CPU and CUDA), with ``--shape`` overrides (recorded);
- ``ours-reference``: the same with ``model.attention=reference``, our
  from-scratch attention kernel (QK^T, mask, softmax with its own backward, V);
- ``standard``: ``StdGPT`` of ``benchmarks/reference_models.py``, the model written the
  usual way with PyTorch's building blocks (``nn.Linear``, ``nn.RMSNorm``,
  ``F.scaled_dot_product_attention``, RoPE as a complex multiply).

``ours-attention=sdpa`` is not a separate contender: on CPU and CUDA it is the
same computation as ours-default. A second group times the attention kernels
alone (our reference kernel vs the SDPA kernel, forward+backward) at the same
(B, H, T, d_head). Wall and process CPU time are both recorded; with one torch
thread (the default here) CPU time is the least disturbed by other jobs.

    python benchmarks/bench_model.py --quick
    python benchmarks/bench_model.py --threads 2
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.corpora import TINYSTORIES_TRAIN, text_prefix, token_array, tokenizer_dir
from benchmarks.harness import Contender, compare, group
from benchmarks.reference_models import StdGPT
from benchmarks.script import script_main

# The package entry points this script uses (one place, so a restructured package is one edit away).
from cs336_basics.config import load_config
from cs336_basics.model import ReferenceAttention, SDPAAttention, TransformerLM

SIZES = {
    "quick": dict(shape="model.d_model=256 model.num_heads=8", batch=4, steps=1, repeats=5, threads=1),
    "full": dict(shape="", batch=8, steps=2, repeats=7, threads=1),
}


def train_steps(model, ids: torch.Tensor, steps: int):
    def run():
        for _ in range(steps):
            logits = model(ids[:, :-1])  # (B, T, V)
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
            for p in model.parameters():
                p.grad = None
    return run


def kernel_group(batch: int, heads: int, context: int, d_head: int, repeats: int) -> dict:
    q, k, v = (torch.randn(batch, heads, context, d_head, requires_grad=True) for _ in range(3))

    def run(kernel):
        def fn():
            kernel(q, k, v, None, True).sum().backward()
        return fn

    results = compare([Contender("reference", run(ReferenceAttention())), Contender("sdpa", run(SDPAAttention()))],
                      repeats=repeats, warmup=1)
    shape = f"({batch}, {heads}, {context}, {d_head})"
    return group("kernels", f"causal attention kernel alone, forward+backward, (B, H, T, d_head) = {shape}", results,
                 size=f"(B, H, T, d_head) {shape}")


def measure(settings: dict, data_dir) -> dict:
    torch.set_num_threads(settings["threads"])
    # what `cs336 train` builds with no --config, on a dataset tokenized with the assignment's 10,000-token vocabulary
    default = load_config(None, ["model.vocab_size=10000", *settings["shape"].split()]).model
    text = text_prefix(TINYSTORIES_TRAIN, None, data_dir)
    tokens = token_array(tokenizer_dir(text, default.vocab_size), text, settings["batch"] * (default.context_length + 1))
    ids = torch.from_numpy(tokens.astype("int64")).view(settings["batch"], default.context_length + 1)
    models = {
        "ours-reference": TransformerLM(dataclasses.replace(default, attention="reference"), seed=0),
        "ours-default": TransformerLM(default, seed=0),
        "standard": StdGPT.like(default),
    }
    work = settings["steps"] * settings["batch"] * default.context_length
    contenders = [Contender(name, train_steps(m, ids, settings["steps"]), work=work, work_unit="tok")
                  for name, m in models.items()]
    results = compare(contenders, repeats=settings["repeats"], warmup=1)
    m = default
    title = (f"forward+backward: d_model {m.d_model}, {m.num_layers} layers, {m.num_heads} heads, context "
             f"{m.context_length}, vocab {m.vocab_size}, batch {settings['batch']}, {settings['steps']} step(s) per "
             f"repetition, {settings['threads']} thread(s)")
    facts = {"parameters": models["ours-default"].num_parameters(),
             "ours-default attention": f"attention={m.attention!r} (PyTorch's fused SDPA on CPU and CUDA)"}
    size = f"d_model {m.d_model}, batch {settings['batch']}, {settings['threads']} thread(s)"
    groups = [group("fwd_bwd", title, results, size=size, facts=facts),
              kernel_group(settings["batch"], m.num_heads, m.context_length, m.d_model // m.num_heads,
                           settings["repeats"])]
    return {"groups": groups, "torch_threads": torch.get_num_threads(),
            "notes": ["ours-attention=sdpa is not run separately: on CPU and CUDA it is the same computation as "
                      "ours-default (`attention=auto`)."]}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
