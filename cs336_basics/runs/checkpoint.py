"""The checkpoint file format: atomic saves, safe loads, and the checkpoints/ folder (keep-last-N, best, latest).

- ``save_checkpoint(model, optimizer, iteration, out, **extra)`` / ``load_checkpoint(src, model, optimizer)``
  are the handout's API and accept paths or file objects. A training checkpoint
  holds the same entries and everything a resumed run needs to continue
  bit-for-bit: :class:`~cs336_basics.runs.train_state.TrainState` lists them.
- Writes to a path go to a temp file in the same directory, are fsynced and then
  renamed over the final name, so a crash (or SIGKILL) mid-save leaves either the
  old file or the new one, never half of one.
- Loads use ``torch.load(weights_only=True)`` only: a checkpoint is data, and a
  file that needs arbitrary unpickling is refused rather than executed.
- Loads check every record of the zip archive (each tensor, the pickle) against
  the CRC-32 stored beside it before ``torch.load`` reads it (``torch.load`` does
  not): a flipped bit is an error naming the file, never silently different
  weights. The check reads the file once more, from the page cache, at memory
  speed: a small cost next to the load itself.
- State-dict keys never carry ``torch.compile``'s ``_orig_mod.`` or DDP's
  ``module.`` prefix: the wrappers are removed before saving and the prefixes
  are stripped again on load (for checkpoints written by other code).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_path, atomic_writer
from cs336_basics.runs.layout import BEST_CHECKPOINT, LATEST_CHECKPOINT, RunDir

CHECKPOINT_FORMAT = 1
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
RESUME_FIX = "free space and rerun with --resume auto (the last complete checkpoint is kept)"


# ----------------------------------------------------------------------------- state dicts


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Strip wrapper prefixes (``_orig_mod.``, ``module.``) from every key, however they are nested."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return clean_state_dict(unwrap_model(model).state_dict())


# ----------------------------------------------------------------------------- atomic files


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on every platform/filesystem; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, fix=RESUME_FIX) as fh:
        torch.save(obj, fh)
    _fsync_dir(path.parent)
    return path


def _atomic_link(src: Path, dst: Path) -> None:
    """Make ``dst`` name the same file as ``src`` (a hard link, else a copy), atomically."""
    with atomic_path(dst, RESUME_FIX) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # filesystems without hard links
            shutil.copyfile(src, tmp)


# ----------------------------------------------------------------------------- save / load


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer | None, iteration: int,
                    out: str | os.PathLike | IO[bytes], **extra: Any) -> None:
    """Save model and optimizer state, the iteration and any ``extra`` entries (atomically when ``out`` is a path)."""
    obj = {"format": CHECKPOINT_FORMAT, "model": model_state_dict(model),
           "optimizer": optimizer.state_dict() if optimizer is not None else None,
           "iteration": int(iteration), **extra}
    if isinstance(out, (str, os.PathLike)):
        atomic_torch_save(obj, out)
    else:
        torch.save(obj, out)


def read_checkpoint(src: str | os.PathLike | IO[bytes], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; one-line UserErrors for missing, corrupt or unsafe files."""
    name = str(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "checkpoint")
    if isinstance(src, (str, os.PathLike)):
        if not Path(src).is_file():
            raise UserError(f"checkpoint not found: {src} (give a .pt file or a run directory)")
        with open(src, "rb") as fh:
            magic = fh.read(4)
        if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # torch's zip format, or a raw pickle
            raise UserError(f"{name} is not a PyTorch checkpoint (it starts with {magic!r}); give a .pt file "
                            "written by cs336 train or torch.save, or a run directory")
    verify_records(src, name)
    try:
        obj = torch.load(src, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise UserError(f"refusing to load {name}: it holds Python objects{what} beyond tensors and plain data, "
                        "and loading it would run code from the file; only plain checkpoints are accepted") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"cannot read checkpoint {name}: it is corrupt or truncated ({type(exc).__name__}); "
                        "use another checkpoint, e.g. an older step_*.pt") from exc
    if isinstance(obj, dict) and "model" not in obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"model": obj, "iteration": 0}  # a bare state dict
    if not isinstance(obj, dict) or "model" not in obj:
        raise UserError(f"{name} is not a model checkpoint (no 'model' entry)")
    obj["model"] = clean_state_dict(obj["model"])
    return obj


