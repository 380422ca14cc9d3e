"""One command that checks and measures the toolkit on a GPU: ``python benchmarks/gpu_check.py``.

What it runs, in order, each through the project's own code (the parts a real
run uses, not re-implementations):

1. **compiled training**: the assignment's TinyStories model (vocab 10,000,
   context 256, d_model 512, 4 layers, 16 heads, SwiGLU d_ff 1344) for a few
   hundred steps of :class:`~cs336_basics.training.step.TrainStep` built by
   :func:`~cs336_basics.training.step.build_training_parts`, bf16 autocast
   (``train.dtype=auto`` on CUDA) and ``torch.compile`` (``train.compile``):
   tokens/s after the warm-up steps (which pay the compilation), MFU against
   the bf16 peak of :func:`~cs336_basics.training.placement.peak_flops`, peak
   memory, and the loss, which must fall (the script fails otherwise);
2. **eager training**: the same without ``torch.compile``;
3. **attention kernels**: eager training steps with the from-scratch kernel
   (``model.attention=reference``) and with PyTorch's SDPA;
4. **generation**: :func:`~cs336_basics.generation.generate` tokens/s with and
   without the KV cache (greedy, batch 1);
5. **evaluation**: :func:`~cs336_basics.evaluation.evaluate_loss` over a whole
   validation file;
6. **DDP**: :func:`~cs336_basics.training.distributed.init_distributed` at
   world size 1 (NCCL on CUDA, gloo elsewhere), one all-reduce and one
   DistributedDataParallel forward/backward;

then it extrapolates the assignment's full run (327,680,000 tokens) from the
measured compiled rate: the steps alone, without compilation, evaluation or
checkpoints.

Data: synthetic token files written to a temporary directory (offline, no
download): a first-order Markov chain in which every id has four possible
successors, so a model can learn it (the loss falls from about ln(vocab)
towards ln 4) and speed is that of real ids. The tokenizer for generation is a
synthetic byte-level vocabulary of the same size. None of the losses mean
anything about language.

It prints one line per section and writes everything to JSON (``--out``,
default ``gpu_check-<device name>.json`` in the cache directory, ``~/.cache/cs336_basics``,
outside the source tree; the path is printed). ``--device cpu
--tiny`` runs a tiny model for a few steps in seconds (no ``torch.compile`` on
CPU unless ``--compile on``): the test suite runs it that way so the script
cannot rot between GPU sessions.

    python benchmarks/gpu_check.py                       # on a CUDA machine (sized for < 8 minutes; never run yet)
    python benchmarks/gpu_check.py --device cpu --tiny   # the smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401

from cs336_basics.config import load_config
from cs336_basics.config.accounting import flops_per_token
from cs336_basics.evaluation import evaluate_loss
from cs336_basics.generation import SamplingParams, generate
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.runtime.precision import cache_path, choose_dtype
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.training import placement
from cs336_basics.training.data import open_tokens
from cs336_basics.training.distributed import DistInfo, init_distributed, process_group_backend, shutdown_distributed
from cs336_basics.training.step import TrainStep, build_training_parts

ASSIGNMENT_TOKENS = 327_680_000
"""The assignment's TinyStories run: 40,000 steps of 32 x 256 tokens (or 10,000 of 128 x 256)."""

SUCCESSORS = 4
"""Possible next ids per id in the synthetic data: the lowest loss a model can reach is ln 4."""

FULL = dict(model=dict(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344,
                       rope_theta=10_000.0),
            batch=128, compiled_steps=300, compiled_warmup=5, eager_steps=40, attention_steps=20, eager_warmup=3,
            train_tokens=4_000_000, valid_tokens=1_000_000, eval_batch=64, prompt=16, new_tokens=256,
            min_loss_drop=1.0)
"""The assignment's model at the GPU batch of configs/experiments/base_gpu.toml."""

TINY = dict(model=dict(vocab_size=512, context_length=32, d_model=32, num_layers=2, num_heads=2, d_ff=64,
                       rope_theta=10_000.0),
            batch=8, compiled_steps=40, compiled_warmup=2, eager_steps=6, attention_steps=3, eager_warmup=1,
            train_tokens=50_000, valid_tokens=4_000, eval_batch=8, prompt=4, new_tokens=16,
            min_loss_drop=0.2)
"""A model that trains in seconds on a CPU: the smoke test of every section."""


# ----------------------------------------------------------------------------- data and tokenizer


