"""Will a training run fit in memory? An estimate from the config alone, checked before the run directory exists.

A model too wide, a batch too large or a context too long otherwise fails minutes
later, deep inside an allocation, after the run directory was written. The
estimate adds, in bytes:

- **parameters** and their **gradients**: 4 bytes each (float32 master weights,
  whatever the autocast dtype), counted by :mod:`cs336_basics.config.accounting`;
- **optimizer state**: AdamW's two moments per parameter (Muon keeps one buffer
  for the blocks' matrices instead);
- the larger of two peaks. Training: the activations backward keeps for one
  micro-batch (the handout's itemisation,
  :func:`~cs336_basics.config.accounting.activation_elements`, with the ``(B, H, T, T)``
  attention scores once, and only where they are materialised: the reference
  kernel keeps its softmax output alone, SDPA none without dropout), one more
  layer's worth for the gradients backward holds in flight, and the batch
  buffers (window indices and ids, int64). Evaluation (without gradients,
  tensors are freed as soon as they are used): the larger of a batch's logits
  and a layer's largest tensors alive at once.

The estimate is what the run needs *at least*, so that a refused run could not
have run: activations count 2 bytes wherever the autocast may be half precision
(:mod:`cs336_basics.runtime.precision`: CUDA, or a CPU model at least
``MIN_MEASURED_WIDTH`` wide), and PyTorch keeps more than the itemised list
(rotated queries and keys, contiguous head splits, norm statistics). Checked
against the peak resident memory of two float32 training steps on a CPU over
seven shapes (d_model 64-512, context 64-512, d_ff up to 65,536, both attention
kernels, dropout, GELU with learned positions and LayerNorm): the peak was
1.05-2.1x the estimate; evaluation alone over three (a wide FFN, a large
vocabulary, the reference kernel) 1.1-1.45x. A run close to the limit that
passes may still run out; :func:`out_of_memory_is_user_error` turns that into
the same kind of one-line error.

It is compared with what the device can still give: ``torch.cuda.mem_get_info``
on CUDA; on a CPU the smallest of the RAM available (``MemAvailable``), the
address-space limit (``RLIMIT_AS``, ``ulimit -v``) less what the process already
maps, and the memory cgroup's limit less its anonymous memory (page cache is
reclaimable, so it does not count as used). Other devices (MPS) are not checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from cs336_basics.config.accounting import activation_elements, count_parameters
from cs336_basics.config.variants import FFN, attention_kernel
from cs336_basics.errors import UserError
from cs336_basics.runtime.precision import MIN_MEASURED_WIDTH

try:  # Unix only: the address-space limit
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

FLOAT_BYTES = 4
HALF_BYTES = 2
ID_BYTES = 8
BATCH_COPIES = 3
"""int64 (B, T+1) arrays a batch passes through: the window indices, the gathered ids, their tensor."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs at least at its peak, by part (see the module docstring)."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int
    batch: int
    evaluation: int

    @property
    def state(self) -> int:
        """Parameters, gradients and optimizer state: what the model's size decides."""
        return self.parameters + self.gradients + self.optimizer

    @property
    def total(self) -> int:
        return self.state + max(self.activations + self.batch, self.evaluation)


def _scores_materialised(model_cfg, device_type: str) -> bool:
    return attention_kernel(model_cfg.attention, device_type) == "reference" or model_cfg.attn_pdrop > 0


def _half_autocast_possible(cfg, device_type: str) -> bool:
    """Whether the run may compute in 16 bits (``train.dtype`` explicit, or ``auto`` where it can choose bf16)."""
    dtype = cfg.train.dtype
    if dtype == "auto":
        return device_type == "cuda" or (device_type == "cpu" and cfg.model.d_model >= MIN_MEASURED_WIDTH)
    return dtype != "float32"


