"""Generation speed: our KV cache vs recomputing, vs Hugging Face transformers, vs a functional loop.

``--new`` new tokens from ``--prompt-len``-token prompts (real TinyStories
openings), greedy, no stop at end-of-text, batch 1 (and 8 in full runs), one
torch thread, on a Llama-style model (d_model 256, 4 layers, 8 heads, context
1024, random weights: speed does not depend on what the weights say) with a
10,000-token BPE trained on TinyStories, so the LM head and every contender's
argmax cover the same 10,000 ids. Contenders, interleaved, all repeated alike:

- ``ours cached``: ``cs336_basics.generation.generate`` with the KV cache (the
  default), text streaming and all;
- ``ours uncached``: the same with ``use_cache=False`` (the whole context every step);
- ``transformers generate (default settings)``: Hugging Face
  ``LlamaForCausalLM.generate`` as it runs out of the box (greedy, dynamic
  cache, eager) on the folder our exporter writes (``cs336_basics.export.export_hf``)
  from the same weights;
- ``transformers generate (static cache, compiled)``: the same, run the way the
  transformers guide on optimizing inference prescribes for speed: a second
  instance with ``generation_config.cache_implementation = "static"`` and its
  ``forward`` wrapped in ``torch.compile(mode="reduce-overhead", fullgraph=True)``
  (on a CPU the mode's CUDA graphs do not apply; Inductor compiles the graphs).
  It compiles on its first call, with an empty Inductor cache, before the timed
  region (for each batch size: the prefill and the one-token step); that first
  call's wall time, and the compile time it implies (minus the median timed
  call), are recorded as facts, not as repetitions;
- ``functional past_key_values``: a greedy loop over a module-free forward
  (``F.linear``, ``F.scaled_dot_product_attention`` on the weight tensors) that
  carries ``past_key_values`` and ``torch.cat``s each new token's keys/values:
  the floor of Python overhead per step, kept as a second reference.

Every contender produces exactly ``--new`` tokens and nothing is spent per step
on avoiding an end of text: ours runs with ``stop_at_eos=False``; the exported
folder (written without a tokenizer) names no ``eos_token_id``, so ``generate``
installs no end-of-text stopping criterion and no minimum-length logits
processor and stops at ``max_new_tokens`` alone (checked before measuring).

Per repetition of ``ours cached`` a forward hook also records when every
decoding step ends: the metric "latency last 64 / first 64" is the median of the
last 64 step times over the median of the first 64 (flat latency: ~1.0), and
"time outside the model forward" the fraction of the CPU time spent in the
decoding loop itself. Whether every contender produced our tokens is recorded.

    python benchmarks/bench_generate.py --quick
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.corpora import EOT, TINYSTORIES_TRAIN, TINYSTORIES_VALID, text_prefix, tokenizer_dir
from benchmarks.harness import Contender, cold_inductor_cache, compare, group
from benchmarks.script import script_main

# The package entry points this script uses (one place, so a restructured package is one edit away).
from cs336_basics.export import export_hf
from cs336_basics.generation import SamplingParams, generate
from cs336_basics.model import ModelConfig, TransformerLM
from cs336_basics.tokenizer import Tokenizer

SIZES = {
    "quick": dict(new=128, prompt_len=16, batches="1", repeats=3, d_model=256, layers=4, heads=8, context=1024),
    "full": dict(new=512, prompt_len=16, batches="1,8", repeats=3, d_model=256, layers=4, heads=8, context=1024),
}


# ----------------------------------------------------------------------------- the functional floor


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2i, 2i+1), the convention our model uses. x (B, H, T, D), cos/sin (B, 1, T, D/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def functional_forward(w: dict[str, torch.Tensor], cfg: ModelConfig, input_ids: torch.Tensor,
                       position_ids: torch.Tensor, past_key_values: list[tuple[torch.Tensor, torch.Tensor]] | None):
    """One forward as a flat function of our weights; returns (logits (B, T, V), new past_key_values)."""
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


@torch.inference_mode()
def functional_generate(w: dict[str, torch.Tensor], cfg: ModelConfig, input_ids: torch.Tensor,
                        max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding the Hugging Face way over :func:`functional_forward` (prompts of equal length)."""
    B, T = input_ids.shape
    position_ids = torch.arange(T).expand(B, T)
    logits, past = functional_forward(w, cfg, input_ids, position_ids, None)
    out = []
    for step in range(max_new_tokens):
        next_ids = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out.append(next_ids)
        if step == max_new_tokens - 1:
            break
        position_ids = position_ids[:, -1:] + 1
        logits, past = functional_forward(w, cfg, next_ids, position_ids, past)
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------- measuring

DEFAULT = "transformers generate (default settings)"
FAST = "transformers generate (static cache, compiled)"


def fast_path(hf):
    """``hf`` set up as the transformers guide on optimizing inference prescribes: static cache, compiled forward."""
    hf.generation_config.cache_implementation = "static"
    hf.forward = torch.compile(hf.forward, mode="reduce-overhead", fullgraph=True)
    return hf


def real_prompts(tok: Tokenizer, text: str, batch: int, length: int) -> list[str]:
    """Openings of ``batch`` distinct stories that encode to exactly ``length`` tokens (and back)."""
    prompts = []
    for story in text.split(EOT):
        ids = tok.encode(story.strip())[:length]
        prompt = tok.decode(ids)
        if len(ids) == length and tok.encode(prompt) == ids:
            prompts.append(prompt)
            if len(prompts) == batch:
                return prompts
    raise RuntimeError(f"fewer than {batch} stories give a {length}-token prompt")


