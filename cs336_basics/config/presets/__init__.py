"""The shipped configs: run presets selected by name, and the named model presets among them.

This folder holds the presets as ordinary config files (``configs/`` at the top of
a checkout links here): ``--config tinystories`` or ``--config
experiments/lr_cpu`` selects ``NAME.toml`` here wherever a file path would do
(:func:`resolve_config_path`).

The model presets are ``models/NAME.toml``, holding only a ``[model]`` table, so
``--config models/gpt2-xl`` works like any config, and ``cs336 model info
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

from cs336_basics.config.model import ModelConfig
from cs336_basics.errors import ConfigError, UserError

PRESET_DIR = Path(__file__).resolve().parent
"""The shipped presets (``configs/`` at the top of a checkout links here)."""
MODEL_PRESET_DIR = PRESET_DIR / "models"
"""The model presets: a ``[model]`` table each."""
MODEL_PRESETS = tuple(sorted(p.stem for p in MODEL_PRESET_DIR.glob("*.toml")))
"""The names ``--preset`` accepts."""


def preset_names() -> list[str]:
    """Every shipped config, by the name that selects it (``tinystories``, ``experiments/lr_cpu``, ``models/gpt2``)."""
    return sorted(p.relative_to(PRESET_DIR).with_suffix("").as_posix() for p in PRESET_DIR.rglob("*.toml"))


def resolve_config_path(name: str | Path) -> Path:
    """A config file: ``name`` itself when it exists, else the shipped preset of that name."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (PRESET_DIR / path, PRESET_DIR / f"{path}.toml"):
        if candidate.is_file():
            return candidate
    top = [n for n in preset_names() if "/" not in n]
    folders = sorted({n.split("/")[0] for n in preset_names() if "/" in n})
    raise ConfigError(f"config file not found: {name} (or give a preset name: {', '.join(top)}, or "
                      f"{', '.join(f'{f}/NAME' for f in folders)} from {PRESET_DIR})")


def preset_fields(name: str) -> dict[str, Any]:
    """The ``[model]`` table of model preset ``name``."""
    if name not in MODEL_PRESETS:
        raise UserError(f"unknown model preset {name!r} (choose one of: {', '.join(MODEL_PRESETS)})")
    with open(MODEL_PRESET_DIR / f"{name}.toml", "rb") as fh:
        return dict(tomllib.load(fh)["model"])


def apply_preset(cfg: ModelConfig, name: str) -> ModelConfig:
    """``cfg`` with the fields of model preset ``name`` replaced."""
    return cfg.with_changes(**preset_fields(name))


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A fresh ModelConfig from model preset ``name`` (on top of the defaults), then ``overrides``."""
    return apply_preset(ModelConfig(), name).with_changes(**overrides)
