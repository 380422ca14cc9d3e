"""Every branch only a GPU takes, run on the CPU with the device decision injected.

The code paths below are the ones a CUDA run goes through and a CPU run never
does: the autocast dtype, TF32 flags, pinned-memory batch copies, the MFU peak
table, the NCCL process group, DDP's device ids, the fused attention kernel,
device auto-detection, CUDA RNG state in checkpoints, the float16 grad scaler
and the optimizer's multi-tensor default. Each test passes the device (or its name) in, or stubs
the one ``torch.cuda`` call that would need a GPU, so a typo in a CUDA branch
fails here instead of minutes into the first GPU run.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cs336_basics.config import ModelConfig
from cs336_basics.config.variants import attention_kernel
from cs336_basics.errors import UserError
from cs336_basics.model import TransformerLM
from cs336_basics.model.attention import ReferenceAttention, SDPAAttention
from cs336_basics.runtime.devices import resolve_device
from cs336_basics.runtime.precision import autocast, choose_dtype
from cs336_basics.training import distributed, placement, rng
from cs336_basics.training.data import batch_to_device, windows_to_batch
from cs336_basics.training.distributed import DistInfo, process_group_backend, rank_device
from cs336_basics.training.optimizer import use_foreach
from cs336_basics.training.step import TrainingParts

CUDA = torch.device("cuda")


# ----------------------------------------------------------------------------- precision


def test_auto_dtype_on_cuda_is_bf16_and_autocast_targets_cuda():
    choice = choose_dtype("auto", CUDA)
    assert choice.dtype == torch.bfloat16 and choice.reason == "CUDA"
    assert choose_dtype("float16", CUDA).dtype == torch.float16  # allowed only there
    with pytest.raises(UserError, match="float16 needs a CUDA device"):
        choose_dtype("float16", torch.device("cpu"))
    with pytest.warns(UserWarning, match="CUDA"):  # this machine has no GPU: torch disables it, but builds it
        ctx = autocast(CUDA, torch.bfloat16)
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16


def test_configure_backends_turns_tf32_on_for_cuda_only():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        placement.configure_backends(torch.device("cpu"))
        assert torch.backends.cuda.matmul.allow_tf32 is False
        placement.configure_backends(CUDA)
        assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


# ----------------------------------------------------------------------------- batches


class _CopyLog:
    """Stands in for ``Tensor.pin_memory`` and ``Tensor.to`` (which need a GPU for CUDA) and records the calls."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple] = []
        log = self.calls

        def pin_memory(tensor):
            log.append(("pin_memory",))
            return tensor

        def to(tensor, device, non_blocking=False):
            log.append(("to", torch.device(device), non_blocking))
            return tensor

        monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
        monkeypatch.setattr(torch.Tensor, "to", to)


def test_cuda_batches_are_pinned_and_copied_without_blocking(monkeypatch):
    log = _CopyLog(monkeypatch)
    block = torch.arange(12).reshape(3, 4)
    assert batch_to_device(block, "cuda:1") is block
    assert log.calls == [("pin_memory",), ("to", torch.device("cuda", 1), True)]
    log.calls.clear()
    batch_to_device(block, CUDA, pin=False)  # pageable memory: the copy must block
    assert log.calls == [("to", CUDA, False)]


def test_windows_go_through_the_same_copy(monkeypatch):
    import numpy as np

    log = _CopyLog(monkeypatch)
    x, y = windows_to_batch(np.arange(100), np.array([0, 10]), 5, CUDA)
    assert log.calls == [("pin_memory",), ("to", CUDA, True)]
    assert x.tolist() == [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]] and y[0].tolist() == [1, 2, 3, 4, 5]


def test_cpu_batches_are_not_copied_and_other_devices_are_not_pinned():
    block = torch.arange(6).reshape(2, 3)
    assert batch_to_device(block, "cpu") is block
    moved = batch_to_device(block, "meta")  # a real non-CPU device without a GPU: no pinning, blocking copy
    assert moved.device.type == "meta" and moved.shape == block.shape


# ----------------------------------------------------------------------------- MFU


@pytest.mark.parametrize("name,tflops", [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA L40S", 362.0),
    ("NVIDIA L40", 181.0),
    ("NVIDIA L4", 121.0),
    ("NVIDIA GeForce RTX 4090", 165.0),
    ("Tesla T4", None),
])
def test_peak_table_reads_device_names(name, tflops):
    expected = tflops * 1e12 if tflops else None
    assert placement.table_peak_flops(name, torch.bfloat16) == expected
    assert placement.peak_flops(CUDA, torch.bfloat16, None, device_name=name) == expected


def test_peak_flops_rules(monkeypatch):
    assert placement.table_peak_flops("NVIDIA H100 80GB HBM3", torch.float32) is None  # no bf16 peak for float32
    assert placement.peak_flops(torch.device("cpu"), torch.bfloat16, None) is None
    assert placement.peak_flops(torch.device("cpu"), torch.float32, 2.5) == 2.5e12  # configured wins everywhere
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: asked.append(device) or "NVIDIA A100-PCIE-40GB")
    assert placement.peak_flops(CUDA, torch.bfloat16, None) == 312e12
    assert asked == [CUDA]