def _activations(cfg, batch: int, device_type: str) -> tuple[int, int]:
    """(all layers and the logits, one layer) activation elements a micro-batch of ``batch`` keeps for backward."""
    model = cfg.model
    acts = activation_elements(model, batch, model.context_length)
    scores = acts["layers.scores_and_softmax"]
    scores_kept = scores // 2 if _scores_materialised(model, device_type) else 0  # the softmax output alone
    layers = sum(v for k, v in acts.items() if k.startswith("layers.")) - scores + scores_kept
    return acts["total"] - scores + scores_kept, layers // model.num_layers


def _evaluation_layer(cfg, device_type: str) -> int:
    """The largest tensors alive at once inside a layer without gradients, for one evaluation batch: the FFN's
    hidden activation and its input (a token's share of the experts for MoE), or the attention scores."""
    model = cfg.model
    tokens = cfg.train.eval_batch_size * model.context_length
    ffn = 2 * tokens * model.resolved_d_ff
    if FFN[model.ffn].experts:
        ffn = ffn * model.moe_top_k // model.num_experts
    T = model.context_length
    scores = cfg.train.eval_batch_size * model.num_heads * T * T if _scores_materialised(model, device_type) else 0
    return max(ffn, scores)


def estimate_training_memory(cfg, device_type: str = "cpu") -> MemoryEstimate:
    """The memory training ``cfg`` (a RunConfig with ``model.vocab_size`` set) needs at least on one device."""
    model = cfg.model
    t = cfg.train
    counts = count_parameters(model)
    params = counts["total"]
    # Muon: one momentum buffer for the blocks' matrices, AdamW's two moments for the rest
    moments = 2 * params if cfg.optimizer.name == "adamw" else 2 * params - counts["attention"] - counts["ffn"]
    micro = t.batch_size // t.grad_accum_steps
    act_bytes = HALF_BYTES if _half_autocast_possible(cfg, device_type) else FLOAT_BYTES
    train_all, train_layer = _activations(cfg, micro, device_type)
    eval_logits = t.eval_batch_size * model.context_length * model.require_vocab_size()
    return MemoryEstimate(parameters=params * FLOAT_BYTES, gradients=params * FLOAT_BYTES,
                          optimizer=moments * FLOAT_BYTES, activations=(train_all + train_layer) * act_bytes,
                          batch=BATCH_COPIES * micro * (model.context_length + 1) * ID_BYTES,
                          evaluation=max(eval_logits, _evaluation_layer(cfg, device_type)) * act_bytes)


# ----------------------------------------------------------------------------- what is available


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: Path, names: tuple[str, ...]) -> int | None:
    """The first of ``names`` found in a cgroup ``memory.stat`` file."""
    try:
        fields = dict(line.split()[:2] for line in path.read_text().splitlines() if len(line.split()) >= 2)
    except OSError:
        return None
    for name in names:
        if name in fields and fields[name].isdigit():
            return int(fields[name])
    return None


def ram_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (what new allocations can get without swapping), in bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def address_space_left() -> int | None:
    """``RLIMIT_AS`` (``ulimit -v``) less the address space this process maps already; None without a limit."""
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(soft - mapped, 0)


def _cgroup_paths() -> list[tuple[Path, str, str, tuple[str, ...]]]:
    """(controller mount, this process's cgroup under it, limit file, memory.stat fields of used memory):
    cgroup v2, then v1."""
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            own["v2" if controllers == "" else controllers] = path.strip("/")
    except (OSError, ValueError):
        pass
    root = Path("/sys/fs/cgroup")
    v1 = next((p for c, p in own.items() if "memory" in c.split(",")), "")
    return [(root, own.get("v2", ""), "memory.max", ("anon",)),
            (root / "memory", v1, "memory.limit_in_bytes", ("total_rss", "rss"))]


