"""A search space: config keys and the values a trial may give them, read from YAML and checked against the
config before any trial starts.

    train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}     # a float range (log-uniform)
    train.epochs: {low: 1, high: 3}                      # an integer range (the key is an integer)
    model.max_length: {choices: [128, 256]}              # choices (a plain list means the same)
    loss.name: {choices: [bce, focal, asl]}
    loss.gamma: {low: 0.5, high: 4.0}                    # sampled only when the chosen loss takes gamma
    model.head_tokens: {low: 16, high: 96, when: {model.long_text: head_tail}}

Every key is a config key (`mlcls config` lists them). A loss parameter is sampled only for a loss that declares
it; `when: {KEY: VALUE or [VALUES]}` makes any key conditional on another (a searched choice, or the base
config's value). Errors are one line that names the file, the line and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlcls.config.fields import yaml_number
from mlcls.errors import ConfigError
from mlcls.tune.schema import KeyType, base_value, key_type, loss_takes

RANGE_FIELDS = ("low", "high", "log", "step")
SPEC_FIELDS = (*RANGE_FIELDS, "choices", "when")


@dataclass(frozen=True)
class Param:
    """One searched key: a range (int or float) or a list of choices, and when it is sampled."""

    key: str
    kind: str  # "int", "float" (ranges) or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (key, values it must have)
    loss_param: bool = False  # sampled only with a loss that takes it
    line: int = 0  # in the space file, for errors

    def extremes(self) -> list[tuple[str, Any]]:
        """The values that bound what this key may take: each checked against the config before the search."""
        if self.kind == "choice":
            return [("choice", value) for value in self.choices]
        return [("low", self.low), ("high", self.high)]

    def suggest(self, trial) -> Any:
        """This key's value in an Optuna trial (its parameter is named by the key)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """A search space read from YAML (load_space): the config keys searched, each with its values or range and
    the conditions under which it is drawn."""

    params: tuple[Param, ...]  # in sampling order: the keys that others depend on come first
    source: str = "space"

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def active(self, param: Param, chosen: dict[str, Any], base: dict[str, Any]) -> bool:
        """Whether `param` is sampled, given the values chosen so far and the base config (raw)."""
        for key, allowed in param.when:
            if chosen.get(key, base_value(base, key)) not in allowed:
                return False
        return not param.loss_param or loss_takes(chosen.get("loss.name", base_value(base, "loss.name")), param.key)

    def sample(self, trial, base: dict[str, Any]) -> dict[str, Any]:
        """A trial's values (dotted key -> value), drawn by Optuna: the active keys only."""
        chosen: dict[str, Any] = {}
        for param in self.params:
            if self.active(param, chosen, base):
                chosen[param.key] = param.suggest(trial)
        return chosen


