"""The run a training starts from (model.init_from, `mlcls train --init-from RUN`): found and checked to be a
finished, whole run (find.py, validation.py), read through the run's own readers (files.py, model_files.py), and
checked to fit the config it is to be trained on, before anything is trained.

What must fit, and why (each misfit is one line, before training):

- the head kind (model.head): a linear head's rows cannot become a transformers head's, nor the other way round;
- the encoder: the family (architecture, layers, width) and the tokenizer that the config names must be the
  run's (the same model under another name, a hub name and its local copy, is fine): token ids mean what they
  meant to the run's encoder;
- how a text is read (model.max_length, model.pooling with the linear head, model.long_text and its settings):
  a model can be trained on in another way, but not by accident, so a value that differs from the run's is
  accepted only when the config sets it (a file, --set or a named option; Config.explicit), with a note.

A cross-fitted run without train.refit predicts with its K fold models: there is no one model to start from
(one of its folds is a run of its own, which can be named instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlcls.config import Config
from mlcls.errors import ConfigError, RunDirError
from mlcls.run.files import export_format, peek_manifest, read_config, read_labels
from mlcls.run.find import resolve_run
from mlcls.run.layout import ENCODER, HEAD, MANIFEST, fold_dir, has_model
from mlcls.run.validation import validate_run

KEY = "model.init_from"
# How a text becomes the encoder's input and its vector: what the parent's weights were trained to read.
READING_KEYS = ("max_length", "pooling", "long_text", "head_tokens", "chunk_overlap", "max_chunks", "chunk_pooling")


@dataclass(frozen=True)
class ParentRun:
    """A finished run to start from: where it is (resolved: runs/latest is followed), its config and labels."""

    path: Path
    config: Config
    labels: list[str]


def read_parent(init_from: str) -> ParentRun:
    """The finished run that `init_from` names, whole (validate_run), with one model to start from."""
    try:
        path = resolve_run(init_from)
        if export_format(path) is not None:
            source = (peek_manifest(path) or {}).get("source_run", f"see {path / MANIFEST}")
            raise RunDirError(f"{path}: an export, not a run; start from the run it came from ({source})")
        validate_run(path)
        config = read_config(path)
    except RunDirError as exc:
        raise RunDirError(f"{KEY}: {exc}") from None
    if not has_model(path):  # cross-fitted, the K fold models predict together
        raise RunDirError(f"{KEY}: {path} is cross-fitted without train.refit: it predicts with the mean of "
                          f"{config.train.folds} fold models, and a training starts from one model; name one fold "
                          f"({fold_dir(path, 1)}) or train the run with --set train.refit=true")
    return ParentRun(path, config, read_labels(path).labels)


def check_start(parent: ParentRun, config: Config) -> list[str]:
    """Raise a one-line ConfigError when `config` cannot start from `parent`; else the notes to print (the
    settings that differ from the parent's because the config says so)."""
    mine, theirs = config.model, parent.config.model
    if mine.head != theirs.head:
        raise ConfigError(f"{KEY}: {parent.path} has model.head {theirs.head}, this config {mine.head}: a training "
                          "starts from a run with the same kind of head")
    check_encoder(parent, config)
    notes = []
    for key in READING_KEYS:
        if getattr(mine, key) == getattr(theirs, key) or not _applies(key, mine.head, mine.long_text, theirs.long_text):
            continue
        ours, its = (_yaml(getattr(section, key)) for section in (mine, theirs))
        if f"model.{key}" not in config.explicit:
            raise ConfigError(f"{KEY}: {parent.path} was trained with model.{key} {its}, this config has {ours} "
                              f"(the default): set it to say which (--set model.{key}={its} keeps the run's)")
        notes.append(f"model.{key} is {ours} here, {its} in {parent.path}: as the config says, the run's model "
                     "learns to read texts this way")
    return notes


def _yaml(value: object) -> str:
    """A setting as --set spells it (null, not None)."""
    return "null" if value is None else str(value)


def _applies(key: str, head: str, long_text: str, parent_long_text: str) -> bool:
    """Whether a reading setting shapes what the model sees: pooling with the linear head only, a long_text mode's
    own settings only when both runs read texts that way."""
    if key == "pooling":
        return head == "linear"
    if key == "head_tokens":
        return long_text == parent_long_text == "head_tail"
    if key in ("chunk_overlap", "max_chunks", "chunk_pooling"):
        return long_text == parent_long_text == "chunks"
    return True


def check_encoder(parent: ParentRun, config: Config) -> None:
    """The encoder the config names must be the parent's: the same name, or another name for the same family
    (architecture, layers, width) and tokenizer (the same vocabulary)."""
    from mlcls.model.classifier import resolve_encoder  # torch: only when a training starts from a run

    named, its = config.model.encoder, parent.config.model.encoder
    if resolve_encoder(named) == resolve_encoder(its):
        return
    trust = config.model.trust_remote_code
    try:
        ours = _encoder_identity(resolve_encoder(named), trust)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{KEY}: cannot load the encoder {named!r} that the config names to compare it with "
                          f"{parent.path}'s ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}); "
                          f"name the run's encoder: --model {its}") from None
    theirs = _encoder_identity(str(parent.path / ENCODER), trust)
    if ours != theirs:
        what = "family" if ours[0] != theirs[0] else "tokenizer"
        raise ConfigError(f"{KEY}: {parent.path} was trained from the encoder {its!r} ({theirs[0]}), this config "
                          f"names {named!r} ({ours[0]}), another {what}: a training starts from a run of the same "
                          f"encoder family and tokenizer; name the run's: --model {its}")


