"""Config files and overrides: TOML/YAML in and out, ``--set`` assignments, all driven by the type hints.

Files are TOML (``[model]`` tables) or YAML (a mapping per section); see
:class:`~cs336_basics.config.run.RunConfig` for the sections. Overrides look like
``--set model.d_model=512``. Unknown keys and values of the wrong type are
:class:`~cs336_basics.errors.ConfigError` naming the full key, in the spirit of
nanoGPT's configurator but without ``exec``. No framework: the machinery is the
~150 lines below, driven by the dataclasses' type hints.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import reprlib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import tomli_w
import yaml

from cs336_basics.config.presets import resolve_config_path
from cs336_basics.config.run import RunConfig
from cs336_basics.errors import ConfigError
from cs336_basics.fileio import atomic_write_text

T = TypeVar("T")


# ----------------------------------------------------------------------------- type coercion


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _only_string(tp: Any) -> bool:
    """The field takes only text (str, a Literal of strings, optionally None): a value is never a number."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        return all(_only_string(a) for a in get_args(tp) if a is not type(None))
    return tp is str or (get_origin(tp) is Literal and all(isinstance(a, str) for a in get_args(tp)))


def _parse_scalar_string(text: str, tp: Any = Any) -> Any:
    """Interpret a command-line value for a field of type ``tp``.

    A field that takes only text keeps the text as it is (``--run-name nan``, ``--set
    model.position=none``; only ``null``/``None`` unsets an optional one); other fields read
    JSON/TOML-ish literals first (numbers, true/false, lists), else the raw string.
    """
    if _only_string(tp):
        if text.strip().lower() in ("none", "null") and type(None) in get_args(tp):
            return None
        return text
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        pass
    try:  # accepts 3e-4, 1_000, etc.
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 40


def _show(value: Any) -> str:
    """A bounded ``repr``: an error line stays short whatever the file held (without building the whole repr of
    a huge value first)."""
    return _SHORT_REPR.repr(value)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` (converting where lossless) or raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: {_show(value)} is not one of {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: None is not allowed (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {_show(value)} is not a valid {_type_name(tp)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table/mapping, got {_show(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table/mapping, got {_show(value)}")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {_show(value)}")
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in types_:
            known = ", ".join(sorted(types_))
            raise ConfigError(f"unknown config key '{full}' (known keys here: {known})")
        kwargs[key] = coerce(value, types_[key], full)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain nested dict (None values dropped, since TOML has no null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(obj))


class _Changes(dict):
    """Pending overrides of one dataclass level: field -> new value, or -> the _Changes of a section."""


def _parse_assignment(cfg: Any, assignment: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (path, value checked against the field's type), naming the key on errors."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}' must look like section.key=value")
    dotted, raw = assignment.split("=", 1)
    full = dotted.strip()
    path = full.split(".")
    obj_type: Any = type(cfg)
    for depth, head in enumerate(path):
        types_ = _field_types(obj_type)
        if head not in types_:
            prefix = ".".join(path[:depth])
            where = f" in '{prefix}'" if prefix else ""
            raise ConfigError(f"unknown config key '{full}'{where} (known keys: {', '.join(sorted(types_))})")
        tp = types_[head]
        if depth < len(path) - 1:
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"config key '{full}': '{head}' is not a section")
            obj_type = tp
    return path, coerce(_parse_scalar_string(raw, tp), tp, full)


def _apply_changes(obj: T, changes: _Changes, prefix: str) -> T:
    kwargs = {}
    for name, value in changes.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _apply_changes(getattr(obj, name), value, key) if isinstance(value, _Changes) else value
    try:
        # a section may define how changes combine (ModelConfig keeps a derived d_ff derived)
        with_changes = getattr(obj, "with_changes", None)
        return with_changes(**kwargs) if with_changes is not None else dataclasses.replace(obj, **kwargs)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(prefix) else f"{prefix}: {message}") from exc


def apply_overrides(cfg: T, assignments: list[str] | None) -> T:
    """Apply ``section.key=value`` assignments to a (nested) dataclass, returning a new object.

    Every assignment is checked (key and type) first, then all are applied together, so
    the result is validated once: ``--set model.d_model=96 --set model.num_heads=4`` never
    passes through an invalid intermediate config.
    """
    changes = _Changes()
    for assignment in assignments or []:
        path, value = _parse_assignment(cfg, assignment)
        level = changes
        for head in path[:-1]:
            level = level.setdefault(head, _Changes())
        level[path[-1]] = value
    return _apply_changes(cfg, changes, "") if changes else cfg


def apply_override(cfg: T, assignment: str) -> T:
    """Apply one ``section.key=value`` assignment (see :func:`apply_overrides`)."""
    return apply_overrides(cfg, [assignment])


# ----------------------------------------------------------------------------- files


MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_ALIASES = 100


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` with the alias count bounded: a few hundred bytes of nested aliases (a "billion
    laughs") would otherwise expand into gigabytes as soon as the values are walked."""
    aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader))
    if aliases > MAX_YAML_ALIASES:
        raise ConfigError(f"config file {path} uses {aliases:,} YAML aliases (limit {MAX_YAML_ALIASES}); "
                          "write the values out")
    return yaml.safe_load(text) or {}


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict, with one-line errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {path.stat().st_size:,} bytes; a run config is a few KB "
                          f"(limit {MAX_CONFIG_BYTES:,}): is it the right file?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); is it the right file?") from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = _load_yaml(text, path)
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse {path}: {first}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, cls: type[T] = RunConfig) -> T:
    """Load ``path`` (a file or a preset name; the defaults when None) into ``cls`` and apply ``--set`` overrides."""
    cfg = from_dict(cls, read_mapping(resolve_config_path(path))) if path is not None else cls()
    return apply_overrides(cfg, overrides)


def dump_config(cfg: Any, path: str | Path) -> Path:
    """Write a config as TOML or YAML (by suffix), atomically."""
    path = Path(path)
    data = to_dict(cfg)
    text = yaml.safe_dump(data, sort_keys=False) if path.suffix in (".yaml", ".yml") else tomli_w.dumps(data)
    return atomic_write_text(path, text)


def describe_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """(key, type, default, docstring) for every field, recursing into sections: used by ``--help-config``."""
    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                    docs[node.target.id] = " ".join(str(nxt.value.value).split())
    except (OSError, TypeError, SyntaxError):
        pass
    rows = []
    defaults = cls()
    for name, tp in _field_types(cls).items():
        value = getattr(defaults, name)
        if dataclasses.is_dataclass(tp):
            rows += [(f"{name}.{k}", t, d, doc) for k, t, d, doc in describe_fields(tp)]
        else:
            rows.append((name, _type_name(tp), value, docs.get(name, "")))
    return rows
