"""The public Python API: what scripts, notebooks and other programs may import. Everything else in the
package may change between versions without notice.

    from mlcls.api import load_config, train, load_run, evaluate_runs

Names are imported lazily (on first use), so `import mlcls.api` stays as light as the CLI.

What the functions change in the process, as the CLI would: loading a model sets transformers' logging to
errors only and turns off its and datasets' progress bars; train() seeds the global random generators (torch,
numpy, random) from train.seed, as the Hugging Face Trainer does. They leave the caller's Config as given,
install no signal handler outside the main thread, and raise MlclsError subclasses (one-line messages) for what
a user can fix.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    # configuration
    "Config": "mlcls.config", "load_config": "mlcls.config",
    # data
    "FieldSpec": "mlcls.data.records", "ReadPolicy": "mlcls.data.records", "Record": "mlcls.data.records",
    "read_records": "mlcls.data.records", "LabelSpace": "mlcls.data.labels", "LabelStats": "mlcls.data.labels",
    "training_split": "mlcls.training.split", "fold_of_each_record": "mlcls.training.split",
    # training
    "train": "mlcls.training.entry", "TrainResult": "mlcls.training.data",
    "keep_freed_memory": "mlcls.training.host_malloc",  # what `mlcls train` sets before training
    "TrainingInterrupted": "mlcls.training.data", "StopSignal": "mlcls.training.interrupt",
    "StopAfterStep": "mlcls.training.interrupt",
    # a finished run: load, score, decide, evaluate
    "load_run": "mlcls.inference.loading", "LoadedRun": "mlcls.inference.loading",
    "score_records": "mlcls.inference.scoring", "CHUNK_RECORDS": "mlcls.inference.scoring",
    "inference_batch_size": "mlcls.inference.scoring",
    "DecisionRule": "mlcls.decision.rules", "tune_rule": "mlcls.decision.tuning",  # a decision rule tuned on scores
    "held_out_f1": "mlcls.decision.tuning", "choose_thresholds": "mlcls.decision.tuning",  # the configured rule
    "iterative_stratification": "mlcls.data.stratify",  # multi-label stratified parts (hold-outs, folds)
    "evaluate_runs": "mlcls.evaluation.evaluate", "DecisionOverrides": "mlcls.evaluation.evaluate",
    "compute_metrics": "mlcls.decision.metrics", "frequency_group_scores": "mlcls.decision.metrics",
    # the model's parts (benchmarks that time pieces of it)
    "resolve_encoder": "mlcls.model.classifier", "transformer_layers": "mlcls.model.classifier",
    "tokenize": "mlcls.data.batching", "inference_batches": "mlcls.data.batching", "pad_batch": "mlcls.data.batching",
    "INFERENCE_PAD_MULTIPLE": "mlcls.data.batching",  # its value now (set_inference_pad_multiple changes it)
    "length_grouped_batches": "mlcls.data.batching", "training_passes": "mlcls.data.batching",  # training batches
    "MIN_SPLIT_SAVING": "mlcls.data.batching",
    "WindowSpec": "mlcls.data.windows", "article_windows": "mlcls.data.windows",  # a long article's windows
    "LOSSES": "mlcls.loss_specs",
    "LexicalModel": "mlcls.model.lexical", "fit_lexical": "mlcls.model.lexical",
    "out_of_fold_lexical": "mlcls.model.lexical", "choose_weight": "mlcls.model.lexical",
    "blend": "mlcls.model.lexical", "BLENDS": "mlcls.model.lexical",
    "held_out_f1_of": "mlcls.training.fusion", "fusion_objective": "mlcls.training.fusion",  # how the weight is chosen
    "build_model": "mlcls.model.classifier",
    "set_inference_pad_multiple": "mlcls.data.batching",
    "set_unpadded_scoring": "mlcls.model.unpadded",  # scoring on real tokens only (on by default)
    "use_training_attention": "mlcls.model.attention",  # the attention and dropouts of training on a CPU
    "CPU_TRAINING_ATTENTION": "mlcls.model.attention",
    "score_chunk": "mlcls.inference.scoring",
    # a run's files, read as mlcls reads them
    "read_rule": "mlcls.run.files", "read_labels": "mlcls.run.files", "peek_label_stats": "mlcls.run.files",
    "peek_tuning_scores": "mlcls.run.files",
    "find_checkpoint": "mlcls.run.checkpoint", "load_checkpoint": "mlcls.run.checkpoint",
    "cpu_has_fast_bf16": "mlcls.precision",  # what --precision auto asks of a CPU
    # hyperparameter search (`mlcls tune`; the tune extra: Optuna)
    "tune": "mlcls.tune.search", "TuneResult": "mlcls.tune.search", "SearchSpace": "mlcls.tune.space",
    "load_space": "mlcls.tune.space_checks", "EpochEnd": "mlcls.training.hooks",
    # errors a user can fix (one line, no traceback)
    "MlclsError": "mlcls.errors",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'mlcls.api' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return __all__
