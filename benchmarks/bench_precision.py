"""Autocast precision on this CPU: `cs336 train` in float32 vs bf16 autocast, and what `train.dtype=auto` chose.

Contenders, run interleaved (one repetition of each per round), at two shapes:

- ``float32``: ``cs336 train``'s default config with ``train.dtype=float32``;
- ``bfloat16``: the same with ``train.dtype=bfloat16`` (CPU autocast: parameters,
  optimizer state and the loss stay float32).

Shapes: the assignment's TinyStories model (d_model 512, 4 layers, 16 heads,
context 256, SwiGLU 1344, vocab 10,000, batch 16) and the quickstart's
(``configs/quickstart.toml``: d_model 128, 4 layers, context 128, vocab 2,048,
batch 16). Each repetition is one ``train()`` call; its time is the sum of the
per-step wall times after the warm-up steps, read from ``metrics.jsonl`` as in
``bench_train.py``. A third group times a square matmul in both dtypes (the
hardware's best case), and the facts say what ``train.dtype=auto`` chooses
here and why (CPU flags, and on a CPU with native bf16 the timed decision).

    python benchmarks/bench_precision.py --quick
    python benchmarks/bench_precision.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.bench_train import timed_train
from benchmarks.corpora import TINYSTORIES_TRAIN, TINYSTORIES_VALID, text_prefix, token_array, tokenizer_dir
from benchmarks.harness import Contender, Result, compare, group
from benchmarks.script import script_main

from cs336_basics.config import load_config
from cs336_basics.runtime.devices import cpu_info
from cs336_basics.runtime.precision import MIN_SPEEDUP
from cs336_basics.training.distributed import DistInfo
from cs336_basics.training.step import choose_training_dtype

SHAPES = {
    "assignment": (None, 10_000, 16),
    "quickstart": ("quickstart", 2_048, 16),
}
"""shape name -> (preset, vocabulary, batch)."""

SIZES = {
    "quick": dict(shapes="quickstart", steps=2, warmup=1, repeats=3, threads=2, matmul=1024),
    "full": dict(shapes="assignment,quickstart", steps=3, warmup=1, repeats=3, threads=2, matmul=1024),
}
"""Where bf16 is emulated (CPUs without AVX512-BF16/AMX) it runs about 25x slower than float32, and one bf16 step of
the assignment shape takes about two minutes on 2 cores: there :data:`EMULATED` replaces the steps and repeats."""

EMULATED = dict(steps=1, repeats=2)
"""Steps and repeats of any size on a CPU without native bf16 (recorded in the settings and the group titles)."""


def _config(preset, vocab: int, batch: int, data_dir: Path, runs: Path, name: str, settings: dict, *extra: str):
    total = settings["warmup"] + settings["steps"]
    return load_config(preset, [
        f"model.vocab_size={vocab}", f"data.dataset_dir={data_dir}", f"train.runs_dir={runs}", f"train.run_name={name}",
        "train.overwrite=true", f"train.batch_size={batch}", f"train.total_steps={total}", "train.max_minutes=none",
        f"train.eval_interval={total}", f"train.checkpoint_interval={total}", "train.samples=false",
        "train.final_eval=false", "train.device=cpu", "logging.quiet=true", "logging.log_interval=1", *extra])


def _matmul_group(size: int, repeats: int) -> dict:
    a, b = torch.randn(size, size), torch.randn(size, size)
    pairs = {"float32": (a, b), "bfloat16": (a.bfloat16(), b.bfloat16())}
    results = [Result(name, work=2 * size**3 / 1e9, work_unit="GFLOP") for name in pairs]
    for x, y in pairs.values():
        x @ y  # warm-up
    for _ in range(repeats):
        for result, (x, y) in zip(results, pairs.values()):
            start = time.perf_counter()
            x @ y
            result.wall.append(time.perf_counter() - start)
    return group("matmul", f"one {size}x{size} matmul", results, size=f"{size}x{size}")


def measure(settings: dict, data_dir) -> dict:
    if not cpu_info().native_bf16:
        settings.update(EMULATED)
    torch.set_num_threads(settings["threads"])
    tmp = Path(tempfile.mkdtemp(prefix="bench_precision."))
    text = text_prefix(TINYSTORIES_TRAIN, None, data_dir)
    valid_text = text_prefix(TINYSTORIES_VALID, None, data_dir)
    groups, facts = [], {}
    for shape in settings["shapes"].split(","):
        preset, vocab, batch = SHAPES[shape]
        dataset = tmp / f"data-{vocab}"
        if not dataset.exists():
            dataset.mkdir()
            tok = tokenizer_dir(text, vocab)
            np.save(dataset / "train.npy", token_array(tok, text))
            np.save(dataset / "valid.npy", token_array(tok, valid_text, 4 * 256))
        runs = tmp / "runs"
        contenders = []
        for dtype in ("float32", "bfloat16"):
            cfg = _config(preset, vocab, batch, dataset, runs, f"{shape}-{dtype}", settings, f"train.dtype={dtype}")
            tokens = settings["steps"] * batch * cfg.model.context_length
            contenders.append(Contender(dtype, timed_train(cfg, settings["warmup"]), work=tokens, work_unit="tok"))
        results = compare(contenders, repeats=settings["repeats"])
        m = cfg.model
        auto_cfg = _config(preset, vocab, batch, dataset, runs, f"{shape}-auto", settings, "train.dtype=auto")
        choice = choose_training_dtype(auto_cfg, np.load(dataset / "train.npy", mmap_mode="r"), torch.device("cpu"),
                                       DistInfo())
        groups.append(group(
            shape, f"`cs336 train` steps at the {shape} shape: d_model {m.d_model}, {m.num_layers} layers, "
            f"{m.num_heads} heads, context {m.context_length}, vocab {m.vocab_size}, batch {batch}, "
            f"{settings['steps']} steps per repetition, {settings['threads']} thread(s)", results,
            size=f"d_model {m.d_model}, batch {batch}",
            facts={"train.dtype=auto chose": choice.describe()}))
    groups.append(_matmul_group(settings["matmul"], settings["repeats"]))
    cpu = cpu_info()
    facts["CPU bf16 features"] = ", ".join(sorted(f for f in cpu.flags if "bf16" in f or f.startswith("amx"))) \
        or "none (bf16 is emulated)"
    facts["bf16 must be at least this much faster for auto to choose it"] = MIN_SPEEDUP
    groups[-1]["facts"] = facts
    shutil.rmtree(tmp, ignore_errors=True)
    return {"groups": groups, "notes": ["Ratios are float32 time / bf16 time per interleaved round: above 1, bf16 "
                                        "autocast is faster on this machine."],
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
