"""Config files for ``branchgym train``: TOML, YAML or JSON overrides on a preset, checked
field by field against the typed config.

A file is a set of overrides. Its optional top-level ``preset`` names the base (the command's
``--preset`` wins over it); every other key must name a field of ``TrainConfig``, with tables
for the nested configs::

    preset = "quickstart"
    seed = 3

    [rl]
    steps = 50
    sil = true

    [rollout]
    algo = "aepo"

    [rollout.aepo]
    budget = 16

``branchgym config PRESET`` prints a preset in this form. Every mistake (an unknown key, a
wrong type, a value outside a ``Literal``, a file that does not parse) raises ``ConfigError``
whose message names the file and the key path, and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")
SUFFIXES = (".toml", ".yaml", ".yml", ".json")


class ConfigError(ValueError):
    """A config file or mapping that does not fit the typed config; the message says where."""


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The file's top-level table. Raises ``ConfigError`` for a missing, unparsable or
    non-table file, or an unknown suffix."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"{path}: unknown config format {path.suffix!r}; use one of {SUFFIXES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from exc
    try:
        data = _parse(text, path.suffix)
    except Exception as exc:  # each parser has its own error types; all mean "malformed"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {first}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of keys, not {_kind(data)}")
    return data


def _parse(text: str, suffix: str) -> Any:
    if suffix == ".toml":
        return tomllib.loads(text)
    if suffix == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


def apply_overrides(base: C, data: Mapping[str, Any], where: str = "") -> C:
    """``base`` (a dataclass instance) with the values in ``data`` replacing its fields,
    recursively; ``where`` prefixes key paths in error messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a table, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(base)}
    hints = typing.get_type_hints(type(base))
    changes = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{path}: unknown key; {_allowed(base)}")
        changes[key] = _convert(getattr(base, key), hints[key], value, path)
    return dataclasses.replace(base, **changes)


def _convert(current: Any, hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(current):
        return apply_overrides(current, value, path)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(current, inner, value, path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a table, got {_kind(value)}")
        return dict(value)
    if origin is tuple:
        return _tuple(args, value, path)
    return _scalar(hint, value, path)


def _tuple(args: tuple, value: Any, path: str) -> tuple:
    """A list as the tuple ``tuple[X, ...]`` or ``tuple[X, Y]`` describes, each item checked."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path}: expected a list, got {_kind(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif args and len(value) != len(args):
        raise ConfigError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
    if not args:  # a bare ``tuple``: nothing to check the items against
        return tuple(value)
    items = enumerate(zip(args, value, strict=True))
    return tuple(_convert(None, a, v, f"{path}[{i}]") for i, (a, v) in items)


def _scalar(hint: Any, value: Any, path: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise ConfigError(f"{path}: cannot set a field of type {hint} from a file")
    if not ok:
        raise ConfigError(f"{path}: expected {hint.__name__}, got {_kind(value)} {value!r}")
    return float(value) if hint is float else value


def _allowed(base: Any) -> str:
    return "allowed: " + ", ".join(f.name for f in dataclasses.fields(base))


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- writing


def to_toml(cfg: Any, preset: str | None = None) -> str:
    """``cfg`` as a TOML config file (``None`` fields are left out: TOML has no null)."""
    head = [f"preset = {json.dumps(preset)}"] if preset else []
    return "\n".join(head + _table(cfg, "")) + "\n"


def _table(cfg: Any, name: str) -> list[str]:
    lines, nested = [], []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((f.name, value))
        elif value is not None:
            lines.append(f"{f.name} = {_value(value)}")
    if name:
        lines = ["", f"[{name}]", *lines]
    for key, value in nested:
        lines += _table(value, f"{name}.{key}" if name else key)
    return lines


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        pairs = (f"{json.dumps(str(k))} = {_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


__all__ = ["SUFFIXES", "ConfigError", "apply_overrides", "read_mapping", "to_toml"]
