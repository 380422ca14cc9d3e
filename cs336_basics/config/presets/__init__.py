"""Named model presets: the two reference architectures and the standard shapes, as config files.

Each preset is ``cs336_basics/configs/models/NAME.toml`` (``configs/models/`` in a
checkout), holding only a ``[model]`` table, so presets are ordinary config files:
``--config models/gpt2-xl`` works wherever a config does, and ``cs336 model info
--preset gpt2-xl`` applies one on top of another config. Two kinds:

- *styles* set only architecture choices and keep the shape: ``gpt2`` (CS336
  spring 2024: learned absolute positions, GELU, dropout 0.1, pre-norm RMSNorm)
  and ``llama`` (spring 2025: RoPE, SwiGLU, no dropout, pre-norm RMSNorm);
- *shapes* set a style plus sizes: ``gpt2-small/medium/large/xl`` (Radford et al.
  2019), ``tinystories`` (the spring-2024 handout's model) and
  ``tinystories-llama`` (the spring-2025 one, i.e. the ModelConfig defaults).

``apply_preset(cfg, name)`` returns ``cfg`` with the preset's fields replaced
(through :meth:`ModelConfig.with_changes`, so a ``d_ff`` that was derived stays
derived); ``preset(name, **overrides)`` starts from the defaults.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cs336_basics.errors import UserError
from cs336_basics.model.config import ModelConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"
PRESETS = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


def preset_fields(name: str) -> dict[str, Any]:
    """The ``[model]`` table of preset ``name``."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r} (choose one of: {', '.join(PRESETS)})")
    with open(PRESET_DIR / f"{name}.toml", "rb") as fh:
        return dict(tomllib.load(fh)["model"])


def apply_preset(cfg: ModelConfig, name: str) -> ModelConfig:
    """``cfg`` with the fields of preset ``name`` replaced."""
    return cfg.with_changes(**preset_fields(name))


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A fresh ModelConfig from preset ``name`` (on top of the defaults), then ``overrides``."""
    return apply_preset(ModelConfig(), name).with_changes(**overrides)