def _encoder_identity(source: str, trust_remote_code: bool) -> tuple[str, dict[str, int]]:
    """(the family in words: architecture, layers, width; the tokenizer's vocabulary) of an encoder, from its
    config and tokenizer files (no weights are loaded)."""
    from transformers import AutoConfig, AutoTokenizer

    from mlcls.model.classifier import quiet_transformers

    quiet_transformers()
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    family = (f"{config.model_type}, {getattr(config, 'num_hidden_layers', '?')} layers, hidden size "
              f"{getattr(config, 'hidden_size', '?')}")
    return family, dict(tokenizer.get_vocab())


def check_parent_code(init_from: str | None, trusted: bool) -> None:
    """Refuse, in one line and before anything is loaded, a run to start from (model.init_from; None: none) that
    asks to run its own code, unless the command line said --trust-remote-code (`trusted`). Not
    model.trust_remote_code: a config's key was written for the user's own encoder, and the run may come from
    someone else."""
    from mlcls.run.model_files import check_remote_code

    if init_from is None:
        return
    parent = read_parent(init_from)
    check_remote_code(parent.path, [parent.path / ENCODER], parent.config, trusted)


def load_parent_model(parent: ParentRun, trust_remote_code: bool, attention_dropout: float | None = None):
    """(classifier, tokenizer) of the parent, as `mlcls predict` would load it: weights from safetensors only, and
    code the run carries runs only with the user's trust_remote_code (model_files.check_remote_code).
    `attention_dropout`: the training's model.attention_dropout (None: the parent encoder's own)."""
    from mlcls.model.attention import attention_dropout_setting
    from mlcls.model.classifier import quiet_transformers
    from mlcls.run.model_files import check_remote_code, load_model  # transformers: only when it is needed

    quiet_transformers()
    check_remote_code(parent.path, [parent.path / ENCODER], parent.config, trust_remote_code)
    settings = attention_dropout_setting(str(parent.path / ENCODER), attention_dropout, trust_remote_code)
    return load_model(parent.path, parent.config, len(parent.labels), trust_remote_code, settings)


def weight_files(run: Path) -> list[Path]:
    """The files that hold a run's model weights (encoder/'s safetensors, a shard each when sharded, and the
    linear head's), in a fixed order: what provenance.json hashes for a run started from it."""
    return sorted((run / ENCODER).glob("*.safetensors")) + ([run / HEAD] if (run / HEAD).is_file() else [])
