"""AdamW on the CPU: the per-tensor loop, the multi-tensor path (whole, chunked, compiled), the fused C kernel, and
``torch.optim.AdamW(fused=True)``.

Contenders, run interleaved (one repetition of each per round), all
``optimizer.step()`` of our :class:`~cs336_basics.training.optimizer.AdamW`
over the parameters of the assignment's TinyStories model (vocab 10,000,
context 256, d_model 512, 16 heads, SwiGLU d_ff 1344) with 4 layers and with
48 layers, in the two groups a run uses (decayed matrices; undecayed norms and
embeddings), gradients filled with random values:

- ``per-tensor``: ``foreach=False``, every op of one parameter, then the next;
- ``foreach``: ``foreach=True, chunk_bytes=0``: each ``torch._foreach_*`` op over
  every tensor of a group before the next op;
- ``foreach, chunked``: ``foreach=True`` with the CPU's default chunks
  (``CPU_CHUNK_BYTES`` of parameters): every op over one chunk, then the next chunk;
- ``foreach, compiled``: ``compile=True`` (``optimizer.compile``): the multi-tensor
  update compiled by ``torch.compile`` (Inductor), one pass over memory per tensor.
  Its compilation runs before the timed rounds, from an empty Inductor cache, and is
  reported in the facts;
- ``fused (C)``: ``fused=True``: the C kernel of ``training/fused_adamw.py``, one pass
  over memory per element, every tensor of a group in one call, on the torch threads
  (what ``AdamW()`` runs by default on a CPU where the extension is built);
- ``torch.optim.AdamW(fused=True)``: PyTorch's own fused CPU kernel, the anchor, with
  the same groups and hyperparameters over the same parameters and gradients (its
  own moments).

Ours share one optimizer (its state, parameters and gradients) and switch
its path between repetitions, which the identical state layout of the paths
allows: they do the same work on the same memory, and the machine holds one
copy of the 48-layer state (2.5 GB) instead of five (PyTorch's adds its two moments). A repetition is ``steps``
calls of ``step()``, with the CPU allocator set up as a training run sets it
(``placement.configure_backends``: freed memory is kept for reuse, so the
temporaries of each step do not page-fault in again). The facts say which path
``foreach=None`` takes on a CPU.

    python benchmarks/bench_optimizer.py --quick
    python benchmarks/bench_optimizer.py
"""

from __future__ import annotations

import time

import torch

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.harness import Contender, cold_inductor_cache, compare, group
from benchmarks.script import script_main

from cs336_basics.config import ModelConfig
from cs336_basics.model import TransformerLM
from cs336_basics.training import fused_adamw
from cs336_basics.training import optimizer as adamw
from cs336_basics.training import placement
from cs336_basics.training.optimizer import AdamW, param_groups

SIZES = {
    "quick": dict(layers="4,48", steps=2, repeats=3, threads=2),
    "full": dict(layers="4,48", steps=5, repeats=10, threads=2),
}

PATHS = {"per-tensor": dict(foreach=False, chunk_bytes=None, compile=False, fused=False),
         "foreach": dict(foreach=True, chunk_bytes=0, compile=False, fused=False),
         "foreach, chunked": dict(foreach=True, chunk_bytes=None, compile=False, fused=False),
         "foreach, compiled": dict(foreach=True, chunk_bytes=0, compile=True, fused=False),
         "fused (C)": dict(foreach=None, chunk_bytes=None, compile=False, fused=True)}
"""contender -> the optimizer's (foreach, chunk_bytes, compile, fused) while it runs."""
TORCH_FUSED = "torch.optim.AdamW(fused=True)"


def model_config(layers: int) -> ModelConfig:
    return ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=layers, num_heads=16,
                       d_ff=1344, rope_theta=10_000.0)


def optimizers_for(layers: int) -> tuple[AdamW, torch.optim.AdamW, int, int]:
    """Ours and PyTorch's fused AdamW over the model's parameters (the same two groups, random gradients);
    also (tensors, parameters)."""
    torch.manual_seed(0)
    model = TransformerLM(model_config(layers))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    hyper = dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    opt = AdamW(param_groups(model, 0.1), **hyper)
    anchor = torch.optim.AdamW(param_groups(model, 0.1), **hyper, fused=True)
    return opt, anchor, len(params), sum(p.numel() for p in params)


def fused_isa() -> str:
    """Which build of the C kernel runs here (``avx512``, ``avx2``, ``baseline``), or why none does."""
    kernel = fused_adamw.kernel()
    if kernel is None:
        raise SystemExit("the C extension _adamw_native is not built or disabled: 'fused (C)' would time the "
                         "per-tensor loop; build it (pip install -e .) and unset CS336_NO_NATIVE")
    return kernel.isa()


def measure(settings: dict, data_dir) -> dict:
    with cold_inductor_cache("bench_optimizer"):  # the compile time in the facts is a first run's
        return _measure(settings)


def _measure(settings: dict) -> dict:
    torch.set_num_threads(settings["threads"])
    placement.configure_backends(torch.device("cpu"))
    groups = []
    for layers in (int(x) for x in str(settings["layers"]).split(",")):
        opt, anchor, tensors, count = optimizers_for(layers)

        def steps(path: dict | None, opt=opt, anchor=anchor):
            def run():
                if path is not None:
                    opt.foreach, opt.chunk_bytes, opt.compile = path["foreach"], path["chunk_bytes"], path["compile"]
                    opt.fused = path["fused"]
                for _ in range(settings["steps"]):
                    (opt if path is not None else anchor).step()
            return run

        opt.step()  # allocate the state, so that the compile time below is compilation only
        opt.compile = True
        start = time.perf_counter()
        opt.step()  # the first compiled step compiles the update of each parameter group
        compile_s = time.perf_counter() - start
        contenders = [Contender(name, steps(path), work=settings["steps"], work_unit="step")
                      for name, path in PATHS.items()]
        contenders.append(Contender(TORCH_FUSED, steps(None), work=settings["steps"], work_unit="step"))
        results = compare(contenders, repeats=settings["repeats"], warmup=1)  # the warm-up allocates the state
        groups.append(group(
            f"layers{layers}", f"AdamW `step()` over the assignment model's parameters with {layers} layers: "
            f"{tensors} tensors, {count / 1e6:.1f}M parameters, {settings['steps']} steps per repetition, "
            f"{settings['threads']} thread(s)", results, size=f"{layers} layers, {count / 1e6:.1f}M parameters",
            facts={"tensors": tensors, "parameters": count,
                   "chunk size of `foreach, chunked` (parameter bytes)": adamw.CPU_CHUNK_BYTES,
                   "seconds to compile the update (first step of `foreach, compiled`, empty Inductor cache; "
                   "not in the times)": round(compile_s, 1),
                   "instruction set of `fused (C)`": fused_isa()}))
        del opt, anchor
    groups[-1]["facts"]["AdamW() on a CPU takes"] = (
        "the fused C kernel" if adamw.use_fused(None, None, False, "cpu")
        else "the multi-tensor path (chunked)" if adamw.CPU_FOREACH else "the per-tensor loop")
    return {"groups": groups, "notes": ["Ratios are the anchor's time / the contender's time per interleaved round: "
                                        "above 1, the contender is faster."],
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
