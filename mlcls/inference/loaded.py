"""A run's parts once loaded for scoring (`LoadedRun`), whichever engine scores it: torch (loading.py) or
ONNX Runtime (onnx_run.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcls.config import Config
from mlcls.data.labels import LabelSpace
from mlcls.data.windows import WindowCount
from mlcls.decision.rules import DecisionRule
from mlcls.run.files import read_config, read_labels, read_rule


@dataclass
class LoadedRun:
    """A finished run ready to score (load_run): its config, labels, decision rule, model and tokenizer on a
    device, the lexical model it blends in, and the precision it scores in."""

    path: Path
    config: Config
    labels: LabelSpace
    thresholds: DecisionRule
    model: Any  # MultiLabelClassifier (or FoldEnsemble), in eval mode on `device`
    tokenizer: Any
    device: Any
    lexical: Any = None  # LexicalModel when the run blends one in (model.lexical: tfidf)
    # What score_records runs the model in: fp32, bf16 (autocast) or int8 (--int8; fp32 around it). None: bf16 on
    # a GPU with bf16, else fp32 (a LoadedRun built by hand). load_run sets it, and `precision_note` says why.
    precision: str | None = None
    precision_note: str = ""
    windows: WindowCount = field(default_factory=WindowCount)  # scored so far (model.long_text's cost)


def load_run_files(path: Path) -> tuple[Config, LabelSpace, DecisionRule]:
    """A run's (or an export's) config, label vocabulary and decision rule."""
    config = read_config(path)
    labels = read_labels(path)
    return config, labels, read_rule(path, labels.labels)
