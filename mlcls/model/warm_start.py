"""model.init_from: the model a training starts from when it starts from a finished run's model (the parent)
rather than from the bare encoder.

Everything but the output layer is the parent's: the encoder (and, with model.head transformers, the rest of
the architecture's head: BERT's pooler, RoBERTa's dense layer). The output layer gets one row per label of this
training: a label the parent knew starts from the parent's row (its weights and bias), a new one at its prior
log-odds with small weights, as a fresh head does (classifier.init_output_layer). The parent's labels that this
training leaves out are simply not carried over.

Reading the parent run (finished, compatible) is mlcls/run/parent.py's; this module works on its loaded model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlcls.config import ModelConfig
from mlcls.model.classifier import MultiLabelClassifier, NativeClassifier


def carry_over(parent: MultiLabelClassifier | NativeClassifier, parent_labels: list[str], labels: list[str],
               prior: np.ndarray, config: ModelConfig) -> MultiLabelClassifier | NativeClassifier:
    """A model for `labels` (with their training `prior`) that starts from `parent`, whose output rows are
    `parent_labels`. The parent's modules are reused, not copied: the parent model is not to be used after."""
    old = parent.output_layer()
    if isinstance(parent, NativeClassifier):
        model = parent
        new = nn.Linear(old.in_features, len(labels), device=old.weight.device, dtype=old.weight.dtype)
        _swap_module(model.model, old, new)
        _relabel(model, labels, config.dropout)
    else:
        model = MultiLabelClassifier(parent.encoder, len(labels), config.pooling, config.dropout)
    model.init_head(prior)
    copy_rows(old, model.output_layer(), parent_labels, labels)
    return model


def copy_rows(source: nn.Linear, target: nn.Linear, source_labels: list[str], target_labels: list[str]) -> int:
    """Copy each shared label's row (weights and bias) from `source` to `target`; returns how many were shared."""
    where = {name: i for i, name in enumerate(source_labels)}
    pairs = [(i, where[name]) for i, name in enumerate(target_labels) if name in where]
    if pairs:
        rows = torch.tensor([i for i, _ in pairs])
        source_rows = torch.tensor([j for _, j in pairs])
        with torch.no_grad():
            target.weight[rows] = source.weight[source_rows].to(target.weight.dtype)
            target.bias[rows] = source.bias[source_rows].to(target.bias.dtype)
    return len(pairs)


def _swap_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put `new` where `old` sits inside `root` (BERT: `classifier`; RoBERTa: `classifier.out_proj`)."""
    for module in root.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)
                return
    raise AssertionError("the output layer is not a module of the model")  # output_layer() found it there


def _relabel(model: NativeClassifier, labels: list[str], dropout: float) -> None:
    """The transformers config of a native model with new labels: num_labels, id2label and label2id (what
    `pipeline` answers with), and this training's classifier dropout."""
    hf = model.model
    hf.config.id2label = dict(enumerate(labels))  # num_labels follows id2label's length
    hf.config.label2id = {name: i for i, name in enumerate(labels)}
    hf.config.classifier_dropout = dropout
    if hasattr(hf, "num_labels"):  # BertForSequenceClassification keeps its own copy (for its loss)
        hf.num_labels = len(labels)
    for module in model.head.modules():
        if isinstance(module, nn.Dropout):
            module.p = dropout