class StepClock:
    """Forward hooks recording when every forward of the model ends (wall), and the CPU time inside forwards."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.wall: list[float] = []
        self.in_forward = 0.0
        self._entered = 0.0
        self.handles = [model.register_forward_pre_hook(lambda *_: self._enter()),
                        model.register_forward_hook(lambda *_: self._tick())]

    def _enter(self) -> None:
        self._entered = time.process_time()

    def _tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.in_forward += time.process_time() - self._entered

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def measure_batch(batch: int, settings: dict, model, hf, hf_fast, weights, tok, valid_text: str) -> dict:
    import statistics

    cfg, new = model.config, settings["new"]
    prompts = real_prompts(tok, valid_text, batch, settings["prompt_len"])
    input_ids = torch.tensor([tok.encode(p) for p in prompts])  # (B, prompt_len)
    mask = torch.ones_like(input_ids)

    def ours(use_cache: bool):
        greedy = SamplingParams(max_new_tokens=new, temperature=0.0, stop_at_eos=False)
        return [r.token_ids for r in generate(model, tok, prompts, greedy, use_cache=use_cache)]

    def transformers_generate(instance):
        def run():
            with torch.inference_mode():
                out = instance.generate(input_ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                        use_cache=True)
            return out[:, input_ids.shape[1]:].tolist()
        return run

    def functional():
        return functional_generate(weights, cfg, input_ids, new).tolist()

    expected = ours(True)
    start = time.perf_counter()
    fast_first = transformers_generate(hf_fast)()  # compiles the prefill and the one-token step for this batch size
    first_call = time.perf_counter() - start
    same = {"ours uncached": ours(False) == expected,
            DEFAULT: transformers_generate(hf)() == expected, FAST: fast_first == expected,
            "functional past_key_values": functional() == expected}
    latency, outside = [], []

    def ours_cached_clocked():
        clock = StepClock(model)
        start = time.process_time()
        ours(True)
        total = time.process_time() - start
        clock.remove()
        steps = [b - a for a, b in zip(clock.wall, clock.wall[1:])]  # decoding steps after the prefill
        latency.append(statistics.median(steps[-64:]) / statistics.median(steps[:64]))
        outside.append((total - clock.in_forward) / total)

    work = batch * new
    contenders = [Contender("ours cached", ours_cached_clocked, work=work, work_unit="tok"),
                  Contender("ours uncached", lambda: ours(False), work=work, work_unit="tok"),
                  Contender(DEFAULT, transformers_generate(hf), work=work, work_unit="tok"),
                  Contender(FAST, transformers_generate(hf_fast), work=work, work_unit="tok"),
                  Contender("functional past_key_values", functional, work=work, work_unit="tok")]
    results = compare(contenders, repeats=settings["repeats"], warmup=1)
    r = settings["repeats"]
    return group(f"b{batch}", f"batch {batch}: {new} new tokens from {settings['prompt_len']}-token prompts, greedy",
                 results, size=f"batch {batch}, {new} new tokens",
                 metrics={"latency last 64 / first 64": latency[-r:],
                                   "time outside the model forward (CPU fraction)": outside[-r:]},
                 facts={**{f"{name} gives our tokens": value for name, value in same.items()},
                        f"{FAST}: first call (compiles, then generates once), s": round(first_call, 2),
                        f"{FAST}: compile s (first call minus the median timed call)":
                            round(first_call - next(x.median for x in results if x.name == FAST), 2)})


def measure(settings: dict, data_dir) -> dict:
    import transformers

    torch.set_num_threads(1)
    train_text = text_prefix(TINYSTORIES_TRAIN, None, data_dir)
    tok = Tokenizer.from_dir(tokenizer_dir(train_text, 10_000))
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=settings["context"], d_model=settings["d_model"],
                      num_layers=settings["layers"], num_heads=settings["heads"])
    model = TransformerLM(cfg, seed=0).eval()
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(model, Path(tmp) / "hf")
        hf = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
        hf_fast = fast_path(transformers.LlamaForCausalLM.from_pretrained(folder).eval())
    for instance in (hf, hf_fast):
        if instance.generation_config.eos_token_id is not None:
            raise RuntimeError("the exported folder names an end-of-text token: generate could stop early")
    valid_text = text_prefix(TINYSTORIES_VALID, None, data_dir).read_text(encoding="utf-8")
    with cold_inductor_cache("bench_generate"):  # the compile time recorded is a first run's
        groups = [measure_batch(int(b), settings, model, hf, hf_fast, weights, tok, valid_text)
                  for b in settings["batches"].split(",")]
    notes = [f"Model: d_model {cfg.d_model}, {cfg.num_layers} layers, {cfg.num_heads} heads, vocab {cfg.vocab_size}, "
             f"context {cfg.context_length}, {model.num_parameters() / 1e6:.1f}M parameters, random weights; "
             f"transformers {transformers.__version__} "
             f"(attention implementation {hf.config._attn_implementation!r}); its fast path: static cache, forward "
             "compiled with torch.compile(mode='reduce-overhead', fullgraph=True), compiled before timing."]
    return {"groups": groups, "notes": notes, "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
