"""Every comparison the summary reports, and its target: the one place where targets live.

A claim names a group of an area's record and two of its contenders (or one or
two per-repetition metrics). Its ratio is computed per repetition from the
interleaved pairs and summarised as median [min, max]:

- ``speed``: ours' throughput / the anchor's (work per wall second; > 1: ours is faster);
- ``memory``: ours' peak RSS / the anchor's (< 1: ours uses less);
- ``metric``: a value the benchmark recorded for every repetition;
- ``metric ratio``: every value of the metric ``ours`` over every value of the
  metric ``anchor`` of the same group (``harness.cross_ratios``), for runs with no
  pairing between them (seeds of two recipes): the range clears 1 only when the
  two metrics' ranges do not overlap, so "met" means every run of ours beat every
  run of the anchor.

A target is met only when the whole [min, max] range clears it, "within noise"
when the range straddles it, "not met" otherwise (``harness.verdict``). Claims
with ``readme`` set are the figures the README quotes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    area: str
    group: str
    label: str
    ours: str
    """Contender name (speed, memory) or metric name (metric, metric ratio)."""
    anchor: str | None = None
    """Contender name (speed, memory) or metric name (metric ratio); None for a metric."""
    measure: str = "speed"
    target: float | None = None
    better: str = "higher"
    readme: str | None = None
    """The README's wording for this figure (None: summary only)."""
    when: tuple[str, object] | None = None
    """(setting, value): the target applies only to records with this setting (e.g. the length it names)."""


