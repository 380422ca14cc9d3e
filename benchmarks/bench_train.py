"""Training throughput: `cs336 train`'s loop vs a standard PyTorch GPT training loop, eager and compiled.

Contenders, run interleaved (one repetition of each per round):

- ``ours-default``: exactly what ``cs336 train`` runs with no ``--config``: the
  default config (``load_config(None, ...)``, so ``model.attention="auto"``, which
  is PyTorch's fused SDPA on CPU and CUDA, and ``train.compile="auto"``, eager on the
  CPU with the C kernels of RMSNorm, SwiGLU, RoPE, the loss and AdamW), trained by the
  public ``train()``.
  Only the data paths, the run directory, the batch size, the step count and the
  evaluation/checkpoint cadence are set (and, with ``--quick``, a smaller shape
  through ``--shape``, recorded in the settings);
- ``ours-reference``: the same with ``model.attention=reference``, our
  from-scratch attention kernel;
- ``ours-compile=true`` (full runs): the same as ours-default with ``train.compile=true``;
- ``standard-eager`` and ``standard-compiled``: :class:`StandardLoop`, what one
  writes with stock PyTorch for the same model (``StdGPT`` of ``reference_models.py``): ``nn.Embedding``, ``nn.Linear``,
  ``nn.RMSNorm``, SwiGLU, RoPE (``standard-eager``: a complex multiply, ``torch.polar`` /
  ``view_as_complex``, as in Meta's Llama code; ``standard-eager (real RoPE)`` and ``standard-compiled``: the same
  rotation in real arithmetic, which Inductor fuses), ``F.scaled_dot_product_attention``,
  ``F.cross_entropy``, ``clip_grad_norm_`` and ``torch.optim.AdamW(fused=True)``
  with the same no-decay group as ours (norm gains, biases and embeddings), on
  batches sampled from the same token array; once eager and once ``torch.compile``d.
  They run under the autocast dtype that ``train.dtype=auto`` chose for ours-default
  on this machine (an untimed probe run decides it first): bf16 autocast where our
  run uses it (a CPU with native bf16 at this shape), float32 otherwise, so both
  sides compute in the same precision.

A second group (full runs) repeats ``ours-default`` against the two eager standard loops at the
quickstart's dimensions (d_model 128, 4 layers, 4 heads, context 128, vocab 2048, batch 16), 20 steps
per repetition after 2 warm-up steps. Each group records what ``train.compile=auto`` and
``train.dtype=auto`` chose for ours-default, and the compilation seconds of the compiled contenders.

Each repetition of ours is one ``train()`` call of ``warmup + steps`` steps; its
time is the sum of the last ``steps`` per-step times in the run's
``metrics.jsonl`` (``logging.log_interval=1``: the loop's clock runs from one log
point to the next, so each step's time holds its batch sampling, its forward,
backward and optimizer step, and the previous step's logging and finiteness guard;
the evaluation and checkpoint at the end are outside the timed steps).
A repetition of a standard loop is ``steps`` steps of a loop built and warmed up
once. MFU = (6 N + 12 L d T) x tokens/s / peak, with N the matmul parameters
(LM head included) and the peak the best matmul rate in the loops' dtype measured
between rounds. The data are real: TinyStories tokenized with a 10,000-token BPE
trained on it. ``--components`` (a second group) times our cross-entropy and
AdamW against PyTorch's at the same shape.

    python benchmarks/bench_train.py --quick
    python benchmarks/bench_train.py                     # the default shape, batch 16, 2 threads
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.corpora import TINYSTORIES_TRAIN, TINYSTORIES_VALID, text_prefix, token_array, tokenizer_dir
from benchmarks.harness import Contender, Timing, compare, group
from benchmarks.reference_models import StdGPT
from benchmarks.script import script_main

# The package entry points this script uses (one place, so a restructured package is one edit away).
from cs336_basics.config import load_config
from cs336_basics.config.accounting import flops_per_token
from cs336_basics.runtime.precision import NAMES as DTYPES
from cs336_basics.training.loop import train
from cs336_basics.training.loss import cross_entropy
from cs336_basics.training.optimizer import AdamW

SIZES = {
    "quick": dict(shape="model.d_model=256 model.num_heads=8", batch=4, steps=2, warmup=1, repeats=3, threads=1,
                  compile_ours=False, components=True, quickstart_steps=0, quickstart_warmup=0),
    "full": dict(shape="", batch=16, steps=3, warmup=1, repeats=5, threads=2, compile_ours=True, components=True,
                 quickstart_steps=20, quickstart_warmup=2),
}


# ----------------------------------------------------------------------------- the standard loop


class StandardLoop:
    """A standard PyTorch training step with our config's optimizer settings (constant learning rate)."""

    def __init__(self, cfg, data: np.ndarray, compile_model: bool, dtype: torch.dtype = torch.float32,
                 rope: str = "complex") -> None:
        torch.manual_seed(0)
        self.dtype = dtype
        self.model = StdGPT.like(cfg.model, rope)
        self.step_model = torch.compile(self.model) if compile_model else self.model
        o = cfg.optimizer
        no_decay = {id(p) for p in self.model.emb.parameters()} | {id(p) for p in self.model.parameters() if p.ndim < 2}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in no_decay], "weight_decay": o.weight_decay},
                  {"params": [p for p in self.model.parameters() if id(p) in no_decay], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=o.lr_max, betas=(o.beta1, o.beta2), eps=o.eps, fused=True)
        self.clip = o.grad_clip
        self.data, self.batch, self.ctx = data, cfg.train.batch_size, cfg.model.context_length
        self.rng = np.random.default_rng(0)

    def step(self) -> float:
        starts = self.rng.integers(0, len(self.data) - self.ctx, size=self.batch)
        block = torch.from_numpy(self.data[starts[:, None] + np.arange(self.ctx + 1)].astype(np.int64))  # (B, T+1)
        x, y = block[:, :-1], block[:, 1:]
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype != torch.float32):
            logits = self.step_model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


