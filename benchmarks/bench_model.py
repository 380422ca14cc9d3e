"""Forward+backward throughput of our TransformerLM vs a standard PyTorch GPT of the same shape.

The anchor is the standard GPT of ``benchmarks/bench_train.py`` (``StdGPT``):
the Llama-style model written the usual way with PyTorch's own building blocks
(``nn.Embedding``, ``nn.Linear``, ``nn.RMSNorm``, ``F.silu``,
``F.scaled_dot_product_attention`` with ``is_causal``) and RoPE from cached
cos/sin tables; the loss is ``F.cross_entropy`` for every contender.
Contenders, run interleaved by ``benchmarks/harness.py`` in the same process:

- ``ours``: TransformerLM with the from-scratch attention (``attention="reference"``);
- ``ours-sdpa``: TransformerLM with the fused-SDPA fast path (``attention="sdpa"``);
- ``standard``: the anchor;
- with ``--compile``, also ``ours-compiled`` and ``standard-compiled`` (torch.compile).

Each run is ``--steps`` optimizer-free training steps (forward, cross-entropy,
backward, zero grads) on a fixed random batch. Reported: median wall seconds,
tokens/s and the throughput ratio anchor_time / contender_time (> 1: we are
faster), both for wall time and for the process's CPU time (with ``--threads 1``
CPU time is much less disturbed by other jobs on a shared machine). The
compiled contenders are compared with the compiled anchor.

``--kernels`` instead times the causal attention kernels alone (our reference
vs SDPA, forward+backward, CPU time), which decides ``attention="auto"``.

Usage::

    python benchmarks/bench_model.py --d-model 256 512 --context 256 --batch 4 --steps 1 --repeats 5 --threads 1
    python benchmarks/bench_model.py --kernels --threads 1 --batch 4 --context 256
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import StdGPT as StandardLM  # noqa: E402 - one standard GPT anchor for both benchmarks
from harness import Contender, compare  # noqa: E402

from cs336_basics.model import TransformerLM, preset  # noqa: E402


def _train_steps(model, ids, targets, steps: int, vocab: int, cpu_times: list[float]):
    def run():
        start = time.process_time()
        for _ in range(steps):
            logits = model(ids)
            loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
            loss.backward()
            for p in model.parameters():
                p.grad = None
        cpu_times.append(time.process_time() - start)
    return run


def bench_kernels(args) -> None:
    """Causal attention alone, forward+backward: our reference kernel vs the SDPA kernel (CPU-time medians)."""
    from cs336_basics.model import ReferenceAttention, SDPAAttention

    print("| B, H, T, d_head | reference ms | sdpa ms | reference / sdpa (time) |")
    print("|---|---:|---:|---:|")
    for B, H, T, D in ((args.batch, 8, args.context, 32), (args.batch, 16, args.context, 32), (2, 8, 1024, 64)):
        q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
        ms = {}
        for name, kernel in (("reference", ReferenceAttention()), ("sdpa", SDPAAttention())):
            kernel(q, k, v, None, True).sum().backward()  # warm-up
            runs = []
            for _ in range(args.repeats):
                start = time.process_time()
                kernel(q, k, v, None, True).sum().backward()
                runs.append(time.process_time() - start)
            ms[name] = 1e3 * statistics.median(runs)
        print(f"| {B}, {H}, {T}, {D} | {ms['reference']:.1f} | {ms['sdpa']:.1f} | "
              f"{ms['reference'] / ms['sdpa']:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-model", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also benchmark torch.compile'd models")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kernels", action="store_true", help="only compare the two attention kernels (CPU time)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.kernels:
        bench_kernels(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, batch {args.batch}, "
          f"context {args.context}, {args.layers} layers, vocab {args.vocab}, {args.steps} steps per run")
    for d_model in args.d_model:
        heads = max(1, d_model // 64) * 2  # head size 32
        cfg = preset("llama", vocab_size=args.vocab, context_length=args.context, d_model=d_model,
                     num_layers=args.layers, num_heads=heads)
        d_ff = TransformerLM(cfg).layers[0].ffn.w1.weight.shape[0]
        torch.manual_seed(0)
        ids = torch.randint(0, args.vocab, (args.batch, args.context), device=args.device)
        targets = torch.roll(ids, -1, dims=1)
        models = {
            "ours": TransformerLM(cfg, seed=0).to(args.device),
            "ours-sdpa": TransformerLM(preset("llama", **{**cfg.__dict__, "attention": "sdpa"}), seed=0).to(args.device),
            "standard": StandardLM(args.vocab, args.context, d_model, args.layers, heads, d_ff).to(args.device),
        }
        if args.compile:
            models["ours-compiled"] = torch.compile(TransformerLM(cfg, seed=0).to(args.device))
            models["ours-sdpa-compiled"] = torch.compile(TransformerLM(
                preset("llama", **{**cfg.__dict__, "attention": "sdpa"}), seed=0).to(args.device))
            models["standard-compiled"] = torch.compile(
                StandardLM(args.vocab, args.context, d_model, args.layers, heads, d_ff).to(args.device))
        n_ours = sum(p.numel() for p in models["ours"].parameters())
        n_std = sum(p.numel() for p in models["standard"].parameters())
        assert n_ours == n_std, (n_ours, n_std)
        tokens = args.steps * args.batch * args.context
        cpu = {name: [] for name in models}
        contenders = [Contender(name, _train_steps(m, ids, targets, args.steps, args.vocab, cpu[name]), work=tokens,
                                work_unit="tok") for name, m in models.items()]
        print(f"\n## d_model {d_model}, {heads} heads, d_ff {d_ff}, {n_ours / 1e6:.2f} M parameters", flush=True)
        results = compare(contenders, repeats=args.repeats, warmup=1, verbose=False)
        base = {r.name: r for r in results}
        print("| contender | median wall s | tokens/s | ratio vs anchor (wall) | median CPU s | ratio vs anchor (CPU) "
              "| wall min..max s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in results:
            anchor = "standard-compiled" if r.name.endswith("compiled") else "standard"
            a = base[anchor]
            cpu_r = statistics.median(cpu[r.name][1:])  # the first entry is the warmup
            cpu_a = statistics.median(cpu[anchor][1:])
            print(f"| {r.name} | {r.median:.3f} | {r.rate:,.0f} | {a.median / r.median:.3f} | {cpu_r:.3f} | "
                  f"{cpu_a / cpu_r:.3f} | {min(r.times):.3f}..{max(r.times):.3f} |", flush=True)
        spread = statistics.pstdev(base["standard"].times) / base["standard"].median
        if spread > 0.1 or math.isnan(spread):
            print(f"(noisy: the anchor's run-to-run deviation is {spread:.0%})")


if __name__ == "__main__":
    main()
