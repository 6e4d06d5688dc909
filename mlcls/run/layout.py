"""The run directory's layout: every file and folder name of a run, declared here once.

A run is self-contained: everything `eval`, `predict`, `serve` and `export` need, offline.

runs/<name>/
  config.yaml        the resolved config the run was trained with (data paths made absolute)
  labels.json        the label vocabulary (sorted, from the training data)
  label_stats.json   training label frequencies (for losses, reports and prior-quantile rules)
  encoder/           encoder + tokenizer (save_pretrained, safetensors); with model.head transformers the whole
                     AutoModelForSequenceClassification (head inside, id2label), which transformers loads as is
  head.safetensors   the classification head (model.head linear)
  thresholds.json    the decision rule, tuned on validation (or out-of-fold)
  tuning_scores.npz  the scores, targets and mask the rule was tuned on (no pickle inside)
  lexical/           model.lexical tfidf: settings.json (blend weight and blend, vectorizer), vocabulary.json,
                     weights.safetensors (idf, coef, intercept): no pickle, which would run code on load
  metrics.json       validation metrics of the kept epoch, timings, device and precision
  train_log.jsonl    one line per epoch (per fold and epoch for a cross-fitted run)
  provenance.json    versions, command line, each data file's sha256 (provenance.py)
  README.md          the model card (model_card.py)
  tracking/          train.report_to's tracker logs
runs/latest -> <name>

Life cycle (lifecycle.py). While training, the run lives in runs/.<name>.incomplete/, claimed by an flock on
runs/.<name>.lock, with its config.yaml and checkpoint/ (checkpoint.py):

  checkpoint/        model.safetensors (the weights being trained), best.safetensors (the best epoch's, when
                     they differ), trainer.pt (optimizer, scheduler, random states: loaded weights_only),
                     state.json (progress; written last). Written into checkpoint.tmp/ and swapped in, so a
                     kill leaves the old one or the new one (checkpoint.old/ between the two renames).

which `mlcls train --resume runs/<name>` continues. When complete, the staging folder is renamed into place
and runs/latest is pointed at it: a killed training never leaves a half-written run that `eval` would load.

Cross-fitting (train.folds = K) adds, inside the run:

  folds/fold-1 .. fold-K/   each fold's own run (encoder/, head.safetensors, metrics.json, ...); the run's
                            labels, rule, tuning scores and metrics are the out-of-fold ones
  folds/pool.json           while training only: the records the folds were drawn from (a digest) and each
                            one's fold; a resume on other data is refused, not mixed with the finished folds
  refit/                    while training only, with train.refit: the model retrained on all of train, whose
                            encoder/, head.safetensors and tracking/ then move to the top of the run

A search (`mlcls tune`) keeps its trials' runs in a folder of its own in the runs folder:

runs/tune-<study>/
  study.db           the Optuna study (SQLite), unless --storage names another
  trial-0007/        a trial's run, an ordinary run (the best K are kept); a pruned trial's unfinished run
                     stays as .trial-0007.incomplete only with --keep-pruned
  best.yaml          the best trial's config, which `mlcls train -c` takes as it is
  workers/           one flock per running `mlcls tune` process: a trial whose process died is retried

An export (`mlcls export`) is a folder of the same small files plus:

  model.onnx         the ONNX graph (--format onnx), with the tokenizer's files beside it
  export.json        the export manifest: what was exported, how, and the parity check
"""

from __future__ import annotations

from pathlib import Path

# ------------------------------------------------------------------------------------------ files of a run
CONFIG = "config.yaml"
LABELS = "labels.json"
LABEL_STATS = "label_stats.json"
THRESHOLDS = "thresholds.json"
TUNING_SCORES = "tuning_scores.npz"
METRICS = "metrics.json"
TRAIN_LOG = "train_log.jsonl"
PROVENANCE = "provenance.json"
CARD = "README.md"
ENCODER = "encoder"
ENCODER_CONFIG = "config.json"  # save_pretrained's model config, in encoder/ (and an hf export)
HEAD = "head.safetensors"
TRACKING = "tracking"
LEXICAL = "lexical"
LEXICAL_SETTINGS = "settings.json"
LEXICAL_VOCABULARY = "vocabulary.json"
LEXICAL_WEIGHTS = "weights.safetensors"
# The files without which nothing can be scored (the model's are checked by validation.py).
REQUIRED = (CONFIG, LABELS, THRESHOLDS)