# ----------------------------------------------------------------------------- ours


HANDOUT_VOCAB = 10_000
"""The assignment's TinyStories vocabulary (``cs336 prepare --vocab-size 10000``); the default config leaves
``model.vocab_size`` to the dataset's tokenizer, and this benchmark's token files come without one."""


def our_config(settings: dict, data_dir: Path, runs_dir: Path, name: str, *extra: str):
    """The config ``cs336 train --dataset DATA_DIR`` builds with no --config, plus the benchmark's run settings."""
    total = settings["warmup"] + settings["steps"]
    return load_config(None, [
        f"model.vocab_size={HANDOUT_VOCAB}", f"data.dataset_dir={data_dir}", f"train.runs_dir={runs_dir}", f"train.run_name={name}", "train.overwrite=true",
        f"train.batch_size={settings['batch']}", f"train.total_steps={total}", f"train.eval_interval={total}",
        f"train.checkpoint_interval={total}", "train.samples=false", "logging.quiet=true", "logging.log_interval=1",
        *settings["shape"].split(), *extra])


def chosen_dtype(cfg) -> torch.dtype:
    """The dtype ``train.dtype`` resolves to for ``cfg`` on this machine, read from a 1-step probe run's metrics
    (the decision is cached per machine and shape, so the timed runs reuse it without measuring again)."""
    probe = train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, total_steps=1, eval_interval=1,
                                                                     checkpoint_interval=1)))
    start = json.loads((probe.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    return DTYPES[start["dtype"]]


def timed_train(cfg, warmup: int):
    """A contender running one ``train()`` call; its Timing is the wall time of the steps after ``warmup``."""
    def run() -> Timing:
        result = train(cfg)
        lines = (result.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        events = [json.loads(line) for line in lines]
        tokens_per_step = cfg.train.batch_size * cfg.model.context_length
        steps = [e for e in events if e.get("event") == "train" and e["step"] > warmup]
        assert len(steps) == cfg.train.total_steps - warmup, "one train event per step expected (log_interval=1)"
        return Timing(wall=sum(tokens_per_step / e["tokens_per_s"] for e in steps))

    return run


def matmul_peak(size: int = 1024, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best GEMM FLOP/s of a few square products in ``dtype`` (the denominator of MFU)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best


def measure_components(cfg, repeats: int, calls: int = 5) -> dict:
    """Our cross-entropy and AdamW vs PyTorch's at this shape, interleaved (each repetition: ``calls`` calls)."""
    m = cfg.model
    n = cfg.train.batch_size * m.context_length
    logits = torch.randn(n, m.vocab_size, requires_grad=True)
    targets = torch.randint(0, m.vocab_size, (n,))

    def ce(fn):
        def run():
            for _ in range(calls):
                logits.grad = None
                fn(logits, targets).backward()
        return run

    params = [[nn.Parameter(p.detach().clone()) for p in StdGPT.like(m).parameters()] for _ in range(2)]
    for p, q in zip(*params):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    ours_opt, torch_opt = AdamW(params[0], lr=1e-3, weight_decay=0.1), torch.optim.AdamW(params[1], lr=1e-3,
                                                                                         weight_decay=0.1, fused=True)

    def opt_steps(opt):
        def run():
            for _ in range(calls):
                opt.step()
        return run

    contenders = [Contender("ours cross_entropy", ce(cross_entropy)), Contender("F.cross_entropy", ce(F.cross_entropy)),
                  Contender("ours AdamW", opt_steps(ours_opt)),
                  Contender("torch.optim.AdamW(fused=True)", opt_steps(torch_opt))]
    results = compare(contenders, repeats=repeats, warmup=1)
    millions = sum(p.numel() for p in params[0]) / 1e6
    return group("components", f"cross-entropy forward+backward on {n:,} x {m.vocab_size:,} logits and an AdamW step "
                 f"on {millions:.1f}M parameters, {calls} calls per repetition", results,
                 size=f"{n:,} x {m.vocab_size:,} logits; {millions:.1f}M parameters")


STANDARD_LOOPS = (("standard-eager", False, "complex"), ("standard-eager (real RoPE)", False, "real"),
                  ("standard-compiled", True, "real"))
"""The anchors (name, compiled, RoPE form): eager in both RoPE forms (whichever is faster there), compiled with the
real-valued form Inductor fuses (it generates no code for complex multiplies)."""

QUICKSTART_SHAPE = ("model.vocab_size=2048 model.d_model=128 model.num_heads=4 model.context_length=128")
"""The quickstart's dimensions (configs/quickstart.toml) on the default config's architecture, so the standard loop
builds the same model (the quickstart's tied embeddings and init have no standard counterpart)."""


def compile_seconds(cfg) -> float | None:
    """The first step's time of the last run of ``cfg`` (``train.compile=true``: the compilation and one step)."""
    events = [json.loads(line) for line in (Path(cfg.train.runs_dir) / cfg.train.run_name / "metrics.jsonl").read_text(
        encoding="utf-8").splitlines()]
    first = next((e for e in events if e.get("event") == "train" and e["step"] == 1), None)
    return round(cfg.train.batch_size * cfg.model.context_length / first["tokens_per_s"], 2) if first else None


def steps_group(gid: str, label: str, settings: dict, text: str, valid_text: str, tmp: Path, variants: dict,
                anchors) -> tuple[dict, object]:
    """Our variants and the standard loops at one shape, interleaved, as a record group (and the shape's config)."""
    probe = our_config(settings, tmp, tmp / "runs", "probe")
    dataset = tmp / f"data-{gid}"
    dataset.mkdir()
    tok = tokenizer_dir(text, probe.model.vocab_size)
    train_ids = token_array(tok, text)
    np.save(dataset / "train.npy", train_ids)
    np.save(dataset / "valid.npy", token_array(tok, valid_text, 4 * probe.model.context_length))
    runs = tmp / f"runs-{gid}"
    dtype = chosen_dtype(our_config(settings, dataset, runs, "dtype-probe"))
    configs = {name: our_config(settings, dataset, runs, name, *extra) for name, extra in variants.items()}
    contenders = [Contender(name, timed_train(c, settings["warmup"])) for name, c in configs.items()]
    cfg = our_config(settings, dataset, runs, "standard")
    warmup_s = {}
    for name, compiled, rope in anchors:
        loop = StandardLoop(cfg, train_ids, compiled, dtype, rope)
        start = time.perf_counter()
        loop.step()  # warm-up (and compilation)
        warmup_s[name] = round(time.perf_counter() - start, 2)

        def block(loop=loop):
            for _ in range(settings["steps"]):
                loop.step()
        contenders.append(Contender(name, block))
    tokens = settings["steps"] * cfg.train.batch_size * cfg.model.context_length
    for c in contenders:
        c.work, c.work_unit = tokens, "tok"

    peaks = [matmul_peak(dtype=dtype)]

    def peak_between_rounds():
        peaks.append(matmul_peak(dtype=dtype))
    contenders.append(Contender("(matmul peak probe)", peak_between_rounds))  # once per round, dropped below
    results = compare(contenders, repeats=settings["repeats"])
    results = [r for r in results if not r.name.startswith("(")]
    peak = max(peaks)
    train_flops = flops_per_token(cfg.model)["train"]  # 6N + 12LdT, the trainer's MFU formula
    metrics = {f"MFU {r.name}": [train_flops * tokens / t / peak for t in r.wall] for r in results}
    m = cfg.model
    dtype_name = str(dtype).removeprefix("torch.")
    compiled_ours = {name: compile_seconds(c) for name, c in configs.items() if c.train.compile is True}
    start = json.loads((runs / "ours-default" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])  # a run
    # of ours-default has just ended: its first record holds its decisions
    facts = {"autocast dtype (train.dtype=auto for ours-default; the standard loops use the same)": dtype_name,
             "train.compile=auto for ours-default chose": f"{'compiled' if start['compile'] else 'eager'} "
                                                         f"({start['compile_reason']})",
             f"{dtype_name} matmul peak GFLOP/s (best between rounds)": round(peak / 1e9, 1),
             "model FLOPs per token (6N + 12LdT)": train_flops,
             "warm-up and compile seconds of the standard loops (first step)": warmup_s,
             "training tokens (TinyStories head)": int(len(train_ids))}
    if compiled_ours:
        facts["compile seconds of ours (first step, last repetition; not in the timed steps)"] = compiled_ours
    title = (f"{label}: d_model {m.d_model}, {m.num_layers} layers, {m.num_heads} heads, context {m.context_length}, "
             f"vocab {m.vocab_size}, batch {cfg.train.batch_size}, {settings['steps']} steps per repetition, "
             f"{settings['threads']} thread(s)")
    return group(gid, title, results, metrics=metrics, facts=facts,
                 size=f"d_model {m.d_model}, batch {cfg.train.batch_size}, {settings['threads']} thread(s)"), cfg


def measure(settings: dict, data_dir) -> dict:
    torch.set_num_threads(settings["threads"])
    text = text_prefix(TINYSTORIES_TRAIN, None, data_dir)
    valid_text = text_prefix(TINYSTORIES_VALID, None, data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train."))
    variants = {"ours-default": [], "ours-reference": ["model.attention=reference"]}
    if settings["compile_ours"]:
        variants["ours-compile=true"] = ["train.compile=true"]
    steps, cfg = steps_group("steps", "training steps", settings, text, valid_text, tmp, variants, STANDARD_LOOPS)
    groups = [steps]
    if settings.get("quickstart_steps"):
        small = dict(settings, shape=QUICKSTART_SHAPE, steps=settings["quickstart_steps"],
                     warmup=settings["quickstart_warmup"])
        quick, _ = steps_group("quickstart_steps", "training steps at the quickstart's shape", small, text,
                               valid_text, tmp, {"ours-default": []}, STANDARD_LOOPS[:2])
        groups.append(quick)
    if settings["components"]:
        groups.append(measure_components(cfg, settings["repeats"]))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    notes = ["ours-attention=sdpa is not run separately: on CPU and CUDA `attention=auto` (ours-default) already is "
             "PyTorch's fused SDPA kernel.",
             "standard-eager multiplies RoPE's pairs as complex numbers; standard-eager (real RoPE) and "
             "standard-compiled use the real-valued form, which Inductor fuses."]
    return {"groups": groups, "notes": notes, "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