CLAIMS: list[Claim] = [
    # tokenizer training (benchmarks/bench_bpe_train.py)
    Claim("bpe_train", "train", "BPE training speed, ours / rustbpe", "ours", "rustbpe", target=1.0,
          readme="BPE training, ours vs `rustbpe`"),
    Claim("bpe_train", "train", "BPE training speed, ours / HF tokenizers", "ours", "tokenizers", target=2.5,
          readme="BPE training, ours vs Hugging Face `tokenizers`"),
    Claim("bpe_train", "train", "BPE training peak memory, ours / HF tokenizers", "ours", "tokenizers",
          measure="memory", target=1.0, better="lower"),
    Claim("bpe_train", "train", "BPE training peak memory, ours / rustbpe", "ours", "rustbpe", measure="memory"),
    # encoding (benchmarks/bench_encode.py, benchmarks/bench_tokenize_workers.py)
    Claim("encode", "single_thread", "encode speed, 1 thread, ours / tiktoken", "ours (C)", "tiktoken", target=1.0,
          readme="encoding on one thread, ours vs `tiktoken` (identical ids)"),
    Claim("encode", "single_thread", "encode speed, 1 thread, ours / HF tokenizers", "ours (C)", "HF tokenizers"),
    Claim("encode", "whole_file", "whole file, 2 workers / tiktoken encode_ordinary_batch (all threads)",
          "ours, 2 workers", "tiktoken encode_ordinary_batch, all threads"),
    Claim("tokenize_workers", "workers", "`cs336 tokenize` speed, 2 workers / 1 worker", "2 workers", "1 worker",
          target=1.8, readme="`cs336 tokenize` with 2 workers vs 1"),
    # the model (benchmarks/bench_model.py)
    Claim("model", "fwd_bwd", "forward+backward speed, ours-reference / standard PyTorch", "ours-reference",
          "standard", target=0.9, readme="model forward+backward, from-scratch attention (`ours-reference`) vs a "
          "standard PyTorch GPT"),
    Claim("model", "fwd_bwd", "forward+backward speed, ours-default / standard PyTorch", "ours-default", "standard",
          target=1.0, readme="model forward+backward, defaults (`ours-default`, fused SDPA) vs a standard PyTorch GPT"),
    Claim("model", "kernels", "attention kernel alone, reference / SDPA", "reference", "sdpa"),
    # the training loop (benchmarks/bench_train.py)
    Claim("train", "steps", "training step speed, ours-default / standard eager", "ours-default", "standard-eager",
          target=1.0, readme="training step, `cs336 train` defaults vs a standard PyTorch loop (eager)"),
    Claim("train", "steps", "training step speed, ours-default / standard compiled", "ours-default",
          "standard-compiled", target=1.0, readme="training step, `cs336 train` defaults vs the same loop with "
          "`torch.compile`"),
    Claim("train", "steps", "training step speed, ours-default / standard eager (real RoPE)", "ours-default",
          "standard-eager (real RoPE)", target=1.0),
    Claim("train", "steps", "training step speed, ours-reference / standard eager", "ours-reference",
          "standard-eager", target=0.9),
    Claim("train", "steps", "training step speed, ours-compile=true / standard compiled", "ours-compile=true",
          "standard-compiled", target=1.0),
    Claim("train", "steps", "MFU of ours-default", "MFU ours-default", measure="metric", target=0.85),
    Claim("train", "quickstart_steps", "training step speed at the quickstart shape, ours-default / standard eager",
          "ours-default", "standard-eager", target=1.0),
    Claim("train", "quickstart_steps", "training step speed at the quickstart shape, ours-default / standard eager "
          "(real RoPE)", "ours-default", "standard-eager (real RoPE)", target=1.0),
    Claim("train", "components", "cross-entropy fwd+bwd speed, ours / F.cross_entropy", "ours cross_entropy",
          "F.cross_entropy"),
    Claim("train", "components", "AdamW step speed, ours / torch.optim.AdamW(fused=True)", "ours AdamW",
          "torch.optim.AdamW(fused=True)"),
    # autocast precision (benchmarks/bench_precision.py): measurements of the machine, no target
    Claim("precision", "assignment", "training step speed, bf16 autocast / float32, assignment shape", "bfloat16",
          "float32"),
    Claim("precision", "quickstart", "training step speed, bf16 autocast / float32, quickstart shape", "bfloat16",
          "float32"),
    Claim("precision", "matmul", "square matmul speed, bf16 / float32", "bfloat16", "float32"),
    # AdamW's paths on the CPU (benchmarks/bench_optimizer.py)
    Claim("optimizer", "layers4", "fused C AdamW (the CPU default) / torch.optim.AdamW(fused=True), 4 layers",
          "fused (C)", "torch.optim.AdamW(fused=True)", target=1.0),
    Claim("optimizer", "layers48", "fused C AdamW (the CPU default) / torch.optim.AdamW(fused=True), 48 layers",
          "fused (C)", "torch.optim.AdamW(fused=True)", target=1.0),
    Claim("optimizer", "layers48", "fused C AdamW / per-tensor on CPU, 48 layers", "fused (C)", "per-tensor"),
    Claim("optimizer", "layers48", "foreach AdamW faster than per-tensor on CPU with 48 layers", "foreach",
          "per-tensor", target=1.0),
    Claim("optimizer", "layers48", "chunked foreach AdamW / per-tensor on CPU, 48 layers", "foreach, chunked",
          "per-tensor", target=1.0),
    Claim("optimizer", "layers48", "compiled foreach AdamW (optimizer.compile) / per-tensor on CPU, 48 layers",
          "foreach, compiled", "per-tensor", target=1.0),
    Claim("optimizer", "layers4", "foreach AdamW / per-tensor on CPU, 4 layers", "foreach", "per-tensor"),
    Claim("optimizer", "layers4", "compiled foreach AdamW / per-tensor on CPU, 4 layers", "foreach, compiled",
          "per-tensor"),
    Claim("optimizer", "layers4", "chunked foreach AdamW / per-tensor on CPU, 4 layers", "foreach, chunked",
          "per-tensor"),
    # compiling the model (benchmarks/bench_compile.py): eager time / compiled time
    Claim("compile", "assignment", "compiled training step at least as fast as eager, assignment shape", "compiled",
          "eager", target=1.0),
    Claim("compile", "quickstart", "training step speed, compiled / eager, quickstart shape", "compiled", "eager"),
    # generation (benchmarks/bench_generate.py)
    Claim("generate", "b1", "KV-cache speed-up, batch 1 (wall)", "ours cached", "ours uncached", target=5.0,
          when=("new", 512), readme="KV-cached generation vs recomputing the context, batch 1"),
    Claim("generate", "b8", "KV-cache speed-up, batch 8 (wall)", "ours cached", "ours uncached", target=5.0,
          when=("new", 512), readme="KV-cached generation vs recomputing the context, batch 8"),
    Claim("generate", "b1", "generation speed, batch 1, ours / HF generate, default settings", "ours cached",
          "transformers generate (default settings)", target=1.0, readme="generation vs Hugging Face "
          "`transformers` `LlamaForCausalLM.generate` with its default settings (dynamic cache, eager), batch 1"),
    Claim("generate", "b8", "generation speed, batch 8, ours / HF generate, default settings", "ours cached",
          "transformers generate (default settings)", target=1.0, readme="generation vs Hugging Face "
          "`transformers` `LlamaForCausalLM.generate` with its default settings, batch 8"),
    Claim("generate", "b1", "generation speed, batch 1, ours / HF generate, static cache + torch.compile",
          "ours cached", "transformers generate (static cache, compiled)", target=1.0,
          readme="generation vs `LlamaForCausalLM.generate` on its fast path (static cache, compiled forward, "
          "compiled before timing), batch 1"),
    Claim("generate", "b8", "generation speed, batch 8, ours / HF generate, static cache + torch.compile",
          "ours cached", "transformers generate (static cache, compiled)", target=1.0,
          readme="generation vs `LlamaForCausalLM.generate` on its fast path, batch 8"),
    Claim("generate", "b1", "generation speed, batch 1, ours / functional past_key_values loop (floor)",
          "ours cached", "functional past_key_values", target=1.0,
          readme="generation vs a module-free `past_key_values` loop (the floor of Python overhead), batch 1"),
    Claim("generate", "b8", "generation speed, batch 8, ours / functional past_key_values loop (floor)",
          "ours cached", "functional past_key_values", target=1.0,
          readme="generation vs a module-free `past_key_values` loop, batch 8"),
    Claim("generate", "b1", "per-token latency, last 64 / first 64 steps, batch 1", "latency last 64 / first 64",
          measure="metric", target=1.5, better="lower"),
    Claim("generate", "b8", "per-token latency, last 64 / first 64 steps, batch 8", "latency last 64 / first 64",
          measure="metric", target=1.5, better="lower"),
    # evaluation (benchmarks/bench_eval.py)
    Claim("eval", "windows", "evaluation speed, batched / one window at a time", "non-overlapping",
          "non-overlapping, batch 1"),
    Claim("eval", "windows", "evaluation speed, stride C/2 / non-overlapping", "stride C/2", "non-overlapping"),
    Claim("eval", "windows", "largest relative loss difference, every pass vs a padded reference (padding that leaks "
          "or a wrong mask fails it)", "largest relative loss difference vs the padded reference", measure="metric",
          target=1e-6, better="lower"),
    # the quickstart (benchmarks/bench_quickstart.py, full runs only); the command keeps to its own budget, so its
    # wall time is a measurement, not a target; the quality target is relative to the handout recipe run alike
    Claim("quickstart", "run", "quickstart wall time, minutes", "minutes", measure="metric"),
    Claim("quickstart", "run", "quickstart training tokens per second", "training tokens per second",
          measure="metric"),
    Claim("quickstart", "run", "quickstart test-half bits per byte / the handout recipe's, every run against every run",
          "test bits per byte", "handout recipe: test bits per byte", measure="metric ratio", target=1.0,
          better="lower"),
    Claim("quickstart", "run", "quickstart test-half bits per byte (held out), goal of the modern recipe",
          "test bits per byte", measure="metric", target=1.15, better="lower"),
    Claim("quickstart", "run", "quickstart development-half bits per byte (the half seen during training)",
          "development bits per byte", measure="metric"),
    Claim("quickstart", "run", "quickstart improvement over unigram on the test half, nats/token",
          "test nats below unigram", measure="metric"),
    Claim("quickstart", "run", "same run with the handout recipe (with the command's dropout rule): test-half bits "
          "per byte", "handout recipe: test bits per byte", measure="metric"),
    Claim("quickstart", "run", "same run with the handout recipe (with the command's dropout rule): development-half "
          "bits per byte", "handout recipe: development bits per byte", measure="metric"),
    Claim("quickstart", "run", "same run with the handout recipe: wall time, minutes", "handout recipe: minutes",
          measure="metric"),
]