def cgroup_left() -> int | None:
    """The tightest memory-cgroup limit over this process's cgroup and its ancestors, less the anonymous memory
    charged there (v2 ``memory.max``, v1 ``memory.limit_in_bytes``); None when no cgroup limits memory."""
    best = None
    for mount, own, limit_file, used_fields in _cgroup_paths():
        folder = mount / own
        while True:
            limit = _read_int(folder / limit_file)  # v2 spells "no limit" as "max", which is not an int
            if limit is not None and limit < 2**62:  # v1 spells it as a huge number
                left = max(limit - (_stat_field(folder / "memory.stat", used_fields) or 0), 0)
                best = left if best is None else min(best, left)
            if folder == mount or folder == folder.parent:
                break
            folder = folder.parent
    return best


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """The bytes a new allocation on ``device`` can still get, and what limits them; None where unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    if device.type != "cpu":
        return None
    found = [(value, what) for value, what in ((ram_available(), "RAM available"),
                                               (address_space_left(), "address space left under ulimit -v"),
                                               (cgroup_left(), "left under the cgroup memory limit"))
             if value is not None]
    return min(found) if found else None


# ----------------------------------------------------------------------------- the check


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _advice(cfg, est: MemoryEstimate, device_type: str) -> str:
    """The setting to change: the model's size when its state dominates, else the batch or the context."""
    if est.state >= max(est.activations + est.batch, est.evaluation):
        counts = count_parameters(cfg.model)
        big = max(("token_embeddings", "lm_head", "attention", "ffn"), key=lambda k: counts[k])
        knob = {"token_embeddings": "model.vocab_size or model.d_model", "lm_head": "model.vocab_size or model.d_model",
                "attention": "model.d_model or model.num_layers",
                "ffn": "model.d_ff, model.d_model or model.num_layers"}[big]
        return f"use a smaller model (lower {knob})"
    if est.evaluation > est.activations + est.batch:
        return "lower train.eval_batch_size"
    acts = activation_elements(cfg.model, cfg.train.batch_size // cfg.train.grad_accum_steps)
    if not _scores_materialised(cfg.model, device_type):
        acts.pop("layers.scores_and_softmax")
    largest = max((k for k in acts if k != "total"), key=acts.__getitem__)
    also = {"layers.ffn": " or model.d_ff", "logits_and_cross_entropy": " or model.vocab_size",
            "layers.scores_and_softmax": " (or set model.attention=sdpa, which keeps no attention scores)"}
    return ("lower train.batch_size (or raise train.grad_accum_steps, which splits each batch), "
            f"model.context_length{also.get(largest, '')}")


def check_fits(cfg, device: torch.device, available: tuple[int, str] | None = None) -> MemoryEstimate:
    """A UserError, with the numbers and the setting to change, when training ``cfg`` on ``device`` needs more
    memory than it has (``available`` defaults to :func:`available_memory`). Returns the estimate."""
    est = estimate_training_memory(cfg, device.type)
    available = available_memory(device) if available is None else available
    if available is None or est.total <= available[0]:
        return est
    micro = cfg.train.batch_size // cfg.train.grad_accum_steps
    raise UserError(
        f"this run needs at least {_gb(est.total)} of memory but only {_gb(available[0])} is {available[1]}: "
        f"parameters, gradients and optimizer state {_gb(est.state)}, "
        f"activations {_gb(est.activations + est.batch)} for a micro-batch of {micro:,} x "
        f"{cfg.model.context_length:,} tokens, evaluation {_gb(est.evaluation)}; {_advice(cfg, est, device.type)}")


def _is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failure: Python's or NumPy's MemoryError, CUDA's OutOfMemoryError, the CPU allocator's error."""
    return (isinstance(exc, (MemoryError, torch.OutOfMemoryError))
            or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)))


@contextmanager
def out_of_memory_is_user_error(cfg, device: str | torch.device) -> Iterator[None]:
    """Turn an allocation failure inside the block (a run that passed :func:`check_fits` but needs more than its
    lower bound) into a one-line error with the estimate and the setting to change."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        device = torch.device(device)
        est = estimate_training_memory(cfg, device.type)
        raise UserError(f"training ran out of memory on {device} (this run needs at least {_gb(est.total)}, "
                        f"more in practice); {_advice(cfg, est, device.type)}") from exc
