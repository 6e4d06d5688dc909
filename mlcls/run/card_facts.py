"""What a run's model card says, as data: `ModelCardData`, read once from the run's files through their readers
(files.py, lexical.py, provenance.py), as sentence-transformers keeps its card's facts in a ModelCardData apart
from the template that renders them. model_card.py renders it and reads no file itself.

A part that cannot be read is left empty (None, {} or []), and the card leaves that part out: writing a card must
never fail a finished training over one of its files.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlcls.decision.metrics import compute_metrics
from mlcls.decision.rules import DecisionRule
from mlcls.errors import RunDirError
from mlcls.model.lexical import DEFAULT_BLEND
from mlcls.run.files import peek_dict, peek_metrics, peek_tuning_scores, read_config, read_labels, read_rule
from mlcls.run.layout import CARD, LABEL_STATS, LEXICAL, run_name
from mlcls.run.lexical import lexical_blend as read_lexical_blend
from mlcls.run.lexical import lexical_weight as read_lexical_weight
from mlcls.run.provenance import provenance_summary

# A Hub model id (owner/name or name); a local folder is not one, and base_model must name a Hub model.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelCardData:
    """Everything the card of the run in `run_dir` says; `export` is the export's manifest for an export's card."""

    run_dir: Path
    export: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, as a dict
    labels: list[str] = field(default_factory=list)
    stats: dict[str, Any] | None = None  # the training label frequencies, as saved
    rule: DecisionRule | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_label_f1: dict[str, float] | None = None  # on the scores the rule was tuned on, under that rule
    provenance: dict[str, Any] | None = None  # provenance_summary's short form
    lexical_weight: float | None = None  # the TF-IDF blend's weight; None without lexical fusion
    lexical_blend: str = DEFAULT_BLEND  # what that blend averages (lexical/settings.json, as scoring reads it)
    base_model: str | None = None  # the encoder, when it is a Hub model id and not a local folder
    license: dict[str, str] = field(default_factory=dict)  # the front matter's licence keys; {} when unknown

    @classmethod
    def read(cls, run_dir: Path, export: dict[str, Any] | None = None) -> ModelCardData:
        run_dir = Path(run_dir)
        config: dict[str, Any] = {}
        labels: list[str] = []
        rule = None
        with contextlib.suppress(RunDirError):  # a part the card cannot read is left out of it
            config = read_config(run_dir).to_dict()
        with contextlib.suppress(RunDirError):
            labels = read_labels(run_dir).labels
            rule = read_rule(run_dir)
        partial = cls(run_dir, export, config, labels, rule=rule)
        return replace(
            partial,
            stats=peek_dict(run_dir / LABEL_STATS),
            metrics=peek_metrics(run_dir) or {},
            per_label_f1=_per_label_f1(run_dir, labels, rule),
            provenance=provenance_summary(run_dir),
            lexical_weight=read_lexical_weight(run_dir) if (run_dir / LEXICAL).exists() else None,
            lexical_blend=read_lexical_blend(run_dir),
            base_model=_hub_model(partial.encoder),
            license=_license(partial.section("model")),
        )

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def name(self) -> str:
        if self.export and self.export.get("source_run"):
            return Path(str(self.export["source_run"])).name
        return run_name(self.run_dir)

    @property
    def encoder(self) -> str:
        return str(self.section("model").get("encoder", "unknown encoder"))

    @property
    def native(self) -> bool:
        """Trained with model.head transformers: the model is an AutoModelForSequenceClassification."""
        return self.section("model").get("head") == "transformers"

    @property
    def parent(self) -> dict[str, Any] | None:
        """The run this one started from (model.init_from), as provenance.json records it; None for most runs."""
        parent = (self.provenance or {}).get("parent")
        return parent if isinstance(parent, dict) and parent.get("path") else None

    @property
    def refit(self) -> bool:
        return bool(self.section("train").get("refit"))

    @property
    def one_transformers_model(self) -> bool:
        """transformers alone gives this folder's scores: a native head, one model (not K folds), no TF-IDF blend,
        texts truncated as `pipeline` truncates them (model.long_text), and the model is there (a run's encoder
        folder, or an hf export; not an ONNX export)."""
        return (self.native and not self.onnx and (self.folds <= 1 or self.refit)
                and not self.lexical_weight and self.long_text == "truncate")

    @property
    def long_text(self) -> str:
        return str(self.section("model").get("long_text", "truncate"))

    @property
    def onnx(self) -> bool:
        return bool(self.export) and self.export.get("format", "onnx") == "onnx"

    @property
    def hf_export(self) -> bool:
        return bool(self.export) and self.export.get("format") == "hf"

    @property
    def validation(self) -> dict[str, Any]:
        value = self.metrics.get("validation")
        return value if isinstance(value, dict) else {}

    @property
    def out_of_fold(self) -> bool:
        return self.metrics.get("validation_kind") == "out-of-fold"

    @property
    def folds(self) -> int:
        folds = self.section("train").get("folds", 1)
        return folds if isinstance(folds, int) else 1

    def support(self, label: str) -> float | None:
        """Training articles with the label, counted as eval and `data stats` count them (a soft label from 0.5);
        a run saved before label_stats.json counted articles: its confidences summed."""
        rows = (self.stats or {}).get("labels")
        if isinstance(rows, dict) and isinstance(rows.get(label), dict):
            row = rows[label]
            return row["articles"] if row.get("articles") is not None else row.get("positives")
        return None


def _hub_model(encoder: str) -> str | None:
    """The encoder when it names a Hub model; a local folder can look like a Hub id (a relative path), and
    base_model must name what the Hub can link to."""
    return encoder if _HUB_ID.match(encoder) and not Path(encoder).exists() else None


def _license(model: dict[str, Any]) -> dict[str, str]:
    """The licence keys of the card's front matter: model.license when the config sets it, else the base model's
    as the front matter of its card says (`license`, and `license_name` / `license_link` with `other`), read from
    the encoder's folder: a local one, or the bundled encoder's copy. A Hub name's card is not read (no network),
    and {} when nothing says: a licence is never guessed."""
    chosen = model.get("license")
    if isinstance(chosen, str) and chosen.strip():
        return {"license": chosen.strip().lower()}
    folder = _encoder_folder(str(model.get("encoder", "")))
    meta = _front_matter(folder / CARD) if folder is not None else {}
    found = meta.get("license")
    if not isinstance(found, str) or not found.strip():
        return {}
    keys = {"license": found.strip().lower()}
    if keys["license"] == "other":
        keys.update({k: meta[k] for k in ("license_name", "license_link") if isinstance(meta.get(k), str)})
    return keys


def _encoder_folder(encoder: str) -> Path | None:
    """The folder the encoder was loaded from, when there is one here: the bundled encoder's installed copy
    (model.resolve_encoder's mapping), or a local folder."""
    if not encoder:
        return None
    from mlcls.model.classifier import resolve_encoder  # torch: loaded only when a card is written

    folder = Path(resolve_encoder(encoder))
    try:
        return folder if folder.is_dir() else None
    except (OSError, ValueError):  # a name no file system takes (too long, a NUL): no folder of it here
        return None


def _front_matter(path: Path) -> dict[str, Any]:
    """The YAML front matter of a model card (a README.md), or {} when it has none or cannot be read."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---"):
        return {}
    head = text.split("\n---", 1)
    try:
        meta = yaml.safe_load(head[0].removeprefix("---")) if len(head) == 2 else None
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _per_label_f1(run_dir: Path, labels: list[str], rule: DecisionRule | None) -> dict[str, float] | None:
    """Each label's F1 on the scores the rule was tuned on, under that rule; None when the run kept no such
    scores or they do not fit its labels."""
    saved = peek_tuning_scores(run_dir) if rule is not None and labels else None
    if saved is None or not {"probs", "targets", "mask"} <= set(saved):
        return None
    probs, targets, mask = saved["probs"], saved["targets"], saved["mask"]
    if probs.shape != targets.shape or probs.shape[1] != len(labels):
        return None
    per_label = compute_metrics(targets, mask, rule.apply(probs, labels), labels)["per_label"]
    return {row["label"]: row["f1"] for row in per_label if row["support"] > 0}
