"""The typed fields of the config: each key declared once with its help (`setting`), and the checks that turn
a YAML or `--set` value into the field's type, or into a one-line ConfigError naming the key."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any, Literal

from mlcls.errors import ConfigError


def setting(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING) -> Any:
    """A config field and its help, declared once: the CLI's option help, `mlcls config` and the commented
    configs/default.yaml (a test keeps it in sync) all read it from here."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def reject_unknown(raw: dict, known: dict, prefix: str, source: str | None = None) -> None:
    for key in raw:
        if key not in known:
            where = f"{source}: " if source else ""
            valid = ", ".join(k for k in known if k != "notes")
            raise ConfigError(f"{where}unknown key '{prefix}{key}' (valid: {valid})")


def build_section(cls: type, raw: dict, name: str):
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    reject_unknown(raw, known, f"{name}.")
    values = {key: coerce(value, hints[key], f"{name}.{key}") for key, value in raw.items()}
    return cls(**values)


def yaml_number(value: Any) -> Any:
    """YAML 1.1 reads "1e-4" (no dot) as a string: the number everyone means; any other value as it is."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    return value


def coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], key)
        for option in inner:  # the first type that takes the value (`float | Literal["auto"]`: 0.5 or auto)
            try:
                return coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {' or '.join(map(_expected, inner))}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        value = yaml_number(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:  # ".inf" or "nan" would pass every range check after this and train on NaN
            finite = math.isfinite(value)
        except OverflowError:  # an integer past float's range
            finite = False
        if not finite:
            shown = value if isinstance(value, float) else f"a {len(str(abs(value)))}-digit number"
            raise ConfigError(f"{key}: expected a finite number, got {shown}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {tp} for {key}")  # a bug in this module, not user error


def _expected(tp: Any) -> str:
    """What a value of type `tp` looks like, for the error of a field that takes one of several types."""
    if typing.get_origin(tp) is Literal:
        return ", ".join(map(str, typing.get_args(tp)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))
