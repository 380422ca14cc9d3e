"""DistributedDataParallel on CPU (gloo, 2 processes) gives the losses of one process with the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from tests.training_fixtures import make_byte_dataset, tiny_config, train_losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, runs: str, overrides: list[str]) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "CS336_NO_PROGRESS": "1"})
    torch.set_num_threads(1)
    from cs336_basics.training.loop import train

    train(tiny_config(Path(data), Path(runs), *overrides))


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    import torch.multiprocessing as mp

    data = make_byte_dataset(tmp_path / "data")
    common = ["train.total_steps=8", "train.eval_interval=4", "train.checkpoint_interval=4"]
    torch.set_num_threads(1)
    from cs336_basics.training.loop import train

    single = train(tiny_config(data, tmp_path, "train.run_name=single", "train.batch_size=8", *common))
    # per-process batch 4 x 2 ranks = the same global batch of 8, with gradient accumulation on top
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(tmp_path),
                            ["train.run_name=ddp", "train.batch_size=4", "train.grad_accum_steps=2", *common]),
             nprocs=2, join=True)
    expected, got = train_losses(single.run_dir), train_losses(tmp_path / "ddp")
    assert expected.keys() == got.keys() and len(got) == 8
    for step in expected:
        assert abs(expected[step] - got[step]) < 1e-5, (step, expected[step], got[step])
    ddp_end = [line for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines() if '"end"' in line]
    assert len(ddp_end) == 1  # only rank 0 wrote
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == \
        ["best.pt", "latest.pt", "step_0000004.pt", "step_0000008.pt"]
