"""Compiled training step: `cs336 train`'s step with `train.compile=true` (TorchInductor) vs eager, on the CPU.

Contenders, run interleaved (one repetition of each per round):

- ``eager``: the step ``cs336 train`` runs by default (:class:`TrainStep`: forward,
  our cross-entropy, backward, gradient clipping and the AdamW update);
- ``compiled``: the same step with ``train.compile=true``, i.e. the model passed
  through :func:`cs336_basics.model.compiled.compile_model` (the compile-friendly
  RoPE swapped in, then ``torch.compile`` with Inductor). Only the model is
  compiled, as in a run; the loss, clipping and optimizer run eagerly in both.

Both are built by :func:`build_training_parts` from the same config and seed, in
float32 (no autocast), so they start from the same weights. Shapes: the
assignment's TinyStories model (the default config: d_model 512, 4 layers, 16
heads, context 256, SwiGLU 1344, vocab 10,000) and the quickstart's
(``configs/quickstart.toml``). Token ids are uniform random: a dense step's
cost does not depend on them, and no tokenizer has to be trained first.

Compilation is excluded from the timed repetitions: each contender first runs
``warmup`` untimed steps (the compiled one compiles during its first), and the
wall time of those warm-up steps is reported as a fact. Inductor keeps compiled
graphs in an on-disk cache, which would make a second benchmark run's compile
look nearly free; the benchmark gives it an empty cache directory, so the figure
is what a first run pays. A repetition is
``steps`` steps; the ratio eager time / compiled time is computed per
interleaved round (above 1: compiling pays off once compiled).

    python benchmarks/bench_compile.py --quick
    python benchmarks/bench_compile.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.harness import Contender, cold_inductor_cache, compare, group
from benchmarks.script import script_main

from cs336_basics.config import load_config
from cs336_basics.training.distributed import DistInfo
from cs336_basics.training.step import TrainStep, build_training_parts

SHAPES = {
    "assignment": (None, 10_000),
    "quickstart": ("quickstart", 2_048),
}
"""shape name -> (config preset, vocabulary)."""

SIZES = {
    "quick": dict(shapes="quickstart", batch=16, steps=3, warmup=2, repeats=3, threads=2),
    "full": dict(shapes="assignment,quickstart", batch=16, steps=3, warmup=2, repeats=5, threads=2),
}


def _config(preset, vocab: int, settings: dict):
    return load_config(preset, [f"model.vocab_size={vocab}", f"train.batch_size={settings['batch']}",
                                "train.grad_accum_steps=1", "train.dtype=float32", "train.device=cpu"])


def _contender(name: str, cfg, tokens: np.ndarray, compiled: bool, settings: dict,
               warmup_s: dict[str, float]) -> Contender:
    """A contender running ``steps`` training steps per repetition, after ``warmup`` untimed ones."""
    device = torch.device("cpu")
    total = settings["warmup"] + settings["steps"] * settings["repeats"]
    parts = build_training_parts(cfg, tokens, device, total_steps=total)
    parts.wrap(compiled, DistInfo(), device)
    step = TrainStep(parts, device, cfg.train.grad_accum_steps, cfg.optimizer.grad_clip)
    counter = iter(range(total))
    start = time.perf_counter()
    for _ in range(settings["warmup"]):
        step(next(counter))
    warmup_s[name] = round(time.perf_counter() - start, 2)

    def run() -> None:
        for _ in range(settings["steps"]):
            step(next(counter))

    tokens_per_rep = settings["steps"] * cfg.train.batch_size * cfg.model.context_length
    return Contender(name, run, work=tokens_per_rep, work_unit="tok")


def measure(settings: dict, data_dir) -> dict:
    with cold_inductor_cache("bench_compile"):
        return _measure(settings)


def _measure(settings: dict) -> dict:
    torch.set_num_threads(settings["threads"])
    groups = []
    for shape in settings["shapes"].split(","):
        preset, vocab = SHAPES[shape]
        cfg = _config(preset, vocab, settings)
        tokens = np.random.default_rng(0).integers(0, vocab, size=1_000_000, dtype=np.uint16)
        warmup_s: dict[str, float] = {}
        contenders = [_contender(name, cfg, tokens, compiled, settings, warmup_s)
                      for name, compiled in (("eager", False), ("compiled", True))]
        results = compare(contenders, repeats=settings["repeats"])
        m = cfg.model
        groups.append(group(
            shape, f"training steps at the {shape} shape: d_model {m.d_model}, {m.num_layers} layers, "
            f"{m.num_heads} heads, d_ff {m.resolved_d_ff}, context {m.context_length}, vocab {m.vocab_size}, "
            f"batch {cfg.train.batch_size}, float32, {settings['steps']} steps per repetition, "
            f"{settings['threads']} thread(s)", results,
            size=f"d_model {m.d_model}, batch {cfg.train.batch_size}, {settings['threads']} thread(s)",
            facts={f"seconds of the {settings['warmup']} warm-up steps (compiled: compilation from an empty "
                   "Inductor cache included)": warmup_s}))
        torch._dynamo.reset()
    notes = ["Ratios are eager time / compiled time per interleaved round: above 1, the compiled step is faster; "
             "compilation itself is not in them (see the warm-up seconds)."]
    return {"groups": groups, "notes": notes, "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
