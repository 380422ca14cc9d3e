"""Which autocast dtype ``auto`` means on this machine: bf16 where it is faster, float32 elsewhere.

Parameters and optimizer state always stay float32; only the matmuls and
activations inside ``torch.autocast`` run in the chosen dtype. The rule:

- **CUDA**: bf16 (every GPU the toolkit targets has bf16 tensor cores).
- **Apple MPS**: float32 (autocast coverage on MPS is partial; a measured
  choice would need the Metal profiler's help to be trustworthy).
- **CPU without native bf16** (no AVX512-BF16, AMX or Arm BF16 instructions):
  float32. There bf16 is emulated by converting to float32 around every
  dot product, which is slower than float32 itself.
- **CPU with native bf16**: measured. A native instruction is necessary but
  not sufficient: small matrices are bound by memory and dispatch, not by the
  dot products, and gain nothing (benchmarks/results/precision.jsonl times the 128-wide
  quickstart and the 512-wide assignment shapes in both dtypes). Models narrower than :data:`MIN_MEASURED_WIDTH` keep float32 without
  a measurement; for the others the caller's own step (a training step, an
  evaluation batch) is timed in both dtypes and bf16 is chosen only when it is
  at least :data:`MIN_SPEEDUP` faster. The decision is cached per machine and
  shape (:func:`cache_path`), so the measurement is paid once.

The cache is a small JSON file; an unreadable or unwritable cache only means
measuring again, never an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_text
from cs336_basics.runtime.devices import CpuInfo, cpu_info

MIN_SPEEDUP = 1.10
"""bf16 must beat float32 by this factor to be chosen: below it the gain is within timing noise and
does not pay for the rounding."""

MIN_MEASURED_WIDTH = 256
"""Narrower models (``d_model``) keep float32 on a CPU without being measured: their matmuls are too small for
bf16's faster dot products to show, and the measurement would cost them more than it could return."""

NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The explicit dtype settings (``auto`` is decided by :func:`choose_dtype`)."""


@dataclass(frozen=True)
class DtypeChoice:
    """What ``auto`` (or an explicit setting) resolved to, and why."""

    dtype: torch.dtype
    reason: str
    """One short clause for the console ("CUDA", "no native bf16 on this CPU", "measured ...")."""
    float32_s: float | None = None
    """Seconds per measured step in float32 (None when nothing was measured)."""
    bfloat16_s: float | None = None
    cached: bool = False
    """The measurement was read from the cache rather than taken now."""

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def record(self) -> dict:
        """The fields written to ``metrics.jsonl``."""
        return {"dtype": self.name, "dtype_reason": self.reason, "dtype_float32_step_s": self.float32_s,
                "dtype_bfloat16_step_s": self.bfloat16_s, "dtype_cached": self.cached}

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


def cache_path() -> Path:
    """``$CS336_CACHE_DIR``, else ``$XDG_CACHE_HOME/cs336_basics``, else ``~/.cache/cs336_basics``; then the file."""
    root = os.environ.get("CS336_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cs336_basics")
    return Path(root) / "dtype_choices.json"


def machine_key(cpu: CpuInfo) -> str:
    """What makes two measurements comparable: the CPU, the cores torch uses, torch's version."""
    return f"{cpu.model}|{torch.get_num_threads()} threads|torch {torch.__version__}"


def shape_key(purpose: str, fields: dict) -> str:
    """A stable key for what was measured (``purpose`` plus the fields that set its cost)."""
    text = json.dumps({"purpose": purpose, **fields}, sort_keys=True, default=str)
    return f"{purpose}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, choice: DtypeChoice) -> None:
    data = _read_cache(path)
    entry = asdict(choice) | {"dtype": choice.name}
    entry.pop("cached")
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except (OSError, UserError):
        pass  # a read-only home directory: the next run measures again


def _from_cache(entry: object) -> DtypeChoice | None:
    if not isinstance(entry, dict) or entry.get("dtype") not in ("float32", "bfloat16"):
        return None
    f32, bf16 = entry.get("float32_s"), entry.get("bfloat16_s")
    if not all(isinstance(v, (int, float)) and v > 0 for v in (f32, bf16)):
        return None
    return DtypeChoice(NAMES[entry["dtype"]], str(entry.get("reason", "measured")), float(f32), float(bf16), True)