def markov_tokens(n: int, vocab: int, seed: int) -> np.ndarray:
    """``n`` ids of a first-order Markov chain: each id is followed by one of its :data:`SUCCESSORS` ids, uniformly."""
    rng = np.random.default_rng(seed)
    successors = np.random.default_rng(0).integers(0, vocab, size=(vocab, SUCCESSORS))  # the same chain for both files
    picks = rng.integers(0, SUCCESSORS, size=n)
    out = np.empty(n, dtype=np.uint16 if vocab <= 2**16 else np.int32)
    current = int(rng.integers(0, vocab))
    table = successors.tolist()
    for i, pick in enumerate(picks.tolist()):
        out[i] = current
        current = table[current][pick]
    return out


def write_token_file(path: Path, tokens: np.ndarray, vocab: int) -> np.ndarray:
    """Save ``tokens`` as ``.npy`` and open it the way training does (memory-mapped, ids checked against ``vocab``)."""
    np.save(path, tokens)
    return open_tokens(path, vocab_size=vocab)


def synthetic_tokenizer(vocab: int) -> Tokenizer:
    """A byte-level vocabulary of ``vocab`` ids (the 256 bytes, placeholder tokens, ``<|endoftext|>`` last)."""
    table = {i: bytes([i]) for i in range(256)}
    table.update({i: f"<{i}>".encode() for i in range(256, vocab - 1)})
    return Tokenizer(table, [], ["<|endoftext|>"])


# ----------------------------------------------------------------------------- measurements


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory since the last reset: CUDA's allocator on a GPU, else the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (whole script)"


def run_config(settings: dict, *, dtype: str, compile_model: bool, attention: str = "auto", steps: int):
    """The run's config: the model, the optimizer's schedule over ``steps``, the batch, dtype and compile."""
    model = settings["model"]
    overrides = [f"model.{k}={v}" for k, v in model.items()] + [
        f"model.attention={attention}", "model.ffn=swiglu", f"train.batch_size={settings['batch']}",
        f"train.total_steps={steps}", f"train.dtype={dtype}", f"train.compile={str(compile_model).lower()}",
        "optimizer.lr_max=3e-3", "optimizer.lr_min=3e-4", f"optimizer.warmup_iters={max(1, steps // 20)}"]
    return load_config(None, overrides)


def train_section(settings: dict, tokens: np.ndarray, device: torch.device, *, dtype: str, compile_model: bool,
                  steps: int, warmup: int, attention: str = "auto") -> dict:
    """``warmup + steps`` optimizer steps of the real training step; rates over the ``steps`` after the warm-up."""
    cfg = run_config(settings, dtype=dtype, compile_model=compile_model, attention=attention, steps=warmup + steps)
    reset_peak_memory(device)
    parts = build_training_parts(cfg, tokens, device, total_steps=warmup + steps)
    parts.wrap(cfg.train.compile, DistInfo(), device)
    step = TrainStep(parts, device, cfg.train.grad_accum_steps, cfg.optimizer.grad_clip)
    losses, times = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        result = step(i)  # ends with a device-to-host copy of the loss: the step has finished on the device
        sync(device)
        times.append(time.perf_counter() - start)
        losses.append(result.loss)
    measured = times[warmup:]
    tokens_per_step = cfg.train.batch_size * cfg.model.context_length
    tokens_per_s = tokens_per_step * len(measured) / sum(measured)
    peak = placement.peak_flops(device, parts.dtype, None)
    memory, memory_kind = peak_memory_mb(device)
    del parts, step
    return {"compiled": compile_model, "attention": attention, "dtype": dtype, "steps": len(measured),
            "warmup_steps": warmup, "warmup_s": round(sum(times[:warmup]), 3),
            "step_s_median": round(statistics.median(measured), 5), "tokens_per_s": round(tokens_per_s, 1),
            "mfu": round(flops_per_token(cfg.model)["train"] * tokens_per_s / peak, 4) if peak else None,
            "peak_flops": peak, "peak_memory_mb": round(memory, 1), "peak_memory_kind": memory_kind,
            "losses": [round(x, 4) for x in losses]}


