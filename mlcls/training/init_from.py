"""How a training starts from a finished run's model (model.init_from, `mlcls train --init-from RUN`) rather
than from the encoder that model.encoder names with a fresh head (recipe.prepare, the default).

With a run to start from (its reading and checks: mlcls/run/parent.py; its weights carried over:
mlcls/model/warm_start.py):

- the labels are this training data's, as always; the run's labels that the data lacks are dropped, with a note
  naming them, or with model.init_keep_labels kept, as labels the data does not annotate (masked out of the
  loss and the metrics, as a null confidence is), so that their rows stay as the run learned them;
- the decision rule is tuned afresh on this training's validation data, and label_stats.json counts this
  training's data: nothing of the run's rule or counts is carried over;
- the recipe (prepare) and cross-fitting (each fold and the refit start from the run) call the same functions,
  and a resumed training starts from the run again before its checkpoint's weights replace the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from mlcls.config import Config
from mlcls.data.labels import LabelSpace, LabelStats
from mlcls.data.records import Record
from mlcls.model.warm_start import carry_over
from mlcls.run.parent import ParentRun, check_start, load_parent_model, read_parent
from mlcls.training.data import TrainingData


@dataclass(frozen=True)
class Start:
    """The run a training starts from, checked to fit its config, and the notes that checking left."""

    parent: ParentRun
    notes: list[str]
    keep_labels: bool  # model.init_keep_labels


def read_start(config: Config) -> Start | None:
    """The run model.init_from names (None without one), checked to fit `config` (one-line errors). Its path is
    written back resolved, before the run's config.yaml is: `--init-from runs/latest` must keep naming that run
    once runs/latest points at this one."""
    if config.model.init_from is None:
        return None
    parent = read_parent(config.model.init_from)
    notes = check_start(parent, config)
    config.model.init_from = str(parent.path)
    return Start(parent, notes, config.model.init_keep_labels)


def start_data(start: Start | None, data: TrainingData, console: Console | None) -> TrainingData:
    """The training data as a training from `start` sees it: with model.init_keep_labels, the run's labels that
    the data lacks are added, not annotated. `console`: where the notes go (None: a fold's, already said)."""
    if start is None:
        return data
    # The run's labels that this training lacks: outside its vocabulary (the training records', which a validation
    # file does not extend), or, in a fold's data, kept but named by no record (the folds share one vocabulary).
    named = _named(data.train) | _named(data.validation)
    lacking = [name for name in start.parent.labels if name not in data.labels.index or name not in named]
    if start.keep_labels and lacking:
        data = _with_unannotated(data, lacking)
    if console is not None:
        _print_notes(console, start, data, lacking)
    return data


def start_model(config: Config, data: TrainingData, start: Start):
    """(model, tokenizer) to train from the run: its model with a row per label of this training (the shared
    labels' rows the run's, the new ones at their prior log-odds, as recipe.prepare starts a fresh head)."""
    parent_model, tokenizer = load_parent_model(start.parent, config.model.trust_remote_code,
                                                config.model.attention_dropout)
    model = carry_over(parent_model, start.parent.labels, data.labels.labels, data.stats.prior(), config.model)
    if config.model.head == "transformers":  # pipeline() truncates at the tokenizer's length: this run's own
        tokenizer.model_max_length = config.model.max_length
    return model, tokenizer


# -------------------------------------------------------------------- helpers


def _named(records: list[Record]) -> set[str]:
    """Every label that some record names (with a confidence, or null: annotated or not, the data knows it)."""
    names: set[str] = set()
    for record in records:
        names.update(record.labels or {})
    return names


def _with_unannotated(data: TrainingData, lacking: list[str]) -> TrainingData:
    """`data` with the labels `lacking` added to its label space, masked out (not annotated) in every record:
    their loss is 0, so their rows keep the run's weights; label_stats.json counts them 0 of 0."""
    labels = LabelSpace(sorted(set(data.labels.labels) | set(lacking)))
    columns = [labels.index[name] for name in lacking]
    train_enc, val_enc = labels.encode(data.train), labels.encode(data.validation)
    for encoded in (train_enc, val_enc):
        encoded.mask[:, columns] = 0.0
    stats = LabelStats.from_encoded(labels.labels, train_enc.targets, train_enc.mask)
    return TrainingData(data.train, data.validation, labels, train_enc, val_enc, stats)


def _print_notes(console: Console, start: Start, data: TrainingData, lacking: list[str]) -> None:
    parent = start.parent
    for note in start.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    known = set(parent.labels)
    shared = sum(name in known and name not in lacking for name in data.labels.labels)
    new = sum(name not in known for name in data.labels.labels)
    console.print(f"starting from {parent.path}: its encoder, and its head rows for the {shared} labels it shares "
                  f"with this data; {new} new label(s) start at their prior log-odds", markup=False, soft_wrap=True)
    if lacking:
        names = ", ".join(lacking)
        said = (f"kept, not annotated in this data (their rows stay {parent.path.name}'s): {names}"
                if start.keep_labels else
                f"dropped: {names} (model.init_keep_labels: true keeps them)")
        console.print(f"note: {len(lacking)} labels of {parent.path.name} are not in this training data; {said}",
                      markup=False, soft_wrap=True)