def decide_from_timings(float32_s: float, bfloat16_s: float) -> DtypeChoice:
    """bf16 when its step is at least :data:`MIN_SPEEDUP` faster than float32's."""
    ratio = float32_s / bfloat16_s
    if ratio >= MIN_SPEEDUP:
        return DtypeChoice(torch.bfloat16, f"measured {ratio:.2f}x faster than float32", float32_s, bfloat16_s)
    return DtypeChoice(torch.float32, f"bf16 measured {ratio:.2f}x float32's speed, below {MIN_SPEEDUP:.2f}x",
                       float32_s, bfloat16_s)


def explicit_dtype(name: str, device: torch.device, option: str = "train.dtype") -> torch.dtype:
    """The dtype of an explicit setting; float16 is refused off CUDA (it needs a gradient scaler)."""
    if name not in NAMES:
        raise UserError(f"{option} {name!r} is not a dtype; use auto, float32, bfloat16 or float16")
    dtype = NAMES[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise UserError(f"{option}=float16 needs a CUDA device (got {device.type}); use bfloat16 or float32")
    return dtype


def choose_dtype(name: str, device: torch.device, *, measure: Callable[[torch.dtype], float] | None = None,
                 key: str | None = None, d_model: int | None = None, cpu: CpuInfo | None = None,
                 cache: Path | None = None, option: str = "train.dtype") -> DtypeChoice:
    """Resolve a dtype setting for ``device``; see the module docstring for the rule behind ``auto``.

    ``measure(dtype)`` times the caller's own step in that dtype (seconds); it is called only on a
    CPU with native bf16, a model at least :data:`MIN_MEASURED_WIDTH` wide (``d_model``) and a cache
    miss for ``key``. Without ``measure`` such a CPU keeps float32. ``cpu`` and ``cache`` are
    injectable for tests.
    """
    if name != "auto":
        return DtypeChoice(explicit_dtype(name, device, option), "as configured")
    if device.type == "cuda":
        return DtypeChoice(torch.bfloat16, "CUDA")
    if device.type != "cpu":
        return DtypeChoice(torch.float32, f"{device.type}: float32")
    cpu = cpu or cpu_info()
    if not cpu.native_bf16:
        return DtypeChoice(torch.float32, "no native bf16 on this CPU")
    if d_model is not None and d_model < MIN_MEASURED_WIDTH:
        return DtypeChoice(torch.float32, f"native bf16, but d_model {d_model} < {MIN_MEASURED_WIDTH} is too narrow "
                           "to gain")
    if measure is None:
        return DtypeChoice(torch.float32, "native bf16, not measured for this shape")
    cache = cache or cache_path()
    full_key = f"{machine_key(cpu)}|{key or 'unnamed'}"
    hit = _from_cache(_read_cache(cache).get(full_key))
    if hit is not None:
        return hit
    choice = decide_from_timings(measure(torch.float32), measure(torch.bfloat16))
    _write_cache(cache, full_key, choice)
    return choice


def autocast(device: torch.device, dtype: torch.dtype):
    """``torch.autocast`` for ``dtype``, or nothing for float32 (no autocast at all, not a float32 one)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_seconds(model: torch.nn.Module, vocab_size: int, batch: int, context: int, device: torch.device,
                    dtype: torch.dtype, repeats: int = 3) -> float:
    """Median seconds of a no-grad forward pass over ``(batch, context)`` random token ids (one warm-up first)."""
    ids = torch.randint(0, vocab_size, (batch, context), device=device)  # (B, T)
    times = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device, dtype):
            for i in range(repeats + 1):
                start = time.perf_counter()
                model(ids)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return sorted(times)[len(times) // 2]


def choose_inference_dtype(name: str, model: torch.nn.Module, model_cfg, device: torch.device, batch: int,
                           context: int, option: str = "--dtype") -> DtypeChoice:
    """The same rule as training for evaluation and generation, measured on a forward pass of this shape."""
    batch, context = max(1, batch), max(1, min(context, model_cfg.context_length))

    def measure(dtype: torch.dtype) -> float:
        return forward_seconds(model, model_cfg.vocab_size, batch, context, device, dtype)

    key = shape_key("forward", {"model": dataclasses.asdict(model_cfg), "batch": batch, "context": context,
                                "device": str(device)})
    return choose_dtype(name, device, measure=measure, key=key, d_model=model_cfg.d_model, option=option)
