"""Where and in what precision a run executes: device auto-detection, autocast dtype, FLOP accounting for MFU.

- device ``auto``: CUDA, else Apple MPS, else CPU (:func:`cs336_basics.runtime.devices.resolve_device`).
- dtype ``auto``: bfloat16 autocast on CUDA and on CPUs where bf16 is native and
  measured faster (:mod:`cs336_basics.runtime.precision`; parameters and optimizer state
  stay float32), float32 elsewhere. On CUDA, TF32 matmuls are enabled too: a
  float32 run then gets tensor-core speed at ~1e-3 relative precision, the
  usual trade for training.
- MFU (Chowdhery et al. 2022, PaLM appendix B): model FLOPs per token
  ``6 N + 12 L d T`` (N = parameters in matmuls including the LM head, the 12LdT
  term is attention's QK^T and AV forward+backward) times tokens/s over the
  device's peak. The peak is ``train.peak_tflops`` when set, else a table of
  dense bf16 peaks of common GPUs; unknown devices get no MFU rather than a guess.
- CPU runs on Linux ask glibc's allocator to keep freed memory for reuse
  (:func:`cs336_basics.runtime.allocator.keep_freed_cpu_memory`): without it each step
  page-faults its activations in again.
"""

from __future__ import annotations

import torch

from cs336_basics.runtime.allocator import keep_freed_cpu_memory
from cs336_basics.runtime.precision import choose_dtype

# dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets
_BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "H100 PCIe": 756.0, "A100": 312.0, "L40S": 362.0, "L40": 181.0,
                     "A10G": 125.0, "L4": 121.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for a setting without a measurement (float32 means no autocast).

    A run resolves ``auto`` with :func:`cs336_basics.training.step.choose_training_dtype`,
    which may time its own step in both dtypes on a CPU with native bf16.
    """
    return choose_dtype(name, device).dtype


def configure_backends(device: torch.device) -> None:
    if device.type == "cpu":
        keep_freed_cpu_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def table_peak_flops(device_name: str, dtype: torch.dtype) -> float | None:
    """A known GPU's dense bf16/fp16 peak FLOP/s for a device name (``torch.cuda.get_device_name``), else None.

    The longest table key contained in the name wins, so "H100 PCIe" is not read as the SXM "H100"
    and "L40S" not as "L4"; float32 runs get None (their peak is a different, TF32 figure).
    """
    if dtype not in (torch.bfloat16, torch.float16):
        return None
    matches = [key for key in _BF16_PEAK_TFLOPS if key in device_name]
    if not matches:
        return None
    return _BF16_PEAK_TFLOPS[max(matches, key=len)] * 1e12


def peak_flops(device: torch.device, dtype: torch.dtype, configured_tflops: float | None,
               device_name: str | None = None) -> float | None:
    """Peak FLOP/s for MFU: the configured value, else a known GPU's bf16 peak, else None.

    ``device_name`` defaults to the CUDA device's name (tests pass one in).
    """
    if configured_tflops:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    return table_peak_flops(device_name if device_name is not None else torch.cuda.get_device_name(device), dtype)
