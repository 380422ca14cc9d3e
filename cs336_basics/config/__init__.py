"""Typed configuration: one dataclass per section, the variant names, TOML/YAML files, ``--set``, presets.

Every layer reads its settings from here, and nothing here imports torch (or any
other part of the package but :mod:`cs336_basics.errors` and
:mod:`cs336_basics.fileio`), so loading, validating, sweeping or printing a config
costs no more than the config itself.

- :mod:`.run`: :class:`RunConfig`, the five sections of a run, its derived
  quantities, and which fields a run's own choices leave unused;
- :mod:`.model`: :class:`ModelConfig`, the network's shape and variant choices;
- :mod:`.training`: :class:`OptimizerConfig`, :class:`DataConfig`,
  :class:`TrainConfig`, :class:`LoggingConfig`;
- :mod:`.variants`: the allowed names of each model variant axis with the
  structural facts code without torch needs (the classes behind them are in
  :mod:`cs336_basics.model.variant_classes`);
- :mod:`.files`: reading and writing config files, ``--set`` overrides, the
  type-driven checks behind both, and ``--help-config``;
- :mod:`.sampling`: :class:`SamplingParams`, what ``cs336 generate`` and the
  training samples generate;
- :mod:`.presets`: the shipped configs (this package's ``presets/`` folder) and
  the named model presets.
"""

from __future__ import annotations

from cs336_basics.config.files import (apply_override, apply_overrides, describe_fields, dump_config, from_dict,
                                       load_config, read_mapping, to_dict)
from cs336_basics.config.model import ModelConfig
from cs336_basics.config.presets import (MODEL_PRESETS, PRESET_DIR, apply_preset, preset, preset_names,
                                         resolve_config_path)
from cs336_basics.config.run import RunConfig, unused_fields
from cs336_basics.config.sampling import SamplingParams
from cs336_basics.config.training import DataConfig, LoggingConfig, OptimizerConfig, TrainConfig

__all__ = [
    "MODEL_PRESETS", "PRESET_DIR", "DataConfig", "LoggingConfig", "ModelConfig", "OptimizerConfig", "RunConfig",
    "SamplingParams", "TrainConfig", "apply_override", "apply_overrides", "apply_preset", "describe_fields", "dump_config",
    "from_dict", "load_config", "preset", "preset_names", "read_mapping", "resolve_config_path", "to_dict",
    "unused_fields",
]
