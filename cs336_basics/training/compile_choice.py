"""``train.compile``: whether the run wraps its model in ``torch.compile``, and why.

``true`` and ``false`` are obeyed. ``auto`` (the default) decides per device:

- **CPU and MPS: eager.** On the CPU the eager step runs this package's C kernels for
  RMSNorm, the SwiGLU gate, RoPE, the loss and AdamW (one pass over memory each), which
  is what TorchInductor's fusion would buy; ``benchmarks/bench_train.py`` records the
  compiled step against the eager one (``ours-compile=true`` beside ``ours-default``), and
  compiling costs its start-up time on top. MPS support in Inductor is incomplete.
- **CUDA: compiled when the run is long enough to repay the compilation**, i.e. at least
  :data:`CUDA_MIN_STEPS` planned steps. Compiling costs a fixed start-up time and saves a
  fraction of every step, so only a long enough run gets its start-up back. The threshold
  is an estimate, not a measurement of this code on a GPU (none was available to measure
  it); ``benchmarks/gpu_check.py`` times the compiled step where one is.

The decision is written to the run's first ``metrics.jsonl`` record (``compile``,
``compile_reason``) and printed with the dtype, as the dtype decision is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CUDA_MIN_STEPS = 2000
"""``auto`` compiles a CUDA run of at least this many planned optimizer steps."""


@dataclass(frozen=True)
class CompileChoice:
    """What ``train.compile`` resolved to, and why."""

    compiled: bool
    reason: str
    """One short clause for the console and metrics.jsonl."""

    def record(self) -> dict:
        """The fields written to ``metrics.jsonl``."""
        return {"compile": self.compiled, "compile_reason": self.reason}

    def describe(self) -> str:
        return f"{'compiled' if self.compiled else 'eager'} ({self.reason})"


def choose_compile(setting: bool | str, device: torch.device, planned_steps: int) -> CompileChoice:
    """Resolve ``train.compile`` (``True``, ``False`` or ``"auto"``) for a run of ``planned_steps`` on ``device``."""
    if setting is True or setting is False:
        return CompileChoice(setting, "train.compile=" + str(setting).lower())
    if device.type != "cuda":
        return CompileChoice(False, f"auto: {device.type} runs eager, with its C kernels" if device.type == "cpu"
                             else f"auto: {device.type} runs eager")
    if planned_steps >= CUDA_MIN_STEPS:
        return CompileChoice(True, f"auto: CUDA, {planned_steps:,} planned steps >= {CUDA_MIN_STEPS:,}")
    return CompileChoice(False, f"auto: CUDA, {planned_steps:,} planned steps < {CUDA_MIN_STEPS:,} repay no compile")
