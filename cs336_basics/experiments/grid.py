"""Sweep specifications: a base config, a grid, named ablations, and how batch size moves the LR.

A sweep is described either on the command line (``--config BASE --grid
key=v1,v2 ...``) or by a sweep file (TOML or YAML)::

    [sweep]
    name = "ablations_cpu"
    base = "base_cpu.toml"          # relative to this file
    set = ["train.total_steps=300"] # applied to every run
    batch_rule = "none"             # none | linear | sqrt (LR scaling with batch size)
    fixed_tokens = false            # keep the token budget fixed across batch sizes

    [grid]                          # cartesian product, crossed with every ablation
    "optimizer.lr_max" = [1e-3, 3e-3]

    [[runs]]                        # named ablations; omit for a pure grid
    name = "baseline"
    set = []
    [[runs]]
    name = "parallel"
    set = ["model.block=parallel"]

:func:`expand` turns a :class:`SweepSpec` into concrete :class:`PlannedRun` s,
each with the complete list of ``--set`` overrides that reproduce it (so a run
can be re-created with ``cs336 train --config BASE --set ...``) and a resolved
:class:`~cs336_basics.config.RunConfig`. Every config error surfaces here,
before the first run starts, naming the run and the key.

Batch-size rules: with ``batch_rule`` ``linear`` the peak and
final learning rates are multiplied by ``B / B_ref``, with ``sqrt`` by
``sqrt(B / B_ref)`` (Goyal et al. 2017 for linear; Krizhevsky 2014 and Malladi
et al. 2022 for square-root scaling with Adam), where ``B_ref`` is the base
config's batch size. ``fixed_tokens`` keeps ``steps * B * T`` equal to the base
run's budget and rescales every step-denominated interval (warmup, cosine
length, eval/checkpoint/log cadence) by the same factor, so runs are compared
at equal tokens seen and their curves line up on a tokens axis.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cs336_basics.config import RunConfig, apply_overrides, load_config, read_mapping, to_dict
from cs336_basics.errors import ConfigError, UserError
from cs336_basics.runs.records import short_names

BatchRule = Literal["none", "linear", "sqrt"]
BATCH_RULES = ("none", "linear", "sqrt")

# Step-denominated settings rescaled together with the step count under fixed_tokens.
_STEP_KEYS = ("optimizer.warmup_iters", "optimizer.cosine_cycle_iters", "train.eval_interval",
              "train.checkpoint_interval", "logging.log_interval")


@dataclass
class Ablation:
    """One named variant: overrides applied on top of the base (before the grid)."""

    name: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class SweepSpec:
    """Everything needed to expand a sweep; written to ``sweep.json`` in the sweep directory."""

    name: str
    base_config: str | None = None
    overrides: list[str] = field(default_factory=list)
    grid: list[tuple[str, list[str]]] = field(default_factory=list)
    ablations: list[Ablation] = field(default_factory=list)
    batch_rule: BatchRule = "none"
    fixed_tokens: bool = False

    def __post_init__(self) -> None:
        # the name becomes the folder OUT/NAME: it must not climb out of OUT or into another folder
        if not re.fullmatch(r"[A-Za-z0-9._=+-]+", self.name) or set(self.name) == {"."}:
            raise ConfigError(f"sweep name {self.name!r} must be a plain directory name: letters, digits and "
                              ". _ = + -, not only dots")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base_config": self.base_config, "overrides": list(self.overrides),
                "grid": [[k, list(v)] for k, v in self.grid],
                "ablations": [{"name": a.name, "set": list(a.overrides)} for a in self.ablations],
                "batch_rule": self.batch_rule, "fixed_tokens": self.fixed_tokens}


@dataclass
class PlannedRun:
    """A concrete run of a sweep: its name, the overrides that make it, and the resolved config."""

    name: str
    overrides: list[str]
    """Every override on top of the base config, in order (common, ablation, grid, batch rule)."""
    swept: dict[str, Any]
    """The values this run was chosen for: ``{"ablation": name}`` and the grid keys."""
    config: RunConfig

    @property
    def config_hash(self) -> str:
        """Identity of the run's settings, ignoring where it is written (to detect a changed sweep)."""
        data = to_dict(self.config)
        for key in ("run_name", "runs_dir", "checkpoint"):
            data.get("train", {}).pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- parsing


