"""Adapters shared by both course versions, and the weight-mapping helpers they use.

Weight mapping: the course stores attention as separate ``q_proj``/``k_proj``/
``v_proj`` matrices (each ``(d_model, d_model)``, heads stacked by rows); the
library keeps one fused ``qkv_proj`` of shape ``(3 d_model, d_model)`` with the
same row order, so the mapping is a concatenation (:func:`fuse_qkv`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import IO, Any, BinaryIO

import numpy.typing as npt
import torch
from torch import Tensor, nn

from cs336_basics.model import ModelConfig, softmax
from cs336_basics.runs.checkpoint import load_checkpoint, save_checkpoint
from cs336_basics.tokenizer import Tokenizer, train_bpe
from cs336_basics.training import AdamW, clip_grad_norm, cross_entropy, get_batch, lr_cosine_schedule

QKV = ("q_proj", "k_proj", "v_proj")


def fuse_qkv(weights: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Rename course keys to library keys: ``{prefix}attn.{q,k,v}_proj.weight`` -> ``{prefix}attn.qkv_proj.weight``."""
    out = {k: v for k, v in weights.items() if not any(f"attn.{name}.weight" in k for name in QKV)}
    prefixes = {k[: k.index("attn.q_proj.weight")] for k in weights if k.endswith("attn.q_proj.weight")}
    for p in prefixes:
        out[f"{p}attn.qkv_proj.weight"] = torch.cat([weights[f"{p}attn.{name}.weight"] for name in QKV], dim=0)
    return {f"{prefix}{k}": v for k, v in out.items()}


def load_exact(module: nn.Module, weights: Mapping[str, Tensor]) -> nn.Module:
    """Load ``weights`` into ``module`` strictly (every key must match, no re-initialisation)."""
    module.load_state_dict({k: v.detach() for k, v in weights.items()}, strict=True)
    return module


def model_config(**fields: Any) -> ModelConfig:
    """A ModelConfig for an adapter: the reference attention kernel (the course's oracle is ours, not SDPA)."""
    return ModelConfig(attention="reference", **fields)


# ----------------------------------------------------------------------------- shared adapters


def run_softmax(in_features: Tensor, dim: int) -> Tensor:
    return softmax(in_features, dim=dim)


def run_cross_entropy(inputs: Tensor, targets: Tensor) -> Tensor:
    return cross_entropy(inputs, targets)


def run_gradient_clipping(parameters: Iterable[nn.Parameter], max_l2_norm: float) -> None:
    clip_grad_norm(parameters, max_l2_norm)


def get_adamw_cls() -> type[torch.optim.Optimizer]:
    return AdamW


def run_get_lr_cosine_schedule(it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int,
                               cosine_cycle_iters: int) -> float:
    return lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


def run_get_batch(dataset: npt.NDArray, batch_size: int, context_length: int, device: str) -> tuple[Tensor, Tensor]:
    return get_batch(dataset, batch_size, context_length, device)


def run_save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, iteration: int,
                        out: str | os.PathLike | BinaryIO | IO[bytes]) -> None:
    save_checkpoint(model, optimizer, iteration, out)


def run_load_checkpoint(src: str | os.PathLike | BinaryIO | IO[bytes], model: nn.Module,
                        optimizer: torch.optim.Optimizer) -> int:
    return load_checkpoint(src, model, optimizer)


def get_tokenizer(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                  special_tokens: list[str] | None = None) -> Tokenizer:
    return Tokenizer(vocab, merges, special_tokens)


def run_train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str],
                  **kwargs: Any) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    return train_bpe(input_path, vocab_size, special_tokens, **kwargs)


__all__ = [
    "run_softmax", "run_cross_entropy", "run_gradient_clipping", "get_adamw_cls", "run_get_lr_cosine_schedule",
    "run_get_batch", "run_save_checkpoint", "run_load_checkpoint", "get_tokenizer", "run_train_bpe",
]
