"""Checkpoints: round trips, atomicity under a killed writer, safe loading, wrappers' prefixes, retention, export."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from cs336_basics.errors import UserError
from cs336_basics.runs.checkpoint import (CheckpointManager, clean_state_dict, load_checkpoint, read_checkpoint,
                                          save_checkpoint)
from cs336_basics.runs.trained import export_safetensors, find_checkpoint
from cs336_basics.training.rng import rng_state, set_rng_state
from cs336_basics.training.optimizer import AdamW


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _trained(seed: int = 0) -> tuple[nn.Module, AdamW]:
    net = _net(seed)
    opt = AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).sum().backward()
        opt.step()
    return net, opt


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("use_file_object", [False, True])
def test_round_trip_restores_model_optimizer_and_iteration(tmp_path, use_file_object):
    net, opt = _trained()
    if use_file_object:
        buf = io.BytesIO()
        save_checkpoint(net, opt, 42, buf, note="hi")
        buf.seek(0)
        src = buf
    else:
        src = tmp_path / "c.pt"
        save_checkpoint(net, opt, 42, src, note="hi")
    net2 = _net(seed=1)
    opt2 = AdamW(net2.parameters(), lr=1e-2, weight_decay=0.1)
    assert load_checkpoint(src, net2, opt2) == 42
    _assert_same(net, net2)
    # the restored optimizer continues exactly like the original
    x = torch.randn(5, 4)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).sum().backward()
        o.step()
    _assert_same(net, net2)


def test_compile_and_ddp_prefixes_never_reach_the_file(tmp_path):
    net, opt = _trained()
    compiled = torch.compile(net)  # compilation is lazy: wrapping costs nothing until called
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_checkpoint(compiled, opt, 1, tmp_path / "c.pt")
    keys = torch.load(tmp_path / "c.pt", weights_only=True)["model"].keys()
    assert not any("_orig_mod" in k or k.startswith("module.") for k in keys)
    plain = _net(seed=3)
    load_checkpoint(tmp_path / "c.pt", plain)
    _assert_same(net, plain)
    # checkpoints written by other code with prefixes still load
    assert clean_state_dict({"module._orig_mod.0.weight": 1, "_orig_mod.x": 2}) == {"0.weight": 1, "x": 2}


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_loading_refuses_unsafe_pickles(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Evil()}, path)
    with pytest.raises(UserError, match=r"holds Python objects \((posix|os|nt)\.system\).*would run code") as info:
        read_checkpoint(path)
    assert "weights_only" not in str(info.value)  # never advise turning the safety off


def test_files_that_are_not_checkpoints_say_so(tmp_path):
    (tmp_path / "config.toml").write_text("[model]\nd_model = 64\n")
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    for name in ("config.toml", "noise.pt"):
        with pytest.raises(UserError, match="is not a PyTorch checkpoint") as info:
            read_checkpoint(tmp_path / name)
        assert "weights_only" not in str(info.value) and "unpickling" not in str(info.value)


def test_corrupt_missing_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    net, opt = _trained()
    save_checkpoint(net, opt, 1, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        read_checkpoint(tmp_path / "torn.pt")
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    other = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(UserError, match="shape mismatch"):
        load_checkpoint(tmp_path / "c.pt", other)


WRITER = textwrap.dedent("""
    import sys, torch
    from cs336_basics.runs.checkpoint import atomic_torch_save
    big = {"model": {"w": torch.randn(4_000_000)}, "iteration": 0}
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        big["iteration"] = i
        big["model"]["w"].fill_(float(i))
        atomic_torch_save(big, sys.argv[1])
""")


@pytest.mark.slow
def test_killed_writer_never_leaves_a_half_checkpoint(tmp_path):
    target = tmp_path / "ckpt.pt"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.37 * attempt)  # kill at varying points of a 16 MB write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            obj = read_checkpoint(target)
            assert torch.all(obj["model"]["w"] == float(obj["iteration"]))  # a complete, consistent file
    assert target.exists()  # at least one save completed, and every version seen was whole
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert all(name.startswith(".ckpt.pt.") for name in leftovers)  # only hidden temp files, never the final name


def test_manager_keeps_last_n_and_best_and_latest(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    for step in (10, 20, 30):
        manager.save({"model": {"w": torch.tensor([float(step)])}, "iteration": step}, step)
        if step == 20:
            manager.save_best({"model": {"w": torch.tensor([20.0])}, "iteration": 20}, 20)
    assert [s for s, _ in manager.step_files()] == [20, 30]
    assert read_checkpoint(manager.latest_path)["iteration"] == 30
    manager.save_best({"model": {"w": torch.tensor([25.0])}, "iteration": 25}, 25)  # no step file: written
    assert read_checkpoint(manager.best_path)["iteration"] == 25
    manager.save({"model": {"w": torch.tensor([40.0])}, "iteration": 40}, 40)  # pruning never touches best.pt
    assert read_checkpoint(manager.best_path)["iteration"] == 25
    assert find_checkpoint(tmp_path) == (manager.best_path, tmp_path)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.save({"rng": rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_safetensors_export_round_trip_with_tied_weights(tmp_path):
    from safetensors.torch import load_file

    net = nn.ModuleDict({"emb": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
    net["head"].weight = net["emb"].weight
    export_safetensors(net, tmp_path / "m.safetensors", metadata={"step": "7"})
    loaded = load_file(tmp_path / "m.safetensors")
    assert set(loaded) == {"emb.weight", "head.weight"}
    assert torch.equal(loaded["emb.weight"], net["emb"].weight.detach())


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_extras = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in ("model", "optimizer", "iteration",
                                                                                    "format")),
                          st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=10),
                                    st.none(), st.lists(st.integers(0, 9), max_size=4)), max_size=4)


@settings(max_examples=15, deadline=None)
@given(iteration=st.integers(0, 10**9), extra=_extras, shapes=st.lists(st.lists(st.integers(1, 4), max_size=3),
                                                                      min_size=1, max_size=4))
def test_checkpoint_round_trip_property(iteration, extra, shapes):
    net = nn.ParameterDict({f"p{i}": nn.Parameter(torch.randn(tuple(shape))) for i, shape in enumerate(shapes)})
    buf = io.BytesIO()
    save_checkpoint(net, None, iteration, buf, **extra)
    buf.seek(0)
    obj = read_checkpoint(buf)
    assert obj["iteration"] == iteration and obj["optimizer"] is None
    assert {k: obj[k] for k in extra} == extra
    twin = nn.ParameterDict({f"p{i}": nn.Parameter(torch.zeros(tuple(shape))) for i, shape in enumerate(shapes)})
    buf.seek(0)
    assert load_checkpoint(buf, twin) == iteration
    _assert_same(net, twin)