# ----------------------------------------------------------------------------- distributed


def test_backend_and_rank_device():
    assert process_group_backend("cuda") == "nccl"
    assert process_group_backend("cpu") == "gloo"
    two = DistInfo(rank=1, world_size=2, local_rank=1)
    assert rank_device(CUDA, two) == torch.device("cuda", 1)
    assert rank_device(CUDA, DistInfo()) == CUDA
    assert rank_device(torch.device("cpu"), two) == torch.device("cpu")


def test_init_distributed_on_cuda_pins_the_rank_gpu_and_uses_nccl(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    info = distributed.init_distributed("cuda")
    assert info == DistInfo(rank=1, world_size=2, local_rank=1)
    assert calls == [("set_device", 1), ("init", {"backend": "nccl", "rank": 1, "world_size": 2})]
    calls.clear()
    distributed.init_distributed("cpu")
    assert calls == [("init", {"backend": "gloo", "rank": 1, "world_size": 2})]


def test_ddp_wraps_with_the_rank_gpu_as_device_id(monkeypatch):
    wrapped = []

    def ddp(model, device_ids=None):
        wrapped.append(device_ids)
        return model

    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", ddp)
    parts = TrainingParts(model=nn.Linear(2, 2), optimizer=None, schedule=None, sampler=None, dtype=torch.float32,
                          dtype_choice=None)
    two = DistInfo(rank=1, world_size=2, local_rank=1)
    parts.wrap(False, two, torch.device("cuda", 1))
    parts.wrap(False, two, torch.device("cpu"))
    parts.wrap(False, DistInfo(), torch.device("cuda", 0))  # one process: no DDP at all
    assert wrapped == [[1], None]


# ----------------------------------------------------------------------------- model and devices


def test_auto_attention_is_the_fused_kernel_on_cuda():
    assert attention_kernel("auto", "cuda") == "sdpa"
    assert attention_kernel("auto", "mps") == "reference"
    assert attention_kernel("reference", "cuda") == "reference"
    cfg = ModelConfig(vocab_size=32, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    on_cuda = TransformerLM(cfg, attention_device=CUDA)  # built on the CPU for a CUDA run, as training does
    assert isinstance(on_cuda.layers[0].attn.kernel, SDPAAttention)
    on_mps = TransformerLM(cfg, attention_device=torch.device("mps"))
    assert isinstance(on_mps.layers[0].attn.kernel, ReferenceAttention)


def test_auto_device_is_cuda_when_a_gpu_is_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="sees no CUDA GPU"):
        resolve_device("cuda", "--device")


def test_checkpoints_carry_the_cuda_rng_state(monkeypatch):
    restored = []
    fake = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = rng.rng_state()
    assert state["cuda"] is fake
    rng.set_rng_state(state)
    assert restored == [fake]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # a different GPU count: the CUDA part is skipped
    rng.set_rng_state(state)
    assert restored == [fake]


def test_adamw_is_multi_tensor_on_cuda_by_default():
    assert use_foreach(None, "cuda") is True
    assert use_foreach(False, "cuda") is False


def test_float16_runs_build_a_grad_scaler_and_step_through_it(monkeypatch):
    """float16 exists only on CUDA; its step (scale, unscale, scaler.step, update) runs here, the choice injected."""
    import numpy as np

    from cs336_basics.config import RunConfig, apply_overrides
    from cs336_basics.runtime.precision import DtypeChoice
    from cs336_basics.training import step as step_module

    monkeypatch.setattr(step_module, "choose_training_dtype",
                        lambda *args, **kwargs: DtypeChoice(torch.float16, "as configured"))
    cfg = apply_overrides(RunConfig(), ["model.vocab_size=64", "model.context_length=16", "model.d_model=32",
                                        "model.num_layers=1", "model.num_heads=2", "model.d_ff=64",
                                        "train.batch_size=4", "train.device=cpu"])
    tokens = np.random.default_rng(0).integers(0, 64, size=2_000).astype(np.uint16)
    with pytest.warns(UserWarning):  # no CUDA here: the scaler is built, then disabled by torch
        parts = step_module.build_training_parts(cfg, tokens, torch.device("cpu"), total_steps=2)
    assert isinstance(parts.scaler, torch.amp.GradScaler) and parts.dtype == torch.float16
    before = [p.detach().clone() for p in parts.model.parameters()]
    train_step = step_module.TrainStep(parts, torch.device("cpu"), 1, 1.0)
    results = [train_step(i) for i in range(2)]  # step 0 of the warmup has lr 0; step 1 moves the weights
    assert all(r.finite for r in results)
    assert any(not torch.equal(a, b) for a, b in zip(before, parts.model.parameters()))
