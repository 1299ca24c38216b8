"""Frozen, validated configuration dataclasses and `--set section.field=value` overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value or override; the message names the field."""


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_scalar(field: str, text: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        return _parse_scalar(field, text, args[0])
    if origin is tuple:
        (elem, *_rest) = typing.get_args(typ)
        items = [t for t in text.split(",") if t != ""]
        return tuple(_parse_scalar(field, t, elem) for t in items)
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if text not in choices:
            raise ConfigError(f"Field `{field}` must be one of {list(choices)}, got {text!r}.")
        return text
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        if typ is str:
            return text
    except ValueError:
        raise ConfigError(f"Field `{field}` expects {typ.__name__}, got {text!r}.") from None
    raise ConfigError(f"Field `{field}` cannot be set from the command line.")


def apply_overrides(cfg, overrides: list[str]):
    """Return ``cfg`` with ``section.field=value`` overrides applied; unknown keys and bad types are refused."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like section.field=value.")
        key, text = item.split("=", 1)
        cfg = _set_path(cfg, key.strip().split("."), text.strip(), key.strip())
    return cfg


def _set_path(obj, parts: list[str], text: str, full: str):
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"Unknown configuration key `{full}`.")
    names = {f.name for f in dataclasses.fields(obj)}
    head = parts[0]
    if head not in names:
        raise ConfigError(f"Unknown configuration key `{full}` (known here: {', '.join(sorted(names))}).")
    current = getattr(obj, head)
    if len(parts) == 1:
        if dataclasses.is_dataclass(current):
            raise ConfigError(f"Key `{full}` names a section; set one of its fields.")
        value = _parse_scalar(full, text, _field_types(type(obj))[head])
    else:
        value = _set_path(current, parts[1:], text, full)
    return dataclasses.replace(obj, **{head: value})


def to_dict(cfg) -> dict:
    """Plain JSON-ready dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from ``to_dict`` output; unknown keys are refused."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"Unknown configuration key `{sorted(unknown)[0]}` for {cls.__name__}.")
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = from_dict(typ, value)
        elif typing.get_origin(typ) is tuple:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_hash(cfg) -> str:
    """Short stable hash of a config (the cache key of a run)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check(condition: bool, field: str, message: str) -> None:
    """Raise ConfigError naming ``field`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"Field `{field}` {message}.")
