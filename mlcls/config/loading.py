"""Resolving a config: defaults < YAML file < `--set key=value` < named CLI options, and the config as
commented YAML (`mlcls config`)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from mlcls.config.fields import reject_unknown
from mlcls.config.sections import DATA_PATH_KEYS, Config, dotted_keys
from mlcls.errors import ConfigError


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults < YAML file < `--set key=value` overrides < named options (None = not given)."""
    raw = Config().to_dict()
    file_loss: dict[str, Any] | None = None
    explicit: set[str] = set()  # the keys set here, not left at their defaults
    file_keys: set[str] = set()  # the keys whose value is the file's (not replaced by --set or an option)
    if path is not None:
        from_file = read_yaml_mapping(Path(path))
        reject_unknown(from_file, raw, "", source=str(path))
        for section, value in from_file.items():  # before --set, which would blame itself ("not a section")
            if isinstance(raw.get(section), dict) and value is not None and not isinstance(value, dict):
                line = _key_line(Path(path), section)
                raise ConfigError(f"{path}{f':{line}' if line else ''}: {section}: expected a mapping of settings, "
                                  f"got {type(value).__name__}")
        file_loss = from_file.get("loss") if isinstance(from_file.get("loss"), dict) else None
        raw = _deep_merge(raw, from_file)
        file_keys = set(dotted_keys(from_file))
        explicit.update(file_keys)
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
        _set_dotted(raw, key.strip(), _set_value(key.strip(), text))
        explicit.add(key.strip())
        file_keys.discard(key.strip())
    for key, value in (options or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)
            explicit.add(key)
            file_keys.discard(key)

    notes: list[str] = []
    # Loss parameters in a file belong to that file's loss. When --loss/--set picks another loss, they
    # would be rejected as unknown parameters; drop them instead, and say so.
    # (Parameters in a file that names no loss are for whichever loss is chosen: kept.)
    if file_loss and "name" in file_loss and file_loss["name"] != raw["loss"].get("name"):
        dropped = sorted(k for k in file_loss if k != "name" and raw["loss"].get(k) == file_loss[k])
        for key in dropped:
            del raw["loss"][key]
        if dropped:
            notes.append(
                f"{path}: loss parameters {', '.join(dropped)} belong to loss "
                f"'{file_loss.get('name', 'bce')}' and are not used with '{raw['loss']['name']}'"
            )
    try:
        config = Config.from_dict(raw)
    except ConfigError as exc:
        raise _in_file(exc, path, file_keys) from None
    threshold = config.threshold
    if threshold.quantile_scale == "auto" and threshold.rule not in ("prior_quantile", "hybrid", "auto"):
        notes.append(f"threshold.quantile_scale auto: rule {threshold.rule} has no scale to choose (prior_quantile, "
                     "hybrid and auto have)")
    config.notes = notes
    config.explicit = frozenset(explicit)  # type: ignore[misc]  # the instance's own
    config.from_file = frozenset(file_keys)  # type: ignore[misc]
    return config


def check_remote_code_asked(config: Config, path: str | Path | None) -> None:
    """The commands' rule for an encoder's own code: it runs when the command line asks (--trust-remote-code, or
    --set model.trust_remote_code=true), never because a config file says so. A config file is passed around like
    a run folder (a colleague's, a tutorial's), and a run folder's request is refused the same way (load_run)."""
    key = "model.trust_remote_code"
    if path is not None and config.model.trust_remote_code and key in config.from_file:
        line = _key_line(Path(path), key)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {key}: true would run code from the encoder's "
                          "repository, which mlcls does only when the command line asks: add --trust-remote-code "
                          "if you trust its source")


def _in_file(exc: ConfigError, path: str | Path | None, file_keys: set[str]) -> ConfigError:
    """A config error about a key whose value came from the file, with the file and the key's line in front (the
    file is where the user must look); an error about a --set value or a default, as it was."""
    message = str(exc)
    # the loss registry's errors name the loss and the parameter, not the dotted key the file holds
    named = [f"loss.{name}" for name in re.findall(r"has no parameter '([a-z_0-9]+)'", message)]
    named += ["loss.name"] if message.startswith("unknown loss '") else []
    for key in [*re.findall(r"\b[a-z_]+\.[a-z_0-9]+\b", message), *named]:
        if path is not None and key in file_keys:
            line = _key_line(Path(path), key)
            return ConfigError(f"{path}{f':{line}' if line else ''}: {message}")
    return exc


def _key_line(path: Path, dotted: str) -> int | None:
    """The line of `section.key` in a YAML config file (None where the file says it otherwise)."""
    section, _, key = dotted.partition(".")
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    for level in (section, key) if key else (section,):
        if not isinstance(node, yaml.MappingNode):
            return None
        found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == level]
        if not found:
            return None
        key_node, node = found[0]
    return key_node.start_mark.line + 1


# The keys absolute_data_paths rewrites (dotted): what a run's config.yaml holds absolute.
ABSOLUTE_PATH_KEYS = (*(f"data.{key}" for key in DATA_PATH_KEYS), "model.encoder")