def _value_text(value: Any) -> str:
    """A sweep-file value as the ``--set`` text that parses back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def parse_grid_arg(text: str) -> tuple[str, list[str]]:
    """``optimizer.lr_max=1e-4,3e-4`` -> ("optimizer.lr_max", ["1e-4", "3e-4"])."""
    if "=" not in text:
        raise ConfigError(f"--grid '{text}' must look like section.key=value1,value2,...")
    key, raw = text.split("=", 1)
    key = key.strip()
    values = [v.strip() for v in raw.split(",")]
    if not key or "." not in key:
        raise ConfigError(f"--grid '{text}': the key must be section.key, e.g. optimizer.lr_max")
    if not values or any(v == "" for v in values):
        raise ConfigError(f"--grid '{text}': give a comma-separated list of values without empty entries")
    return key, values


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read a sweep file (format in the module docstring); relative ``base`` is resolved next to it."""
    path = Path(path)
    data = read_mapping(path)
    known = {"sweep", "grid", "runs"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)} (a sweep file has [sweep], [grid], [[runs]])")
    head = data.get("sweep", {}) or {}
    if not isinstance(head, dict):
        raise ConfigError(f"{path}: [sweep] must be a table")
    allowed = {"name", "base", "set", "batch_rule", "fixed_tokens"}
    bad = sorted(set(head) - allowed)
    if bad:
        raise ConfigError(f"{path}: unknown key(s) in [sweep]: {', '.join(bad)} (known: {', '.join(sorted(allowed))})")
    base = head.get("base")
    if base is not None:
        base_path = Path(base)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        base = str(base_path)
    grid = []
    for key, values in (data.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid entry '{key}' must be a non-empty list of values")
        grid.append((key, [_value_text(v) for v in values]))
    ablations = []
    for i, entry in enumerate(data.get("runs") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{path}: [[runs]] entry {i + 1} needs a name (and optionally set = [...])")
        extra = sorted(set(entry) - {"name", "set"})
        if extra:
            raise ConfigError(f"{path}: [[runs]] '{entry['name']}' has unknown key(s) {', '.join(extra)} (known: name, set)")
        sets = entry.get("set", [])
        if isinstance(sets, str):
            sets = [sets]
        ablations.append(Ablation(str(entry["name"]), [str(s) for s in sets]))
    spec = SweepSpec(name=str(head.get("name", path.stem)), base_config=base,
                     overrides=[str(s) for s in head.get("set", [])], grid=grid, ablations=ablations,
                     batch_rule=head.get("batch_rule", "none"), fixed_tokens=bool(head.get("fixed_tokens", False)))
    validate_spec(spec)
    return spec


def merge_specs(file_spec: SweepSpec | None, *, name: str | None = None, base_config: str | None = None,
                overrides: list[str] | None = None, grid: list[str] | None = None,
                batch_rule: str | None = None, fixed_tokens: bool | None = None) -> SweepSpec:
    """Combine a sweep file with command-line options (the command line wins / adds)."""
    spec = file_spec or SweepSpec(name=name or "sweep")
    if name:
        spec.name = name
    if base_config is not None:
        spec.base_config = str(base_config)
    spec.overrides = list(spec.overrides) + list(overrides or [])
    given: dict[str, str] = {}
    for text in grid or []:
        key, values = parse_grid_arg(text)
        if key in given:  # two lists for one key: neither can be guessed to be the one meant
            raise ConfigError(f"--grid gives {key} twice ('{given[key]}' and '{text}'); list all its values in "
                              f"one --grid {key}=v1,v2,...")
        given[key] = text
        # a key of the sweep file given on the command line takes the command line's values
        spec.grid = [(k, v) for k, v in spec.grid if k != key] + [(key, values)]
    if batch_rule is not None:
        spec.batch_rule = batch_rule  # type: ignore[assignment]
    if fixed_tokens is not None:
        spec.fixed_tokens = spec.fixed_tokens or fixed_tokens
    validate_spec(spec)
    return spec


def validate_spec(spec: SweepSpec) -> None:
    if spec.batch_rule not in BATCH_RULES:
        raise ConfigError(f"batch_rule {spec.batch_rule!r} is not one of {', '.join(BATCH_RULES)}")
    names = [a.name for a in spec.ablations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"ablation name(s) used twice: {', '.join(dupes)}; give every [[runs]] entry its own name")
    keys = [k for k, _ in spec.grid]
    if len(set(keys)) != len(keys):
        raise ConfigError("a grid key appears twice; list all its values in one --grid key=v1,v2")


# ----------------------------------------------------------------------------- expansion


def _safe(text: str) -> str:
    """A run-name fragment that is a valid directory name everywhere."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)


def _get(cfg: RunConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def batch_rule_overrides(cfg: RunConfig, base: RunConfig, rule: str, fixed_tokens: bool) -> list[str]:
    """The extra overrides that scale ``cfg``'s LR (and steps) for its batch size relative to ``base``."""
    out: list[str] = []
    ratio = cfg.train.batch_size / base.train.batch_size  # sequences per step; accumulation only splits them
    if rule != "none" and ratio != 1.0:
        factor = ratio if rule == "linear" else math.sqrt(ratio)
        out += [f"optimizer.lr_max={_fmt(cfg.optimizer.lr_max * factor)}",
                f"optimizer.lr_min={_fmt(cfg.optimizer.lr_min * factor)}"]
    if fixed_tokens:
        per_step_base = base.tokens_per_step()
        if base.train.total_tokens is not None:
            budget = base.train.total_tokens
        elif base.train.total_steps is not None:
            budget = base.train.total_steps * per_step_base
        else:
            raise ConfigError("--fixed-tokens needs train.total_steps or train.total_tokens in the base config")
        per_step = cfg.tokens_per_step()
        steps = max(1, round(budget / per_step))
        base_steps = budget / per_step_base
        scale = steps / base_steps
        out += [f"train.total_steps={steps}", "train.total_tokens=none"]
        for key in _STEP_KEYS:
            value = _get(base, key)
            if value and _get(cfg, key) == value and scale != 1.0:  # 0 (no warmup, no validation) stays 0
                floor = 0 if key == "optimizer.warmup_iters" else 1  # warmup may vanish; a cadence may not
                out.append(f"{key}={max(floor, round(value * scale))}")
    return out


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """All runs of a sweep: every ablation (or the base alone) crossed with the grid's cartesian product."""
    base = load_config(spec.base_config, spec.overrides)
    ablations = spec.ablations or [Ablation("")]
    keys = [k for k, _ in spec.grid]
    short = short_names(keys)
    combos = list(itertools.product(*[values for _, values in spec.grid])) if spec.grid else [()]
    runs: list[PlannedRun] = []
    for ablation in ablations:
        for combo in combos:
            grid_sets = [f"{k}={v}" for k, v in zip(keys, combo)]
            parts = ([_safe(ablation.name)] if ablation.name else []) + [_safe(f"{short[k]}={v}") for k, v in zip(keys, combo)]
            name = "__".join(parts) or "base"
            overrides = list(spec.overrides) + list(ablation.overrides) + grid_sets
            where = f"run '{name}'"
            try:
                cfg = apply_overrides(base, ablation.overrides + grid_sets)
                swept: dict[str, Any] = {"ablation": ablation.name} if ablation.name else {}
                swept.update({k: _get(cfg, k) for k in keys})  # as chosen, before batch-rule scaling
                extra = batch_rule_overrides(cfg, base, spec.batch_rule, spec.fixed_tokens)
                cfg = apply_overrides(cfg, extra)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            overrides += extra
            runs.append(PlannedRun(name=name, overrides=overrides, swept=swept, config=cfg))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise UserError("two runs of the sweep got the same name; give the ablations distinct names")
    return runs
