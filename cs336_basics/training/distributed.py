"""DistributedDataParallel under ``torchrun``: process-group setup, rank info, reductions.

No home-made engine: ``torchrun --nproc_per_node=N -m cs336_basics train ...``
sets RANK/WORLD_SIZE/LOCAL_RANK and the loop wraps the model in
``torch.nn.parallel.DistributedDataParallel``. NCCL on CUDA, gloo elsewhere (so
the whole path is testable on CPU). Only rank 0 logs, evaluates and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_group_backend(device_type: str) -> str:
    """NCCL for CUDA tensors (GPU-to-GPU collectives), gloo for everything else (CPU tensors)."""
    return "nccl" if device_type == "cuda" else "gloo"


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) under multi-process CUDA, else ``device``."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def init_distributed(device_type: str, *, force: bool = False) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process unless ``force``).

    ``force`` joins even at world size 1 (RANK/WORLD_SIZE default to 0/1; MASTER_ADDR/MASTER_PORT
    must be set), which checks that the backend initialises on this machine.
    """
    world = env_world_size()
    if world <= 1 and not force:
        return DistInfo()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=process_group_backend(device_type), rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def shutdown_distributed(info: DistInfo, *, force: bool = False) -> None:
    """Leave the process group (``force``: also one joined at world size 1)."""
    if (info.enabled or force) and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (returned as a new tensor; identity for one process)."""
    if not info.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (identity for one process)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def min_over_ranks(value: int, info: DistInfo, device: torch.device) -> int:
    """The smallest ``value`` of all ranks, on every rank (identity for one process): one plan for all of them."""
    if not info.enabled:
        return value
    tensor = torch.tensor([float(value)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())
