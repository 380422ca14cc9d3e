"""AdamW's multi-tensor (``torch._foreach_*``) path against its per-tensor loop: same updates, same state dict."""

from __future__ import annotations

import pytest
import torch

from cs336_basics.config import OptimizerConfig, load_config
from cs336_basics.training.optimizer import (
    AdamW,
    build_optimizer,
    chunk_indices,
    default_chunk_bytes,
    use_foreach,
)

SHAPES = [(7,), (33, 5), (64, 64), (3, 4, 5), (1,), (300, 17)]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in SHAPES]


def _groups(params, wd: float) -> list[dict]:
    """Two groups with different hyperparameters, so a path that mixed them up would show."""
    return [{"params": params[:3], "weight_decay": wd},
            {"params": params[3:], "weight_decay": 0.0, "lr": 2e-3, "betas": (0.8, 0.99), "eps": 1e-6}]


def _run(opt: AdamW, params, steps: int, start: int = 0, skip_every: int = 0) -> None:
    """``steps`` updates with gradients that depend only on the step (and on the parameters, like real ones)."""
    for i in range(start, start + steps):
        gen = torch.Generator().manual_seed(1000 + i)
        for j, p in enumerate(params):
            if skip_every and j == 1 and i % skip_every == 0:
                p.grad = None  # this tensor misses the step: its step count and bias corrections fall behind
                continue
            p.grad = torch.randn(p.shape, generator=gen) * (1 + j) + 0.1 * p.detach()
        opt.step()


def _assert_same(a, b) -> None:
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("chunk_bytes", [0, 64, 2**20])
def test_foreach_matches_per_tensor_over_100_steps(wd, chunk_bytes):
    ref_params, fe_params = _params(), _params()
    ref = AdamW(_groups(ref_params, wd), lr=3e-3, betas=(0.9, 0.95), weight_decay=wd, foreach=False)
    fe = AdamW(_groups(fe_params, wd), lr=3e-3, betas=(0.9, 0.95), weight_decay=wd, foreach=True,
               chunk_bytes=chunk_bytes)
    _run(ref, ref_params, 100, skip_every=7)
    _run(fe, fe_params, 100, skip_every=7)
    _assert_same(fe_params, ref_params)
    assert fe.state[fe_params[1]]["step"] == ref.state[ref_params[1]]["step"] < 100
    moved = max((p - q).abs().max().item() for p, q in zip(fe_params, _params()))
    assert moved > 0.05  # the comparison is between trained parameters, not two copies of the start


