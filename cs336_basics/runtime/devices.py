"""What this machine can run: CPU model and vector features, torch's build, the devices it sees.

Used by ``cs336 doctor``, by every command that picks a device
(:func:`resolve_device`: ``auto`` is CUDA, else Apple MPS, else the CPU) and by
the choices that depend on the hardware (the autocast dtype on CPU). Every probe is cheap and never fails: an unreadable
``/proc/cpuinfo`` or a missing ``sysctl`` gives empty answers, not errors.

CPU features come from ``/proc/cpuinfo`` on Linux (the kernel's names:
``avx512_bf16``, ``amx_bf16``) and ``sysctl`` on macOS; torch's own
``get_cpu_capability()`` says which of its kernels it dispatches to.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from cs336_basics.errors import UserError

# the features that matter to us, by the names Linux uses, with what each one buys
RELEVANT_CPU_FEATURES = {
    "avx2": "256-bit vectors (torch's AVX2 kernels)",
    "avx512f": "512-bit vectors",
    "avx512_bf16": "native bf16 dot products (bf16 matmul ~2x float32)",
    "amx_bf16": "AMX tiles for bf16 matmul",
    "amx_tile": "AMX tile registers",
}


@dataclass(frozen=True)
class CpuInfo:
    model: str
    logical_cores: int
    usable_cores: int
    """Cores this process may run on (the affinity mask; containers often restrict it)."""
    flags: frozenset[str] = field(default_factory=frozenset)

    def has(self, feature: str) -> bool:
        return feature in self.flags

    @property
    def native_bf16(self) -> bool:
        """The CPU computes bf16 dot products in hardware (AVX512-BF16, AMX or Arm's BF16), rather than emulating them."""
        return self.has("avx512_bf16") or self.has("amx_bf16") or self.has("bf16")


def _linux_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86 / Arm
            flags = frozenset(value.split())
    return model, flags


def _macos_cpuinfo() -> tuple[str, frozenset[str]]:
    def sysctl(name: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    flags = {"neon"} if platform.machine() == "arm64" else set()
    if sysctl("hw.optional.arm.FEAT_BF16") == "1":
        flags.add("bf16")
    return sysctl("machdep.cpu.brand_string"), frozenset(flags)


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    model, flags = "", frozenset()
    if os.path.exists("/proc/cpuinfo"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                model, flags = _linux_cpuinfo(fh.read())
        except OSError:
            pass
    elif platform.system() == "Darwin":
        model, flags = _macos_cpuinfo()
    logical = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return CpuInfo(model or platform.processor() or platform.machine(), logical, usable, flags)


def torch_summary() -> dict[str, str]:
    """torch's version, build, dispatch level, threads and the accelerators it sees."""
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    if getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip}"
    devices = ["cpu"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.0f} GiB, "
                           f"compute capability {props.major}.{props.minor})")
    if mps_available():
        devices.append("mps (Apple GPU)")
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return {"version": torch.__version__, "build": build, "cpu kernels": capability,
            "threads": str(torch.get_num_threads()), "devices": "; ".join(devices)}


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """The torch device for a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    ``option`` is how the user spelled the setting (``train.device``, ``--device``), for the error.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"{option} {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} is cuda but this torch build sees no CUDA GPU; use {option} auto or cpu")
    if device.type == "mps" and not mps_available():
        raise UserError(f"{option} is mps but MPS is not available here; use {option} auto or cpu")
    return device