def loss_fell(losses: list[float], min_drop: float) -> tuple[bool, float, float]:
    """(fell, first, last): the mean of the first 3 losses against the mean of the last tenth (at least 3)."""
    first = statistics.fmean(losses[:3])
    last = statistics.fmean(losses[-max(3, len(losses) // 10):])
    return all(map(math.isfinite, losses)) and last < first - min_drop, first, last


def generation_section(model: nn.Module, tokenizer: Tokenizer, device: torch.device, dtype: torch.dtype,
                       settings: dict) -> dict:
    """Greedy generation tokens/s with and without the KV cache (one warm-up call each, then one timed)."""
    prompt = "".join(chr(ord("a") + i % 26) for i in range(settings["prompt"]))  # one byte per id
    out = {}
    for use_cache in (True, False):
        for timed in (False, True):
            sync(device)
            start = time.perf_counter()
            greedy = SamplingParams(max_new_tokens=settings["new_tokens"], temperature=0.0, stop_at_eos=False)
            results = generate(model, tokenizer, [prompt], greedy, use_cache=use_cache, dtype=dtype)
            sync(device)
            elapsed = time.perf_counter() - start
        new = len(results[0].token_ids)
        out["cached" if use_cache else "uncached"] = {"new_tokens": new, "seconds": round(elapsed, 4),
                                                      "tokens_per_s": round(new / elapsed, 1)}
    out["cache_speedup"] = round(out["cached"]["tokens_per_s"] / out["uncached"]["tokens_per_s"], 3)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_section(device: torch.device) -> dict:
    """Join a one-process group with the backend a run would use, all-reduce, and step a DDP-wrapped layer."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    if device.type == "cpu" and sys.platform.startswith("linux"):
        # one local process: gloo on the loopback interface ("lo" on Linux), not on whatever the host name resolves to
        # (resolving it can stall for minutes on a machine without DNS)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    start = time.perf_counter()
    info = init_distributed(device.type, force=True)
    try:
        value = torch.ones(4, device=device)
        torch.distributed.all_reduce(value)
        layer = nn.Linear(8, 8).to(device)
        ddp = nn.parallel.DistributedDataParallel(layer, device_ids=[device.index or 0] if device.type == "cuda"
                                                  else None)
        ddp(torch.randn(2, 8, device=device)).sum().backward()
        ok = bool(torch.equal(value.cpu(), torch.ones(4))) and layer.weight.grad is not None
        backend = str(torch.distributed.get_backend())
    finally:
        shutdown_distributed(info, force=True)
    return {"backend": backend, "expected_backend": process_group_backend(device.type), "world_size": info.world_size,
            "ok": ok and backend == process_group_backend(device.type),
            "seconds": round(time.perf_counter() - start, 3)}


# ----------------------------------------------------------------------------- the script


def default_out(device: torch.device) -> Path:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return cache_path().parent / f"gpu_check-{slug}.json"


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    device = resolve_device(args.device, "--device")
    placement.configure_backends(device)
    settings = TINY if args.tiny else FULL
    if args.steps:
        settings = {**settings, "compiled_steps": args.steps}
    compile_model = {"on": True, "off": False, "auto": device.type == "cuda"}[args.compile]
    dtype = choose_dtype("auto", device).dtype  # bf16 on CUDA; float32 on a CPU unless measured (not here)
    dtype_name = str(dtype).removeprefix("torch.")
    vocab = settings["model"]["vocab_size"]
    report: dict = {"device": str(device), "device_name": torch.cuda.get_device_name(device)
                    if device.type == "cuda" else "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
                    "tiny": args.tiny, "model": settings["model"], "batch_size": settings["batch"],
                    "autocast_dtype": dtype_name,
                    "data": f"synthetic: a Markov chain over {vocab} ids with {SUCCESSORS} successors each "
                            f"(lowest reachable loss ln {SUCCESSORS} = {math.log(SUCCESSORS):.3f}); speed only, "
                            "no language"}

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"gpu_check on {report['device_name']} ({device}), torch {torch.__version__}, autocast {dtype_name}, "
        f"{'tiny model' if args.tiny else 'assignment model'}; data: {report['data']}")
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
        train_tokens = write_token_file(Path(tmp) / "train.npy", markov_tokens(settings["train_tokens"], vocab, 1),
                                        vocab)
        valid_tokens = write_token_file(Path(tmp) / "valid.npy", markov_tokens(settings["valid_tokens"], vocab, 2),
                                        vocab)

        compiled = train_section(settings, train_tokens, device, dtype=dtype_name, compile_model=compile_model,
                                 steps=settings["compiled_steps"], warmup=settings["compiled_warmup"])
        fell, first, last = loss_fell(compiled["losses"], settings["min_loss_drop"])
        compiled.update(loss_first=round(first, 4), loss_last=round(last, 4), loss_fell=fell)
        report["train_compiled"] = compiled
        mfu = f", MFU {compiled['mfu']:.1%}" if compiled["mfu"] else ", MFU n/a (no peak for this device)"
        say(f"training ({'compiled' if compile_model else 'not compiled'}): {compiled['tokens_per_s']:,.0f} tok/s"
            f"{mfu}, peak memory {compiled['peak_memory_mb']:,.0f} MB, warm-up {compiled['warmup_s']:.1f} s, "
            f"loss {first:.3f} -> {last:.3f}")

        eager = train_section(settings, train_tokens, device, dtype=dtype_name, compile_model=False,
                              steps=settings["eager_steps"], warmup=settings["eager_warmup"], attention="sdpa")
        report["train_eager"] = eager
        say(f"training (eager, SDPA attention): {eager['tokens_per_s']:,.0f} tok/s")

        reference = train_section(settings, train_tokens, device, dtype=dtype_name, compile_model=False,
                                  steps=settings["attention_steps"], warmup=settings["eager_warmup"],
                                  attention="reference")
        report["attention"] = {"reference_tokens_per_s": reference["tokens_per_s"],
                               "sdpa_tokens_per_s": eager["tokens_per_s"],
                               "sdpa_speedup": round(eager["tokens_per_s"] / reference["tokens_per_s"], 3),
                               "reference_peak_memory_mb": reference["peak_memory_mb"]}
        say(f"attention in a training step (eager): reference {reference['tokens_per_s']:,.0f} tok/s, "
            f"SDPA {eager['tokens_per_s']:,.0f} tok/s")

        cfg = run_config(settings, dtype=dtype_name, compile_model=False, steps=1)
        model = build_training_parts(cfg, train_tokens, device, total_steps=1).model
        report["generation"] = generation_section(model, synthetic_tokenizer(vocab), device, dtype, settings)
        g = report["generation"]
        say(f"generation (greedy, batch 1, {settings['new_tokens']} new tokens): KV cache "
            f"{g['cached']['tokens_per_s']:,.1f} tok/s, no cache {g['uncached']['tokens_per_s']:,.1f} tok/s")

        start = time.perf_counter()
        result = evaluate_loss(model, valid_tokens, cfg.model.context_length, settings["eval_batch"], device,
                               autocast_dtype=dtype, show_progress=False)
        sync(device)
        seconds = time.perf_counter() - start
        report["evaluation"] = {"tokens": result.num_tokens, "seconds": round(seconds, 3),
                                "tokens_per_s": round(result.num_tokens / seconds, 1), "loss": round(result.loss, 4)}
        say(f"evaluation of the whole validation file ({result.num_tokens:,} tokens, untrained model): "
            f"{result.num_tokens / seconds:,.0f} tok/s")
        del model

    report["ddp"] = ddp_section(device)
    say(f"DDP at world size 1: backend {report['ddp']['backend']}, {'ok' if report['ddp']['ok'] else 'FAILED'}")

    seconds = ASSIGNMENT_TOKENS / compiled["tokens_per_s"]
    report["extrapolation"] = {
        "tokens": ASSIGNMENT_TOKENS, "basis": "train_compiled.tokens_per_s" + (" (tiny model)" if args.tiny else ""),
        "seconds": round(seconds, 1), "minutes": round(seconds / 60, 2),
        "excludes": "compilation, evaluation, checkpoints and samples"}
    say(f"extrapolated steps of the full {ASSIGNMENT_TOKENS:,}-token run at the compiled rate: "
        f"{seconds / 60:,.1f} minutes (without compilation, evaluation and checkpoints)")
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["ok"] = bool(compiled["loss_fell"] and report["ddp"]["ok"])
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model for a few steps (the CPU smoke test)")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="torch.compile the first training section (auto: on CUDA only)")
    ap.add_argument("--steps", type=int, help="measured steps of the compiled training section")
    ap.add_argument("--out", help=f"JSON report path (default: gpu_check-<device name>.json in {cache_path().parent}, "
                                  "outside the source tree)")
    args = ap.parse_args(argv)
    report = run(args)
    out = Path(args.out) if args.out else default_out(resolve_device(args.device, "--device"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"report written to {out} ({report['total_s']} s)")
    if not report["train_compiled"]["loss_fell"]:
        print(f"FAILED: the training loss did not fall by {(TINY if args.tiny else FULL)['min_loss_drop']} "
              f"({report['train_compiled']['loss_first']} -> {report['train_compiled']['loss_last']})",
              file=sys.stderr)
    if not report["ddp"]["ok"]:
        print("FAILED: DDP initialisation", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
