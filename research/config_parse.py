"""A config from and to plain values: dotted keys, command-line overrides and short flags, nested dicts.

Values are parsed by the field's type (research/config.py) and checked against `Literal` choices; a bad
key or value is a ConfigError naming the key. `apply_overrides` then fills the dependent defaults and runs
the cross-field checks (research/config_checks.py).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from research.config import Config, ConfigError
from research.config_checks import resolve_defaults, validate

# Short flags for the common axes -> dotted field.
SHORT_FLAGS = {
    "fusion": "model.fusion",
    "loss": "loss.name",
    "task": "model.task",
    "backend": "run.backend",
    "modalities": "model.modalities",
    "dataset": "data.dataset",
    "seed": "run.seed",
    "epochs": "optim.epochs",
    "lr": "optim.lr",
}


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config, for logs and run records (tuples stay tuples; JSON writes them as lists)."""
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from `to_dict` output, checking every key and value."""
    cfg = Config()
    for key, value in flatten(d).items():
        set_value(cfg, key, value)
    return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted key: leaf value}: {"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}."""
    flat = {}
    for k, v in d.items():
        flat |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return flat


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted field, parsing strings by the field's type; raise ConfigError naming the key."""
    key = SHORT_FLAGS.get(key, key)
    *path, name = key.split(".")
    node = cfg
    for part in path:
        if not dataclasses.is_dataclass(node) or part not in _fields(node):
            raise ConfigError(f"unknown config key '{key}'")
        node = getattr(node, part)
    if not dataclasses.is_dataclass(node) or name not in _fields(node):
        allowed = ", ".join(sorted(_fields(node))) if dataclasses.is_dataclass(node) else ""
        raise ConfigError(f"unknown config key '{key}'" + (f" (known here: {allowed})" if allowed else ""))
    hint = typing.get_type_hints(type(node))[name]
    if dataclasses.is_dataclass(hint):
        raise ConfigError(f"config key '{key}' is a section; set one of its fields")
    setattr(node, name, _parse(key, hint, value))


def _fields(node: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(node)}


def _parse(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is types.UnionType:  # `T | None`: None (or "none" on the command line) means "the default"
        if value is None or str(value).strip().lower() == "none":
            return None
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
        origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"bad value {value!r} for '{key}': allowed values are {', '.join(map(str, allowed))}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [s.strip() for s in items if str(s).strip()]
        (item_hint, _) = typing.get_args(hint)
        parsed = tuple(_parse(key, item_hint, s) for s in items)
        if key == "model.modalities" and (not parsed or len(set(parsed)) != len(parsed)):
            raise ConfigError(f"bad value {value!r} for '{key}': give a non-empty list of distinct modalities")
        return parsed
    try:
        if hint is bool:
            return _parse_bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value {value!r} for '{key}': expected {hint.__name__}") from None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def apply_overrides(cfg: Config, args: list[str]) -> Config:
    """Apply `--key=value`, `--key value` and short flags, in order."""
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument '{arg}': use --key=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError(f"missing value for '--{key}'")
            value = args[i + 1]
            i += 1
        set_value(cfg, key, value)
        i += 1
    resolve_defaults(cfg)
    validate(cfg)
    return cfg