# ------------------------------------------------------------------------------------------ cross-fitting
FOLDS = "folds"
POOL = "pool.json"  # in folds/
REFIT = "refit"

# ------------------------------------------------------------------------------------------ checkpoints
CHECKPOINT = "checkpoint"
WEIGHTS = "model.safetensors"  # a checkpoint's model; also what save_pretrained writes in encoder/
SHARDED_WEIGHTS = "model.safetensors.index.json"
BEST_WEIGHTS = "best.safetensors"
TRAINER_STATE = "trainer.pt"
STATE = "state.json"

# ------------------------------------------------------------------------------------------ exports
ONNX_MODEL = "model.onnx"
MANIFEST = "export.json"
TOKENIZER_CONFIG = "tokenizer_config.json"  # what save_pretrained writes beside every tokenizer
# The small files an export carries over from its run.
EXPORTED_FILES = (CONFIG, LABELS, THRESHOLDS, LABEL_STATS, METRICS, PROVENANCE)

# ------------------------------------------------------------------------------------------ a search (mlcls tune)
STUDY_DB = "study.db"
BEST_CONFIG = "best.yaml"
WORKERS = "workers"
_STUDY_PREFIX = "tune-"
_TRIAL_PREFIX = "trial-"

# ------------------------------------------------------------------------------------------ the runs folder
LATEST = "latest"
_STAGING_SUFFIX = ".incomplete"
_LOCK_SUFFIX = ".lock"


def staging_dir(final: Path) -> Path:
    """runs/.<name>.incomplete: where the run named runs/<name> is written until it is complete."""
    return final.parent / f".{final.name}{_STAGING_SUFFIX}"


def is_staging(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(_STAGING_SUFFIX)


def final_dir(staging: Path) -> Path:
    """runs/<name> of the staging folder runs/.<name>.incomplete (staging_dir's inverse)."""
    return staging.parent / staging.name[1 : -len(_STAGING_SUFFIX)]


def lock_file(staging: Path) -> Path:
    """runs/.<name>.lock, the file whose flock claims the name (lifecycle.lock_run)."""
    return staging.parent / f"{staging.name.removesuffix(_STAGING_SUFFIX)}{_LOCK_SUFFIX}"


def staging_pattern() -> str:
    """The glob that finds the unfinished runs of a runs folder."""
    return f".*{_STAGING_SUFFIX}"


def fold_dir(run: Path, k: int) -> Path:
    """folds/fold-k of a cross-fitted run (k from 1)."""
    return run / FOLDS / f"fold-{k}"


def has_model(run: Path) -> bool:
    """Whether the run's top folder holds a model (one model, or a cross-fitted run's refit)."""
    return (run / HEAD).exists() or (run / ENCODER).exists()


def model_folders(run: Path, folds: int) -> list[Path]:
    """Where a run's model lives: the run itself (encoder/ + head.safetensors; also a cross-fitted run with
    train.refit), or else, for a cross-fitted run (`folds` = its train.folds), each folds/fold-1 .. fold-K.
    Whether they are all there is validation.validate_run's to check."""
    if has_model(run) or folds <= 1:
        return [run]
    return [fold_dir(run, k) for k in range(1, folds + 1)]


def crossfit_parent(final: Path) -> Path | None:
    """The staging folder of the cross-fitted run that `final` trains inside (a fold's run, folds/fold-K, or the
    refit's), or None for a run of its own."""
    parent = final.parent
    if parent.name == FOLDS and is_staging(parent.parent):
        return parent.parent
    return parent if is_staging(parent) else None


def tracking_name(final: Path) -> str:
    """The run's name for trackers that name runs: NAME, or NAME/fold-1 and NAME/refit inside a cross-fitted run."""
    outer = crossfit_parent(final)
    return f"{final_dir(outer).name}/{final.name}" if outer is not None else final.name


def run_name(run_dir: Path) -> str:
    """A run's name as a user knows it: a staging folder goes by its final name."""
    return final_dir(run_dir).name if is_staging(run_dir) else run_dir.name


def study_dir(runs_root: Path, study: str) -> Path:
    """runs/tune-<study>: the folder of one search's trials, its study file and its best config."""
    return runs_root / f"{_STUDY_PREFIX}{study}"


def trial_run_name(number: int) -> str:
    """trial-0007: the run of a study's trial 7 (a retried trial keeps the run of the trial it retries)."""
    return f"{_TRIAL_PREFIX}{number:04d}"