def test_foreach_matches_torch_adamw():
    ours_params, torch_params = _params(), _params()
    ours = AdamW(ours_params, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, foreach=True, chunk_bytes=256)
    ref = torch.optim.AdamW(torch_params, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    _run(ours, ours_params, 30)
    _run(ref, torch_params, 30)
    _assert_same(ours_params, torch_params)


@pytest.mark.parametrize("first,second", [(True, False), (False, True)])
def test_a_state_dict_moves_between_the_paths(first, second):
    straight = _params()
    opt = AdamW(_groups(straight, 0.1), lr=3e-3, weight_decay=0.1, foreach=False)
    _run(opt, straight, 100, skip_every=5)

    resumed = _params()
    before = AdamW(_groups(resumed, 0.1), lr=3e-3, weight_decay=0.1, foreach=first)
    _run(before, resumed, 50, skip_every=5)
    saved = before.state_dict()
    after = AdamW(_groups(resumed, 0.1), lr=3e-3, weight_decay=0.1, foreach=second)
    after.load_state_dict(saved)
    assert after.foreach is second  # the path is the optimizer's, not the checkpoint's
    _run(after, resumed, 50, start=50, skip_every=5)
    _assert_same(resumed, straight)


def test_both_paths_write_the_same_state_dict_layout():
    dicts = []
    for foreach in (False, True):
        params = _params()
        opt = AdamW(_groups(params, 0.1), foreach=foreach)
        _run(opt, params, 3)
        dicts.append(opt.state_dict())
    plain, multi = dicts
    assert plain["param_groups"] == multi["param_groups"]
    assert plain["state"].keys() == multi["state"].keys()
    for key, state in plain["state"].items():
        assert state.keys() == multi["state"][key].keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert type(state["step"]) is type(multi["state"][key]["step"]) is int


def test_the_foreach_path_runs_foreach_ops(monkeypatch):
    calls = []
    real = torch._foreach_addcdiv_

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_foreach_addcdiv_", spy)
    params = _params()
    _run(AdamW(params, foreach=False), params, 1)
    assert calls == []
    _run(AdamW(params, foreach=True, chunk_bytes=0), params, 1)
    assert calls == [len(SHAPES)]  # one call over the whole group


def test_chunk_indices():
    assert chunk_indices([], 10) == []
    assert chunk_indices([4, 4, 4], 0) == [[0, 1, 2]]
    assert chunk_indices([4, 4, 4], 8) == [[0, 1], [2]]
    assert chunk_indices([20, 1, 1, 30, 2], 8) == [[0], [1, 2], [3], [4]]  # big tensors alone, never empty
    sizes = [5, 3, 9, 1, 1, 7, 2]
    chunks = chunk_indices(sizes, 8)
    assert [i for c in chunks for i in c] == list(range(len(sizes)))
    assert all(c and (len(c) == 1 or sum(sizes[i] for i in c) <= 8) for c in chunks)


def test_foreach_default_per_device(monkeypatch):
    import cs336_basics.training.optimizer as optimizer

    assert use_foreach(None, "cuda") is True
    assert use_foreach(None, "mps") is False
    assert use_foreach(False, "cuda") is False and use_foreach(True, "cpu") is True
    for measured in (True, False):
        monkeypatch.setattr(optimizer, "CPU_FOREACH", measured)
        assert use_foreach(None, "cpu") is measured
    assert default_chunk_bytes("cuda") == 0 and default_chunk_bytes("cpu") > 0


def test_optimizer_foreach_config_reaches_adamw_and_muon():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    assert build_optimizer(model, OptimizerConfig(foreach=True)).foreach is True
    assert build_optimizer(model, OptimizerConfig()).foreach is None
    cfg = load_config(None, ["optimizer.foreach=false"])
    assert cfg.optimizer.foreach is False
    with pytest.raises(ValueError, match="optimizer.foreach"):
        OptimizerConfig(foreach="yes")
    from cs336_basics.training.muon import Muon

    muon = Muon([], [{"params": list(model.parameters())}], lr=1e-3, lr_ratio=1.0, foreach=True)
    assert muon._adamw.foreach is True


def test_chunk_bytes_must_not_be_negative():
    with pytest.raises(ValueError, match="chunk_bytes"):
        AdamW(_params(), chunk_bytes=-1)


@pytest.mark.slow
def test_compiled_update_matches_per_tensor_over_100_steps():
    """``compile=True``: the multi-tensor update through torch.compile, steps missed by one tensor included."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    ref_params, c_params = _params(), _params()
    ref = AdamW(_groups(ref_params, 0.1), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    comp = AdamW(_groups(c_params, 0.1), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1, compile=True)
    for start in range(0, 100, 10):  # the learning rate changes as a schedule would change it
        for opt in (ref, comp):
            for group in opt.param_groups:
                group["lr"] = 3e-3 * (1 - start / 200)
        _run(ref, ref_params, 10, start=start, skip_every=7)
        _run(comp, c_params, 10, start=start, skip_every=7)
    _assert_same(c_params, ref_params)
    assert comp.state[c_params[1]]["step"] == ref.state[ref_params[1]]["step"] < 100
    assert comp.state_dict()["state"].keys() == ref.state_dict()["state"].keys()
    # compiled once per list structure (two groups, and the group whose tensor missed steps split in two),
    # not once per step or learning rate
    assert 0 < counters["stats"]["unique_graphs"] <= 4


def test_optimizer_compile_is_validated_and_reaches_adamw():
    with pytest.raises(ValueError, match="optimizer.compile"):
        OptimizerConfig(compile="yes")
    model = torch.nn.Linear(4, 4)
    assert build_optimizer(model, OptimizerConfig(compile=True)).compile is True
    assert build_optimizer(model, OptimizerConfig()).compile is False
