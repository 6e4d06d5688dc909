"""A search space checked as a whole against its base config, before any trial starts: conditions that can hold,
loss parameters that some searched loss takes, and every bound and choice a value the config accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcls.errors import ConfigError
from mlcls.tune.schema import base_value, build, loss_takes, with_values
from mlcls.tune.space import Param, SearchSpace, parse_param, read_space


def load_space(path: Path, base: dict[str, Any]) -> SearchSpace:
    """The search space in `path` over the base config `base` (Config.to_dict's shape): a one-line ConfigError
    naming the file, the line and the key for anything a trial could not run with."""
    entries, where = read_space(path)
    params = [parse_param(key, spec, line, where) for key, spec, line in entries]
    by_key = {p.key: p for p in params}
    for param in params:
        _check_conditions(param, by_key, base, where)
        _check_values(param, by_key, base, where)
    needed = {key for p in params for key, _ in p.when}
    if any(p.loss_param for p in params):
        needed.add("loss.name")  # the loss is chosen before its parameters
    ordered = [p for p in params if p.key in needed] + [p for p in params if p.key not in needed]
    return SearchSpace(tuple(ordered), where)


def _losses_tried(by_key: dict[str, Param], base: dict[str, Any]) -> tuple[str, ...]:
    searched = by_key.get("loss.name")
    return tuple(searched.choices) if searched is not None else (base_value(base, "loss.name"),)


def _check_conditions(param: Param, by_key: dict[str, Param], base: dict[str, Any], where: str) -> None:
    def bad(problem: str) -> ConfigError:
        return ConfigError(f"{where}:{param.line}: {param.key}: {problem}")

    for key, allowed in param.when:
        if key == param.key:
            raise bad("when names the key itself")
        other = by_key.get(key)
        if other is None:  # a key of the base config: the condition is fixed for the whole search
            if base_value(base, key) not in allowed:
                raise bad(f"never sampled: the base config has {key}: {base_value(base, key)!r}, and when asks for "
                          f"{_listed(allowed)}")
            continue
        if other.kind != "choice":
            raise bad(f"when: {key} is searched as a range; a condition needs a key searched as choices")
        if other.when or other.loss_param:
            raise bad(f"when: {key} is itself conditional; a condition may name only an unconditional key")
        missing = [value for value in allowed if value not in other.choices]
        if missing:
            raise bad(f"when: {key}: {missing[0]!r} is not one of its choices ({_listed(other.choices)})")
    if param.loss_param:
        tried = _losses_for(param, by_key, base)
        if not any(loss_takes(loss, param.key) for loss in tried):
            name = param.key.partition(".")[2]
            raise bad(f"never sampled: no loss this search tries ({_listed(tried)}) takes {name}"
                      + (" (with its when on loss.name)" if any(key == "loss.name" for key, _ in param.when) else ""))


def _losses_for(param: Param, by_key: dict[str, Param], base: dict[str, Any]) -> list[str]:
    """The losses a trial may have when `param` is drawn: those the search tries, less those its own `when` on
    loss.name leaves out (gamma `when: {loss.name: bce}` is never drawn: bce takes no gamma)."""
    tried = _losses_tried(by_key, base)
    for key, allowed in param.when:
        if key == "loss.name":
            tried = [loss for loss in tried if loss in allowed]
    return tried


def _check_values(param: Param, by_key: dict[str, Param], base: dict[str, Any], where: str) -> None:
    """Each bound and choice, set in the base config with its conditions met, must give a config that loads."""
    setup = {key: allowed[0] for key, allowed in param.when if key in by_key}
    if param.loss_param:
        setup["loss.name"] = next(loss for loss in _losses_for(param, by_key, base) if loss_takes(loss, param.key))
    for label, value in param.extremes():
        try:
            build(with_values(base, {**setup, param.key: value}))
        except ConfigError as exc:
            raise ConfigError(f"{where}:{param.line}: {param.key}: {label} {value!r}: {exc}") from None


def _listed(values) -> str:
    return ", ".join(str(v) for v in values)
