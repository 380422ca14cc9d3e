"""Training throughput and MFU: our loop (``cs336 train``'s Trainer) vs a standard PyTorch GPT training loop.

The standard loop is what one would write with stock PyTorch for the same
model: ``nn.Linear``, ``nn.RMSNorm``, RoPE, SwiGLU, ``F.scaled_dot_product_attention``,
``F.cross_entropy`` and ``torch.optim.AdamW`` (foreach), batches from the same
memory-mapped token array. Ours is ``cs336_basics.training.loop.Trainer``'s
step (batch sampling, from-scratch model, cross-entropy and AdamW, clipping,
the finiteness check) built from a RunConfig exactly as ``cs336 train`` builds it.

Method (the machine is shared and noisy): both are built once, then run in
interleaved blocks (A B A B ...) of ``--steps`` optimizer steps after one
warm-up step each; the median seconds per step gives tokens/s. MFU =
(6 N + 12 L d T) x tokens/s / peak, with N the parameters in matmuls including
the LM head and the peak the best float32 matmul rate measured in the same run.
Finally one short end-to-end ``train()`` run reports the loop's own overhead
(data loading, logging, checkpointing) as a fraction of step time.

    python benchmarks/bench_train.py                      # assignment shape, 2 threads
    python benchmarks/bench_train.py --d-model 256 --steps 2 --rounds 2   # quicker
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))


# ----------------------------------------------------------------------------- the standard loop


class StdBlock(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.w1, self.w3 = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d, bias=False)

    @staticmethod
    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, D/2) each
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)  # (B, H, T, D)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)  # (B, T, H, D) each
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, H, T, D)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        y = self.norm2(x)
        return x + self.w2(F.silu(self.w1(y)) * self.w3(y))


class StdGPT(nn.Module):
    def __init__(self, vocab: int, ctx: int, d: int, layers: int, heads: int, d_ff: int, theta: float = 1e4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(StdBlock(d, heads, d_ff) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.head = nn.Linear(d, vocab, bias=False)
        hd = d // heads
        inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)  # (D/2,)
        ang = torch.arange(ctx, dtype=torch.float32)[:, None] * inv  # (T, D/2)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x, self.cos[:t], self.sin[:t])
        return self.head(self.norm(x))


class StandardLoop:
    def __init__(self, m, data: np.ndarray, batch: int, lr: float, compile_model: bool) -> None:
        torch.manual_seed(0)
        self.model = StdGPT(m.vocab_size, m.context_length, m.d_model, m.num_layers, m.num_heads, m.d_ff)
        self.step_model = torch.compile(self.model) if compile_model else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        self.data, self.batch, self.ctx = data, batch, m.context_length
        self.rng = np.random.default_rng(0)

    def step(self) -> float:
        starts = self.rng.integers(0, len(self.data) - self.ctx, size=self.batch)
        idx = starts[:, None] + np.arange(self.ctx + 1)  # (B, T+1)
        block = torch.from_numpy(self.data[idx].astype(np.int64))
        x, y = block[:, :-1], block[:, 1:]
        logits = self.step_model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


# ----------------------------------------------------------------------------- ours


def make_dataset(root: Path, vocab: int, num_tokens: int) -> Path:
    """A dataset dir with random train/valid token files (throughput does not depend on the text)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(root / "train.npy", rng.integers(0, vocab, size=num_tokens, dtype=np.uint16))
    np.save(root / "valid.npy", rng.integers(0, vocab, size=num_tokens // 20, dtype=np.uint16))
    return root


def our_config(args, data_dir: Path, runs_dir: Path, *extra: str):
    from cs336_basics.config import RunConfig, apply_overrides

    return apply_overrides(RunConfig(), [
        f"model.vocab_size={args.vocab}", f"model.context_length={args.ctx}", f"model.d_model={args.d_model}",
        f"model.num_layers={args.layers}", f"model.num_heads={args.heads}", f"model.d_ff={args.d_ff}",
        f"data.dataset_dir={data_dir}", f"train.runs_dir={runs_dir}", f"train.batch_size={args.batch}",
        "train.total_steps=1000000", "train.device=cpu", "train.samples=false", "logging.quiet=true",
        f"train.compile={str(args.compile).lower()}", *extra])


# ----------------------------------------------------------------------------- measurement


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GEMM FLOP/s over a few square sizes (the denominator of MFU)."""
    best = 0.0
    for size in (1024, n):
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best


def timed_steps(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def bench_components(args, rounds: int = 5) -> None:
    """Our cross-entropy and AdamW vs PyTorch's at the benchmark shape, interleaved (median ms per call)."""
    from cs336_basics.training.loss import cross_entropy
    from cs336_basics.training.optimizer import AdamW

    n = args.batch * args.ctx
    logits = torch.randn(n, args.vocab, requires_grad=True)
    targets = torch.randint(0, args.vocab, (n,))

    def ce(fn):
        def run():
            logits.grad = None
            fn(logits, targets).backward()
        return run

    torch.manual_seed(0)
    params_a = [nn.Parameter(torch.randn(s)) for s in ((args.vocab, args.d_model),) * 2 + ((args.d_model, args.d_model),) * 16]
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    for p, q in zip(params_a, params_b):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    ours_opt = AdamW(params_a, lr=1e-3, weight_decay=0.1)
    torch_opt = torch.optim.AdamW(params_b, lr=1e-3, weight_decay=0.1)
    pairs = {"cross_entropy fwd+bwd": (ce(cross_entropy), ce(F.cross_entropy)),
             f"AdamW step ({sum(p.numel() for p in params_a) / 1e6:.1f}M params)": (ours_opt.step, torch_opt.step)}
    print("\n| component | ours ms | torch ms | ours/torch time |\n|---|---:|---:|---:|")
    for name, (ours, theirs) in pairs.items():
        ours(), theirs()
        a, b = [], []
        for _ in range(rounds):
            a.append(timed_steps(ours, 1))
            b.append(timed_steps(theirs, 1))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {name} | {1e3 * ma:.1f} | {1e3 * mb:.1f} | {ma / mb:.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--d-ff", type=int, default=1344)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="steps per interleaved block")
    p.add_argument("--rounds", type=int, default=3, help="interleaved blocks per contender")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--e2e-steps", type=int, default=6, help="steps of the end-to-end train() run (0: skip)")
    p.add_argument("--components", action="store_true", help="only compare cross-entropy and AdamW with PyTorch's")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.components:
        bench_components(args)
        return

    from cs336_basics.training import runtime
    from cs336_basics.training.loop import Trainer, train

    tmp = Path(tempfile.mkdtemp(prefix="bench_train."))
    data_dir = make_dataset(tmp / "data", args.vocab, 2_000_000)
    data = np.load(data_dir / "train.npy", mmap_mode="r")
    contenders = {}
    for name, extra in (("ours", []), ("ours_sdpa", ["model.attention=sdpa"])):
        trainer = Trainer(our_config(args, data_dir, tmp / "runs", f"train.run_name={name}", *extra))
        trainer.step_counter = 0

        def our_step(trainer=trainer):
            trainer._train_step(trainer.step_counter)
            trainer.step_counter += 1

        contenders[name] = our_step
    std = StandardLoop(trainer.cfg.model, data, args.batch, 1e-3, args.compile)
    contenders["standard"] = std.step
    flops_tok = runtime.flops_per_token(trainer.cfg.model)
    tokens_per_step = args.batch * args.ctx

    print(f"shape: d_model {args.d_model}, {args.layers} layers, {args.heads} heads, ctx {args.ctx}, batch {args.batch}, "
          f"vocab {args.vocab}, {args.threads} threads, compile={args.compile}", flush=True)
    peaks = [matmul_peak()]
    for fn in contenders.values():  # warm-up step each
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for rnd in range(args.rounds):
        for name, fn in contenders.items():
            times[name].append(timed_steps(fn, args.steps))
            print(f"  round {rnd + 1}: {name} {times[name][-1]:.2f} s/step", file=sys.stderr, flush=True)
        peaks.append(matmul_peak())
    peak = max(peaks)
    print(f"float32 matmul peak (best of {len(peaks)} measurements, interleaved): {peak / 1e9:.1f} GFLOP/s")
    print(f"model FLOPs per token (6N + 12LdT): {flops_tok / 1e6:.1f} MFLOP")
    print("\n| loop | median s/step | tokens/s | MFU | throughput vs standard |\n|---|---:|---:|---:|---:|")
    base = statistics.median(times["standard"])
    for name, ts in times.items():
        med = statistics.median(ts)
        tps = tokens_per_step / med
        print(f"| {name} | {med:.3f} | {tps:,.0f} | {flops_tok * tps / peak:.3f} | {base / med:.3f} |")

    if args.e2e_steps:
        cfg = our_config(args, data_dir, tmp / "runs", "train.run_name=e2e", f"train.total_steps={args.e2e_steps}",
                         f"train.eval_interval={args.e2e_steps}", "train.eval_tokens=8192",
                         f"train.checkpoint_interval={max(1, args.e2e_steps // 2)}", "logging.log_interval=1")
        result = train(cfg)
        from cs336_basics.runs.metrics import read_jsonl

        end = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
        print(f"\nend-to-end train(): {result.steps} steps, checkpoint every {max(1, args.e2e_steps // 2)} steps, "
              f"log every step: data {end['time_data']:.3f} s, logging {end['time_logging']:.3f} s, "
              f"checkpointing {end['time_checkpoint']:.3f} s, compute {end['time_compute']:.1f} s -> "
              f"loop overhead {100 * end['overhead_fraction']:.2f}% of step time")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    assert math.isfinite(peak)


if __name__ == "__main__":
    main()