def read_space(path: Path) -> tuple[list[tuple[str, Any, int]], str]:
    """The space file's entries (key, spec, line), in file order; a one-line ConfigError for a file that is not a
    mapping of keys."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{where}: search space file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the search space ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {problem}") from None
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode) or not data:
        raise ConfigError(f"{where}: a search space is a mapping of config keys to ranges or choices, e.g. "
                          "train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}")
    entries, seen = [], set()
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        key = _key_text(key_node, where, line)
        if key in seen:
            raise ConfigError(f"{where}:{line}: {key}: named twice")
        seen.add(key)
        entries.append((str(key), data[key], line))
    return entries, where


def _key_text(key_node: yaml.Node, where: str, line: int) -> str:
    """An entry's key as written; a one-line error for a key YAML reads as something else than a string (`on`,
    `yes`: a bool; `1`; `null`): no config key is one, and the parsed mapping holds it under another name."""
    if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str":
        return key_node.value
    if not isinstance(key_node, yaml.ScalarNode):
        raise ConfigError(f"{where}:{line}: a key is a config key (section.name, e.g. train.lr), not a list or a "
                          "mapping")
    kind = key_node.tag.rsplit(":", 1)[-1]  # bool, int, float, null, timestamp, merge
    raise ConfigError(f"{where}:{line}: {key_node.value}: YAML reads this key as {kind}, not as a config key "
                      "(section.name, e.g. train.lr)")


def parse_param(key: str, spec: Any, line: int, where: str) -> Param:
    """One entry of the space file as a Param, its form checked (its values are checked against the config later)."""
    def bad(problem: str) -> ConfigError:
        return ConfigError(f"{where}:{line}: {key}: {problem}")

    try:
        kind = key_type(key)
    except ConfigError as exc:
        raise bad(str(exc)) from None
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise bad(f"expected {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r} (a fixed value belongs in the "
                  "base config)")
    unknown = [name for name in spec if name not in SPEC_FIELDS]
    if unknown:
        raise bad(f"unknown field '{unknown[0]}' (valid: {', '.join(SPEC_FIELDS)})")
    if kind.kind == "float":
        spec = _numbers_read(spec)
    when = _when(spec.get("when"), bad)
    if "choices" in spec:
        if any(name in spec for name in RANGE_FIELDS):
            raise bad("give either choices or a range (low, high), not both")
        return Param(key, "choice", choices=_choices(spec["choices"], bad), when=when, loss_param=kind.loss_param,
                     line=line)
    return _range(key, spec, kind, when, line, bad)


def _numbers_read(spec: dict[str, Any]) -> dict[str, Any]:
    """A float key's values with YAML 1.1's strings for `1e-4` (no dot) read as the numbers they are, as the
    config loader reads them: a trial then draws 0.0001, which its run's config.yaml saves, and a resumed
    study compares like with like."""
    read = {name: yaml_number(value) for name, value in spec.items() if name in ("low", "high", "step")}
    if isinstance(spec.get("choices"), list):
        read["choices"] = [yaml_number(value) for value in spec["choices"]]
    return {**spec, **read}


def _choices(values: Any, bad) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        raise bad("choices must be a non-empty list")
    for value in values:
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise bad(f"choice {value!r}: each choice must be one value (a number, a string, true/false or null)")
    if len({repr(v) for v in values}) != len(values):
        raise bad("a choice is listed twice")
    return tuple(values)


def _range(key: str, spec: dict[str, Any], kind: KeyType, when, line: int, bad) -> Param:
    if kind.kind == "other":
        raise bad("this key is not a number: give its values as choices: [...]")
    if "low" not in spec or "high" not in spec:
        raise bad("a range needs low and high (or give choices: [...])")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is None and name == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"{name} must be a number, got {value!r}")
        if kind.kind == "int" and not isinstance(value, int):
            raise bad(f"{name} must be an integer ({key} is an integer), got {value!r}")
    if not isinstance(log, bool):
        raise bad(f"log must be true or false, got {log!r}")
    if not low < high:
        raise bad(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise bad(f"a log range needs low above 0, got {low}")
    if step is not None and not step > 0:
        raise bad(f"step must be above 0, got {step}")
    if step is not None and log and not (kind.kind == "int" and step == 1):
        raise bad("step and log exclude each other")
    if step is not None and step > high - low:
        raise bad(f"step ({step}) is larger than the range ({low} to {high})")
    if step is not None:  # Optuna would move high to the last step below it, with a warning and not a word of ours
        steps = (high - low) / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            last = low + int(steps) * step
            raise bad(f"step {step} does not divide the range {low} to {high}: make high {last:g} (or "
                      f"{last + step:g})")
    return Param(key, kind.kind, low=low, high=high, log=log, step=step, when=when, loss_param=kind.loss_param,
                 line=line)


def _when(when: Any, bad) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise bad("when must map config keys to a value or a list of values, e.g. when: {loss.name: focal}")
    conditions = []
    for key, allowed in when.items():
        try:
            key_type(str(key))
        except ConfigError as exc:
            raise bad(f"when: {exc}") from None
        conditions.append((str(key), tuple(allowed) if isinstance(allowed, list) else (allowed,)))
    return tuple(conditions)
