"""Typed configuration: frozen dataclasses built from YAML plus ``key=value`` overrides.

Every stage owns one small dataclass; every field has a default and a ``help`` string in its
metadata. ``build(cls, mapping)`` checks keys and types recursively and names the dotted key at
fault, so a typo in a YAML file or on the command line is a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")
# A number in exponent notation without a dot (2e-4): YAML 1.1 reads it as a string.
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def field(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with a default and a help string (lists/dicts get a factory)."""
    if isinstance(default, (list, dict)):
        factory = (lambda d=default: type(d)(d))  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _type_name(tp: Any) -> str:
    """How an error names a type: ``bool | Literal["auto"]`` is "bool or 'auto'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if origin is None:
        return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': {value!r} is not a valid {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return build(tp, value, prefix=f"{key}.")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):  # YAML 1.1 reads 2e-4 as a string
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"config key '{key}': expected a path, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")


def build(cls: type[T], data: Mapping[str, Any] | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (valid keys: {', '.join(sorted(names))})"
        )
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        # A nested section given in part keeps the field's own default for the rest (e.g.
        # teacher.model.dtype=bfloat16 must not reset teacher.model.name to ModelConfig's default).
        default = _default(defaults[key])
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            data[key] = _merge(to_dict(default), value)
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if prefix and not str(e).startswith("config key"):
            raise ConfigError(f"config section '{prefix.rstrip('.')}': {e}") from None
        raise


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, Mapping) else v
    return out


def to_dict(cfg: Any) -> Any:
    """A plain, YAML-safe dict of a (nested) config dataclass."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


# Keys that say where a stage ran or where its work was found, not what it made: left out of every
# hash, so a run finished on the CPU is reused on a GPU machine, runs made before a model's `device`
# key existed stay valid, and work copied from another run (teacher.reuse_answers,
# attribution.reuse_rationales: each refuses a source made differently) counts as this run's own.
PLACEMENT_KEYS = frozenset({"device", "reuse_answers", "reuse_rationales"})
# Keys added after runs were made: left out of a hash while unset, so those runs stay valid.
OMITTED_WHEN_UNSET = frozenset({"unlabeled", "labeled", "max_pool", "pool_min_confidence", "pool_keep",
                                "contrast"})


def _without_placement(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_placement(v) for k, v in value.items()
                if k not in PLACEMENT_KEYS and not (k in OMITTED_WHEN_UNSET and v is None)}
    if isinstance(value, list):
        return [_without_placement(v) for v in value]
    return value


def config_hash(cfg: Any) -> str:
    """Short stable hash of a config (or any JSON-able value): identifies what made an artifact.
    Placement keys (:data:`PLACEMENT_KEYS`) are left out, and so are the keys of
    :data:`OMITTED_WHEN_UNSET` while they are None."""
    blob = json.dumps(_without_placement(to_dict(cfg)), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings (values parsed as YAML) to a nested dict, returning a copy."""
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """YAML file (optional) + ``key=value`` overrides -> validated, frozen config ``cls``."""
    data = load_yaml(path) if path is not None else {}
    return build(cls, apply_overrides(data, overrides))


def help_table(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, str]]:
    """(dotted key, default, help) rows for every field, nested sections flattened.

    A nested section's defaults are those of its parent's default value (``defaults``), not of
    its type: a student's ``train`` section has the student's training defaults.
    """
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        if dataclasses.is_dataclass(tp):
            nested = default if dataclasses.is_dataclass(default) else None
            rows.extend(help_table(tp, prefix=f"{prefix}{f.name}.", defaults=nested))
            continue
        rows.append((f"{prefix}{f.name}", json.dumps(to_dict(default)), f.metadata.get("help", "")))
    return rows
