"""Generation speed: KV cache vs full recomputation, and vs a standard past_key_values loop.

Measures tokens/s for ``--new`` (512) new tokens from a ``--prompt-len`` (16)
token prompt, batch 1 and 8, on a CPU-sized Llama-style model (d_model 256,
4 layers, 8 heads, context 1024 so 528 tokens fit without sliding; random
weights: speed does not depend on what the weights say). Contenders, run
interleaved by ``benchmarks/harness.py`` (medians of ``--repeats``):

- ``ours cached``: :func:`cs336_basics.generation.generate` with the KV cache;
- ``ours uncached``: the same with ``use_cache=False`` (whole context every step);
- ``standard past_key_values`` (the anchor): :class:`StdDecoder` below, a model
  written the standard way (``nn.Module`` layers: ``nn.Embedding``, ``nn.Linear``,
  ``nn.RMSNorm``, ``F.silu``, ``F.scaled_dot_product_attention``, RoPE from
  cos/sin tables, as in Hugging Face's Llama) on the *same weights*, driven by a
  minimal greedy loop with Hugging Face ``past_key_values`` semantics: every
  layer returns its keys/values, the loop carries them and each step
  ``torch.cat``s the new token's keys/values onto them;
- ``functional past_key_values``: :func:`hf_style_generate`, the same loop over a
  forward written as one flat function of the weight tensors (``F.linear``, no
  modules at all). Not how models are written, but it shows the floor of Python
  overhead per decoding step, so it is reported as a second reference.

All contenders decode greedily, so their tokens must be identical; the script
checks that before timing. It also records the time of every decoding step of
``ours cached`` (a forward hook) and reports the mean of the last 64 steps over
the first 64 (flat per-token latency means ~1.0).

Run: ``python benchmarks/bench_generate.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Contender, compare, print_table  # noqa: E402

from cs336_basics.generation import generate  # noqa: E402
from cs336_basics.model import ModelConfig, TransformerLM  # noqa: E402
from cs336_basics.tokenizer import Tokenizer  # noqa: E402

# ----------------------------------------------------------------------------- the anchor


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2i, 2i+1), the convention our model uses. x (B, H, T, D), cos/sin (B, 1, T, D/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def hf_forward(w: dict[str, torch.Tensor], cfg: ModelConfig, input_ids: torch.Tensor, position_ids: torch.Tensor,
               past_key_values: list[tuple[torch.Tensor, torch.Tensor]] | None):
    """One forward in the Hugging Face style; returns (logits (B, T, V), new past_key_values)."""
    B, T = input_ids.shape
    H, D = cfg.num_heads, cfg.d_model // cfg.num_heads
    inv_freq = cfg.rope_theta ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = position_ids[:, None, :, None].float() * inv_freq  # (B, 1, T, D/2)
    cos, sin = angles.cos(), angles.sin()
    x = F.embedding(input_ids, w["token_embeddings.weight"])  # (B, T, d)
    presents = []
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        h = _rms_norm(x, w[p + "ln1.weight"], cfg.norm_eps)
        q, k, v = F.linear(h, w[p + "attn.qkv_proj.weight"]).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # (B, H, T, D)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if past_key_values is not None:
            past_k, past_v = past_key_values[i]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, H, S, D)
        presents.append((k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=past_key_values is None)  # (B, H, T, D)
        x = x + F.linear(attn.transpose(1, 2).reshape(B, T, cfg.d_model), w[p + "attn.output_proj.weight"])
        h = _rms_norm(x, w[p + "ln2.weight"], cfg.norm_eps)
        x = x + F.linear(F.silu(F.linear(h, w[p + "ffn.w1.weight"])) * F.linear(h, w[p + "ffn.w3.weight"]),
                         w[p + "ffn.w2.weight"])
    logits = F.linear(_rms_norm(x, w["ln_final.weight"], cfg.norm_eps), w["lm_head.weight"])
    return logits, presents


class StdAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv_proj = nn.Linear(d, 3 * d, bias=False)
        self.output_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, past):
        B, T, d = x.shape
        q, k, v = self.qkv_proj(x).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, D)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, S, D)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)  # (B, H, T, D)
        return self.output_proj(out.transpose(1, 2).reshape(B, T, d)), (k, v)


class StdMLP(nn.Module):
    def __init__(self, d: int, d_ff: int) -> None:
        super().__init__()
        self.w1, self.w3 = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class StdLayer(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int, eps: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.RMSNorm(d, eps=eps), nn.RMSNorm(d, eps=eps)
        self.attn, self.ffn = StdAttention(d, heads), StdMLP(d, d_ff)

    def forward(self, x, cos, sin, past):
        a, present = self.attn(self.ln1(x), cos, sin, past)
        x = x + a
        return x + self.ffn(self.ln2(x)), present


class StdDecoder(nn.Module):
    """The standard-way model (module names match ours, so our state dict loads into it as is)."""

    def __init__(self, cfg: ModelConfig, d_ff: int) -> None:
        super().__init__()
        d, self.cfg = cfg.d_model, cfg
        self.token_embeddings = nn.Embedding(cfg.vocab_size, d)
        self.layers = nn.ModuleList(StdLayer(d, cfg.num_heads, d_ff, cfg.norm_eps) for _ in range(cfg.num_layers))
        self.ln_final = nn.RMSNorm(d, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        D = d // cfg.num_heads
        inv_freq = cfg.rope_theta ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
        angles = torch.arange(cfg.context_length, dtype=torch.float32)[:, None] * inv_freq  # (ctx, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, input_ids, position_ids, past_key_values=None):
        cos, sin = self.cos[position_ids].unsqueeze(1), self.sin[position_ids].unsqueeze(1)  # (B, 1, T, D/2)
        x = self.token_embeddings(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, cos, sin, None if past_key_values is None else past_key_values[i])
            presents.append(present)
        return self.lm_head(self.ln_final(x)), presents


@torch.inference_mode()
def greedy_past_key_values(forward, input_ids: torch.Tensor, max_new_tokens: int, vocab_limit: int) -> torch.Tensor:
    """Greedy decoding the Hugging Face way: ``forward(ids, position_ids, past) -> (logits, past)`` carries the
    keys/values from step to step (prompts of equal length, as in the benchmark)."""
    B, T = input_ids.shape
    position_ids = torch.arange(T).expand(B, T)
    logits, past = forward(input_ids, position_ids, None)
    out = []
    for step in range(max_new_tokens):
        next_ids = logits[:, -1, :vocab_limit].argmax(-1, keepdim=True)  # (B, 1)
        out.append(next_ids)
        if step == max_new_tokens - 1:
            break
        position_ids = position_ids[:, -1:] + 1
        logits, past = forward(next_ids, position_ids, past)
    return torch.cat(out, dim=1)


def standard_generate(model: StdDecoder, input_ids: torch.Tensor, max_new_tokens: int, vocab_limit: int):
    """The loop over the module-based standard model."""
    return greedy_past_key_values(model, input_ids, max_new_tokens, vocab_limit)


def hf_style_generate(w: dict[str, torch.Tensor], cfg: ModelConfig, input_ids: torch.Tensor, max_new_tokens: int,
                      vocab_limit: int) -> torch.Tensor:
    """The loop over the module-free functional forward."""
    return greedy_past_key_values(lambda ids, pos, past: hf_forward(w, cfg, ids, pos, past), input_ids,
                                  max_new_tokens, vocab_limit)


# ----------------------------------------------------------------------------- setup


def byte_tokenizer() -> Tokenizer:
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])


def prompts_of(batch: int, length: int) -> list[str]:
    words = "Once upon a time there was a little dog named Max who loved to run in the park"
    return [(words[i:] + words)[:length] for i in range(batch)]  # `length` ASCII bytes = `length` tokens


class StepClock:
    """Forward hook recording when every forward of the model finishes (wall and process CPU time)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.in_forward = 0.0  # CPU seconds spent inside the model's forward
        self._entered = 0.0
        self.handles = [model.register_forward_pre_hook(lambda *_: self._enter()),
                        model.register_forward_hook(lambda *_: self._tick())]

    def _enter(self) -> None:
        self._entered = time.process_time()

    def _tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.in_forward += self.cpu[-1] - self._entered

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    @staticmethod
    def deltas(times: list[float]) -> list[float]:
        return [b - a for a, b in zip(times, times[1:])]