def verify_records(src: str | os.PathLike | IO[bytes], name: str) -> None:
    """Check every record of a zip-format checkpoint against its stored CRC-32 (UserError naming the file).

    A raw-pickle checkpoint (the legacy format) carries no checksums and passes unchecked; a file
    object is read from its current position and put back there.
    """
    fh = open(src, "rb") if isinstance(src, (str, os.PathLike)) else src
    start = fh.tell() if fh.seekable() else None
    try:
        if start is None or fh.read(4) != b"PK\x03\x04":
            return
        fh.seek(start)
        with zipfile.ZipFile(fh) as archive:
            bad = archive.testzip()  # reads each record, comparing its CRC-32 with the stored one
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise UserError(f"cannot read checkpoint {name}: it is corrupt or truncated ({exc}); use another "
                        "checkpoint, e.g. an older step_*.pt") from exc
    finally:
        if fh is not src:
            fh.close()
        elif start is not None:
            fh.seek(start)
    if bad is not None:
        raise UserError(f"checkpoint {name} is damaged: its record {bad} does not match its stored CRC-32 checksum "
                        "(a changed byte: a bad disk, memory or copy); use another checkpoint, e.g. an older "
                        "step_*.pt")


def load_checkpoint(src: str | os.PathLike | IO[bytes], model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> int:
    """Restore ``model`` (and ``optimizer``) from ``src``; return the saved iteration."""
    obj = read_checkpoint(src)
    load_model_weights(unwrap_model(model), obj["model"], str(src) if isinstance(src, (str, os.PathLike)) else "checkpoint")
    if optimizer is not None:
        if obj.get("optimizer") is None:
            raise UserError(f"checkpoint {src} holds no optimizer state; load it without an optimizer")
        optimizer.load_state_dict(obj["optimizer"])
    return int(obj.get("iteration", 0))


def load_model_weights(model: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """``load_state_dict`` with a one-line error listing what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. {k}: checkpoint {tuple(state[k].shape)} "
                         f"vs model {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise UserError(f"checkpoint {name} does not fit the model ({'; '.join(parts)}); "
                        "use the model config the checkpoint was trained with")
    model.load_state_dict(state)


# ----------------------------------------------------------------------------- finiteness


def first_nonfinite(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity (None when all are finite).

    One reduction per tensor and a single host sync: cheap next to a training step. The reduction is
    ``aminmax``: a NaN propagates to both ends and an infinity shows at one, and it reads the tensor once
    without allocating a boolean copy of it (``isfinite(v).all()`` does, and takes about ten times as long
    on a CPU).
    """
    named = [(k, v) for k, v in tensors.items()
             if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() > 0]
    if not named:
        return None
    flags = [torch.isfinite(torch.stack(torch.aminmax(v.detach()))).all() for _, v in named]
    bad = (~torch.stack([f.to(flags[0].device) for f in flags]).cpu()).nonzero()
    return named[int(bad[0])][0] if len(bad) else None


def optimizer_tensors(optimizer_state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Every tensor of an optimizer state dict (its moments), named ``optimizer.<param>.<key>``."""
    out = {}
    for param_id, entry in (optimizer_state.get("state") or {}).items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                out[f"optimizer.{param_id}.{key}"] = value
    return out


def check_finite(obj: Mapping[str, Any], name: str, hint: str) -> None:
    """A UserError naming the tensor when a checkpoint holds non-finite weights or optimizer moments."""
    bad = first_nonfinite(obj["model"]) or (first_nonfinite(optimizer_tensors(obj["optimizer"]))
                                            if isinstance(obj.get("optimizer"), Mapping) else None)
    if bad is not None:
        raise UserError(f"checkpoint {name} holds non-finite values (NaN or inf) in {bad}; {hint}")


# ----------------------------------------------------------------------------- the checkpoints/ folder


class CheckpointManager:
    """``checkpoints/step_XXXXXXX.pt`` files, ``latest.pt`` and ``best.pt`` (hard links where possible), pruning."""

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        self.dir = Path(directory)
        self.keep_last = keep_last

    def step_path(self, step: int) -> Path:
        return self.dir / f"step_{step:07d}.pt"

    @property
    def latest_path(self) -> Path:
        return self.dir / LATEST_CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.dir / BEST_CHECKPOINT

    def step_files(self) -> list[tuple[int, Path]]:
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_RE.match(p.name))]
        return sorted(found)

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write a step checkpoint, point latest.pt at it, and drop step files beyond keep_last."""
        path = atomic_torch_save(state, self.step_path(step))
        _atomic_link(path, self.latest_path)
        self.prune()
        return path

    def save_best(self, state: dict[str, Any], step: int) -> Path:
        """Make best.pt hold this state (a link to the step file when one was just written)."""
        step_file = self.step_path(step)
        if step_file.exists():
            _atomic_link(step_file, self.best_path)
        else:
            atomic_torch_save(state, self.best_path)
        return self.best_path

    def prune(self) -> None:
        if self.keep_last <= 0:
            return
        for _, path in self.step_files()[:-self.keep_last]:
            path.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        if self.latest_path.exists():
            return self.latest_path
        files = self.step_files()
        return files[-1][1] if files else None


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Delete the temp files that killed saves leave behind (``.NAME.PID.tmp``) in a run directory and its
    subfolders. Only call it while holding the run's lock: then no save is in flight."""
    removed = []
    run = RunDir(root)
    for folder in (root, run.checkpoints, run.samples, run.plots):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.endswith(".tmp") and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed
