"""Loading a trained model for inference, and writing its weights for other tools.

``load_trained_model(path)`` accepts a checkpoint file, a run directory or its
``checkpoints/`` folder (best.pt, else latest), rebuilds the model from the
config stored in the checkpoint (else the run's config.toml), and finds the
run's tokenizer by the run-directory lookup rule of :mod:`cs336_basics.runs.layout`.
``export_safetensors`` writes the weights as one safetensors file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from cs336_basics.config import ModelConfig, RunConfig, from_dict, load_config
from cs336_basics.config.accounting import count_parameters
from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_path
from cs336_basics.model import TransformerLM
from cs336_basics.runs.checkpoint import (
    CheckpointManager,
    check_finite,
    load_model_weights,
    model_state_dict,
    read_checkpoint,
)
from cs336_basics.runs.layout import CHECKPOINTS, RunDir, resolve_data
from cs336_basics.tokenizer import Tokenizer


def export_safetensors(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the model's weights as a safetensors file (tied weights stored once per name, contiguous)."""
    state = model_state_dict(model)
    # safetensors refuses tensors that share storage (tied embeddings): give each name its own copy
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or {})
    return path


@dataclass
class LoadedModel:
    """A trained model ready for generation or evaluation, and where it came from."""

    model: nn.Module
    config: RunConfig
    step: int
    checkpoint_path: Path
    run_dir: Path | None
    tokenizer_dir: Path | None
    tokenizer_fingerprint: str | None = None
    """The fingerprint of the tokenizer the model was trained with (None for checkpoints from elsewhere)."""

    def tokenizer(self, directory: str | Path | None = None) -> Tokenizer:
        """The run's tokenizer (or the one in ``directory``), checked against the one the model was trained with.

        Another tokenizer of the same size would load without complaint and turn every id into the wrong
        text, so a fingerprint mismatch is an error rather than garbage.
        """
        directory = Path(directory) if directory is not None else self.tokenizer_dir
        if directory is None:
            raise UserError(f"no tokenizer found for {self.checkpoint_path}; set data.tokenizer_dir in the run config "
                            "or pass the tokenizer directory explicitly")
        tokenizer = Tokenizer.from_dir(directory)
        if self.tokenizer_fingerprint and tokenizer.fingerprint != self.tokenizer_fingerprint:
            raise UserError(f"the tokenizer in {directory} is not the one {self.checkpoint_path} was trained with "
                            "(their fingerprints differ); use the run's tokenizer (the tokenizer/ folder of its "
                            "dataset)")
        return tokenizer


def find_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run directory or None) for a checkpoint file, a run directory or its checkpoints/."""
    path = Path(path)
    if path.is_dir():
        run_dir = path.parent if path.name == CHECKPOINTS and not (path / CHECKPOINTS).is_dir() else path
        manager = CheckpointManager(RunDir(run_dir).checkpoints)
        for candidate in (manager.best_path, manager.latest()):
            if candidate is not None and candidate.exists():
                return candidate, run_dir
        raise UserError(f"no checkpoint in {run_dir} (expected checkpoints/best.pt, latest.pt or step_*.pt); "
                        "train first with 'cs336 train'")
    if not path.exists():
        raise UserError(f"checkpoint not found: {path} (give a .pt file or a run directory)")
    run_dir = path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
    return path, run_dir if RunDir(run_dir).config_path.exists() else None


def config_from_checkpoint(obj: Mapping[str, Any], run_dir: Path | None, name: str) -> RunConfig:
    """The RunConfig stored in a checkpoint, else the run directory's config.toml."""
    if isinstance(obj.get("config"), dict):
        return from_dict(RunConfig, obj["config"])
    if run_dir is not None and RunDir(run_dir).config_path.exists():
        return load_config(RunDir(run_dir).config_path)
    raise UserError(f"{name} carries no config and has no config.toml beside it; cannot rebuild the model")


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model for inference from a checkpoint file or a run directory (best.pt, else latest)."""
    ckpt_path, run_dir = find_checkpoint(path)
    obj = read_checkpoint(ckpt_path)
    check_finite(obj, str(ckpt_path), "use an earlier checkpoint (checkpoints/step_*.pt) or retrain with a lower "
                                      "optimizer.lr_max")
    cfg = config_from_checkpoint(obj, run_dir, str(ckpt_path))
    check_config_matches_weights(cfg.model, obj["model"], str(ckpt_path))
    model = TransformerLM(cfg.model, attention_device=device)
    load_model_weights(model, obj["model"], str(ckpt_path))
    model.to(device).eval()
    fingerprint = obj.get("tokenizer_fingerprint")
    return LoadedModel(model=model, config=cfg, step=int(obj.get("iteration", 0)), checkpoint_path=ckpt_path,
                       run_dir=run_dir, tokenizer_dir=resolve_data(cfg, run_dir).tokenizer,
                       tokenizer_fingerprint=fingerprint if isinstance(fingerprint, str) else None)


def check_config_matches_weights(cfg: ModelConfig, state: Mapping[str, Any], name: str) -> None:
    """Compare the parameter count the config describes with the weights the checkpoint holds, before any
    tensor of the model is allocated (a damaged config must not allocate a model of hundreds of GB)."""
    try:
        described = count_parameters(cfg)["total"]
    except ValueError as exc:
        raise UserError(f"checkpoint {name} carries an unusable model config ({exc})") from exc
    held = sum(v.numel() for k, v in state.items() if isinstance(v, torch.Tensor) and not k.endswith("_extra_state"))
    tied = cfg.tie_embeddings and "lm_head.weight" in state  # a tied head saved twice by other code
    if described != held and not (tied and described == held - state["lm_head.weight"].numel()):
        raise UserError(f"checkpoint {name}: its config describes a model of {described:,} parameters but it holds "
                        f"{held:,}; the config or the weights are damaged, use another checkpoint")