class CpuTimed:
    """Wraps a contender's function to also record its process CPU time.

    With one torch thread, CPU time is the work done, unaffected by other
    processes competing for the cores (wall time on a shared machine is not).
    """

    def __init__(self, fn) -> None:
        self.fn, self.times = fn, []

    def __call__(self):
        start = time.process_time()
        out = self.fn()
        self.times.append(time.process_time() - start)
        return out


ANCHOR = "standard past_key_values"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=512)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uncached-repeats", type=int, default=1, help="the slow reference is timed fewer times")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--no-uncached", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: CPU time then measures work on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.new, args.repeats, args.d_model, args.layers, args.vocab, args.context = 64, 1, 64, 2, 1000, 128

    cfg = ModelConfig(vocab_size=args.vocab, context_length=args.context, d_model=args.d_model,
                      num_layers=args.layers, num_heads=args.heads, position="rope", ffn="swiglu")
    model = TransformerLM(cfg, seed=0).eval()
    sdpa_model = TransformerLM(dataclasses.replace(cfg, attention="sdpa")).eval()
    sdpa_model.load_state_dict(model.state_dict())
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    std_model = StdDecoder(cfg, model.layers[0].ffn.w1.out_features).eval()
    std_model.load_state_dict(model.state_dict())
    tok = byte_tokenizer()
    print(f"model: d_model {cfg.d_model}, {cfg.num_layers} layers, {cfg.num_heads} heads, vocab {cfg.vocab_size}, "
          f"context {cfg.context_length}, {model.num_parameters() / 1e6:.1f}M parameters; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.new} new tokens from a {args.prompt_len}-token prompt\n")

    def ours(prompts, use_cache=True, net=model):
        return generate(net, tok, prompts, max_new_tokens=args.new, temperature=0.0, stop_at_eos=False,
                        use_cache=use_cache)

    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = prompts_of(batch, args.prompt_len)
        input_ids = torch.tensor([tok.encode(p) for p in prompts])  # (B, prompt_len)
        assert input_ids.shape == (batch, args.prompt_len)
        # correctness first: the anchor and our decoding must agree token for token
        mine = [r.token_ids for r in ours(prompts)]
        anchor = hf_style_generate(weights, cfg, input_ids, args.new, tok.vocab_size).tolist()
        assert mine == anchor, "hf-style loop and generate() disagree: not the same computation"
        assert [r.token_ids for r in ours(prompts, net=sdpa_model)] == mine
        work = batch * args.new
        assert standard_generate(std_model, input_ids, args.new, tok.vocab_size).tolist() == mine
        fns = {
            "ours cached": CpuTimed(lambda: ours(prompts)),
            "ours cached, sdpa kernel": CpuTimed(lambda: ours(prompts, net=sdpa_model)),
            ANCHOR: CpuTimed(lambda: standard_generate(std_model, input_ids, args.new, tok.vocab_size)),
            "functional past_key_values": CpuTimed(lambda: hf_style_generate(weights, cfg, input_ids, args.new,
                                                                             tok.vocab_size)),
        }
        print(f"## batch {batch}\n")
        results = compare([Contender(name, fn, work=work, work_unit="tok") for name, fn in fns.items()],
                          repeats=args.repeats, warmup=1)
        print_table(results, baseline=ANCHOR)
        anchor_cpu = statistics.median(fns[ANCHOR].times[1:])
        print("\n| contender | median CPU s | tok per CPU s | CPU time vs standard | speed vs standard |")
        print("|---|---:|---:|---:|---:|")
        for name, fn in fns.items():
            cpu = statistics.median(fn.times[1:])  # [0] is the warmup
            print(f"| {name} | {cpu:.3f} | {work / cpu:.1f} | {cpu / anchor_cpu:.3f} | {anchor_cpu / cpu:.3f} |")
        cached_cpu = statistics.median(fns["ours cached"].times[1:])
        if not args.no_uncached:
            slow = CpuTimed(lambda: ours(prompts, use_cache=False))
            uncached = compare([Contender("ours uncached", slow, work=work, work_unit="tok")],
                               repeats=args.uncached_repeats)[0]
            print(f"\nuncached: median {uncached.median:.2f}s wall ({uncached.rate:.1f} tok/s), "
                  f"{statistics.median(slow.times):.2f}s CPU; cache speed-up "
                  f"{uncached.median / results[0].median:.1f}x wall, {statistics.median(slow.times) / cached_cpu:.1f}x CPU")
        clock = StepClock(model)
        start = time.process_time()
        ours(prompts)
        total = time.process_time() - start
        clock.remove()
        print(f"\ngenerate() CPU {total:.2f}s, of which model forward {clock.in_forward:.2f}s: "
              f"decoding-loop overhead {100 * (total - clock.in_forward) / total:.1f}%")
        for label, times in (("wall", clock.wall), ("CPU", clock.cpu)):
            steps = StepClock.deltas(times)  # decode steps after the prefill
            first, last = statistics.median(steps[:64]), statistics.median(steps[-64:])
            print(f"per-token latency ({label}, medians): first 64 steps {first * 1e3:.2f} ms, "
                  f"last 64 {last * 1e3:.2f} ms, ratio {last / first:.2f}")
        print()


if __name__ == "__main__":
    main()