def absolute_data_paths(config: Config) -> Config:
    """The config with its data files (data.train, data.validation, data.test) made absolute, in place, and
    returned; and model.encoder too when it names a folder here (not a Hub name). A run saves its config this way
    so that `mlcls eval` and `train --resume` find the files from any folder: a relative path in a run's
    config.yaml means "relative to where the run was trained"."""
    for key in DATA_PATH_KEYS:
        value = getattr(config.data, key)  # ~ too: a config built in Python has not been through from_dict
        if value and "://" not in value and (value.startswith("~") or not Path(value).is_absolute()):
            setattr(config.data, key, str(Path(value).expanduser().absolute()))
    encoder = Path(config.model.encoder).expanduser() if config.model.encoder else None
    if encoder is not None and encoder.is_dir() and not Path(config.model.encoder).is_absolute():
        config.model.encoder = str(encoder.absolute())
    return config


def first_difference(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first dotted key (section.key) whose value differs between two configs as `to_dict` gives them, with
    both values; in the config's own order (loss.name before its parameters). None: the same."""
    for section in [*before, *(name for name in after if name not in before)]:
        old, new = before.get(section) or {}, after.get(section) or {}
        for key in [*old, *(name for name in new if name not in old)]:
            if old.get(key) != new.get(key):
                return f"{section}.{key}", old.get(key), new.get(key)
    return None


def config_help(key: str) -> str:
    """The help of a dotted key (train.epochs), as declared on its field."""
    section, _, name = key.partition(".")
    section_cls = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "notes"}[section]
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(section_cls)}[name]


def commented_yaml(config: Config, header: str = "") -> str:
    """The config as YAML, every key with its help as a comment (`mlcls config`, configs/default.yaml)."""
    lines = [header.rstrip(), ""] if header else []
    for section, values in config.to_dict().items():
        lines.append(f"{section}:")
        section_cls = type(getattr(config, section))
        helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(section_cls)}
        for key, value in values.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()[1:-1]
            if "\n" in text:  # a string with a line break ("\n"): JSON's quoting is valid YAML, on one line
                text = f"{key}: {json.dumps(value)}"
            help_text = helps.get(key) or ("a parameter of this loss" if section == "loss" else "")
            lines.append(f"  {text:<34}" + (f" # {help_text}" if help_text else "").rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load keeps the last of two equal keys in a mapping and drops the first without a word: a config
    with `train: {epochs: 2}` and, lower down, `train: {lr: 0.1}` trained 4 epochs. Here that is an error."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    twice = key in seen
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                if twice:
                    raise yaml.constructor.ConstructorError(None, None, f"{key!r} is named twice in one mapping "
                                                            "(YAML would keep the second and drop the first)",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # safe_load, keys once
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _set_value(key: str, text: str) -> Any:
    """The value of `--set key=text`: as YAML reads it (_parse_scalar), but a key declared text keeps the text
    typed (`--set output.name=001` is the run 001, as `--name 001`, not the number 1)."""
    value = _parse_scalar(text)
    return text.strip() if isinstance(value, bool | int | float) and _declared_text(key) else value


def _declared_text(key: str) -> bool:
    """Whether a dotted key is declared text (`str` or `str | None`: output.name, data.id_field): its --set value
    is then the text typed, as its option's (`--name 001`), not the number or boolean YAML reads it as."""
    import typing

    section, _, name = key.partition(".")
    cls = typing.get_type_hints(Config).get(section)
    if cls is None or not dataclasses.is_dataclass(cls):
        return False
    declared = typing.get_type_hints(cls).get(name)
    return declared is str or (declared is not None and set(typing.get_args(declared)) == {str, type(None)})


def _parse_scalar(text: str) -> Any:
    """A --set value as YAML reads it (numbers, true/false, null, [lists], {mappings}, 'quoted strings', an
    explicit `!!str 2024`), except where YAML would read plain text as something else than what was typed:
    `exp #2` (a comment), `|` and `>` (block scalars), `-` and `a: 1` (a list, a mapping: written [..], {..}),
    ` ` (blank), `2024-01-01` (a date), `1:30` (YAML 1.1's base 60: 90), `010` and `09` (octal 8, a string)."""
    import datetime

    stripped = text.strip()
    if not stripped:
        return text  # "" or a separator of spaces, as given
    if re.fullmatch(r"[-+]?[0-9][0-9_]*", stripped):
        return int(stripped.replace("_", ""), 10)  # decimal, leading zeros and all
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if stripped[0] == "!":  # a tag says what the value is
        return value
    if isinstance(value, str) and stripped[0] not in "'\"":
        return stripped
    if isinstance(value, list | dict) and stripped[0] not in "[{":
        return stripped
    if isinstance(value, datetime.date) or (isinstance(value, int | float) and ":" in stripped):
        return stripped
    return value


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            if part not in node:
                raise ConfigError(f"unknown key '{'.'.join(parts[: i + 1])}' in --set {key}")
            raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    if len(parts) == 1:
        raise ConfigError(f"--set {key}: name a key inside a section, e.g. train.{key}")
    node[parts[-1]] = value


def _deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
