"""What the config schema says about a key that a search space names: whether it exists, what type it takes, and
whether a value passes the config's own checks. The config (mlcls/config/) is the one authority: a value is
checked by building the config it would give, so a range the trainer would refuse is refused before any trial.

Loss parameters (`loss.gamma`) are keys of the loss section only for the losses that declare them (loss_specs.py).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from mlcls.config import Config
from mlcls.errors import ConfigError
from mlcls.loss_specs import LOSSES

# Keys that are not the search's to change, and why.
NOT_SEARCHABLE = {
    "output.dir": "each trial's run goes in the study's folder, named by its trial",
    "output.name": "each trial's run goes in the study's folder, named by its trial",
    "train.select_metric": "it is the figure the trials are compared by: set it in the base config",
    "model.trust_remote_code": "code from the encoder's repository runs only when the command line asks "
                               "(--trust-remote-code)",
}


@dataclass(frozen=True)
class KeyType:
    """A config key's type as a search sees it: a number (a range or choices) or anything else (choices only)."""

    key: str
    kind: Literal["int", "float", "other"]
    loss_param: bool = False  # a parameter of some losses, sampled only with a loss that takes it


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "notes"}  # type: ignore[misc]


def key_type(key: str) -> KeyType:
    """The type of a dotted config key, or a ConfigError that says what is wrong with the key."""
    section, dot, name = key.partition(".")
    sections = _sections()
    if not dot or not name or "." in name:
        raise ConfigError(f"'{key}' is not a config key: name one as section.key, e.g. train.lr")
    if section not in sections:
        raise ConfigError(f"unknown config section '{section}' (valid: {', '.join(sections)})")
    if key in NOT_SEARCHABLE:
        raise ConfigError(f"{key} cannot be searched: {NOT_SEARCHABLE[key]}")
    if section == "loss" and name != "name":
        takers = [loss for loss, spec in LOSSES.items() if name in spec.params]
        if not takers:
            raise ConfigError(f"unknown loss parameter '{name}' (no loss takes it; see `mlcls losses`)")
        default = LOSSES[takers[0]].params[name]
        return KeyType(key, "float" if isinstance(default, float) else "other", loss_param=True)
    fields = {f.name for f in dataclasses.fields(sections[section])}
    if name not in fields:
        raise ConfigError(f"unknown key '{key}' (valid in {section}: {', '.join(sorted(fields))})")
    return KeyType(key, _kind(typing.get_type_hints(sections[section])[name]))


def _kind(tp: Any) -> Literal["int", "float", "other"]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        # X | None, or a number with named values (`float | Literal["auto"]`): a range spans the number
        inner = [arg for arg in typing.get_args(tp)
                 if arg is not type(None) and typing.get_origin(arg) is not Literal]
        tp = inner[0] if len(inner) == 1 else tp
    if tp is int:
        return "int"
    return "float" if tp is float else "other"


def loss_takes(loss: str, key: str) -> bool:
    """Whether the loss named `loss` has the parameter of the key loss.PARAM."""
    spec = LOSSES.get(loss)
    return spec is not None and key.partition(".")[2] in spec.params


def base_value(raw: dict[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    return raw.get(section, {}).get(name)


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The raw config (Config.to_dict's shape) with `values` (dotted key -> value) set. A loss other than the
    base's starts from its own defaults: the base loss's parameters belong to the base loss."""
    merged = copy.deepcopy(raw)
    if "loss.name" in values and values["loss.name"] != merged["loss"].get("name"):
        merged["loss"] = {"name": values["loss.name"]}
    for key, value in values.items():
        section, _, name = key.partition(".")
        merged[section][name] = value
    return merged


def build(raw: dict[str, Any]) -> Config:
    """The config that the raw mapping gives, validated as a YAML file would be (ConfigError otherwise)."""
    return Config.from_dict(raw)
