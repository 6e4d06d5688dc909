"""README.md: a Hugging Face model card for a run directory or an export.

The card is written from the run's own files (config.yaml, labels.json, label_stats.json, thresholds.json,
metrics.json, tuning_scores.npz, provenance.json), so it can be regenerated at any time. Its YAML front
matter is what the Hub reads (pipeline_tag, tags, base_model, metrics, model-index with the validation
micro- and macro-F1); the body says what the model does, its labels with their training support and
validation F1, the decision rule, the data, the training settings, the validation metrics, where it came
from, and how to load it (mlcls; ONNX Runtime for an export). The folder can be uploaded to the Hub as it is.

Writing a card never fails a finished training over a file it cannot read: that part of the card is left
out (a card that cannot be rendered at all is replaced by a short one that says why).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from mlcls.decision.metrics import compute_metrics
from mlcls.errors import RunDirError
from mlcls.run.files import peek_dict, peek_metrics, peek_tuning_scores, read_config, read_labels, read_rule
from mlcls.run.layout import CARD, LABEL_STATS, LEXICAL, run_name
from mlcls.run.lexical import lexical_weight
from mlcls.run.provenance import provenance_summary, read_provenance

# A Hub model id (owner/name or name); a local folder is not one, and base_model must name a Hub model.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def write_model_card(run_dir: Path, target: Path | None = None, export: dict[str, Any] | None = None) -> Path:
    """Write the card of the run in `run_dir` to `target`/README.md (default: the run itself); `export` is
    the export's manifest (export.json) when the card is for an ONNX export. Returns the card's path."""
    run_dir = Path(run_dir)
    path = Path(target if target is not None else run_dir) / CARD
    try:
        text = render_model_card(run_dir, export)
    except Exception as exc:  # a bug here must not cost a finished training its run
        text = _minimal_card(run_dir, f"{type(exc).__name__}: {exc}")
    path.write_text(text, encoding="utf-8")
    return path


def render_model_card(run_dir: Path, export: dict[str, Any] | None = None) -> str:
    facts = _Facts.read(run_dir, export)
    return "---\n" + _front_matter(facts) + "---\n\n" + "\n".join(_body(facts))


# ------------------------------------------------------------------------------------------ reading


class _Facts:
    """Everything the card says, read once from the run's files; a missing or unreadable file is None."""

    def __init__(self, run_dir: Path, export: dict[str, Any] | None):
        self.run_dir = run_dir
        self.export = export
        self.config: dict[str, Any] = {}
        self.labels: list[str] = []
        self.stats: dict[str, Any] | None = None
        self.rule: Any = None
        self.metrics: dict[str, Any] = {}
        self.per_label_f1: dict[str, float] | None = None
        self.provenance: dict[str, Any] | None = None
        self.lexical_weight: float | None = None

    @classmethod
    def read(cls, run_dir: Path, export: dict[str, Any] | None) -> _Facts:
        facts = cls(run_dir, export)
        with contextlib.suppress(RunDirError):  # a part the card cannot read is left out of it
            facts.config = read_config(run_dir).to_dict()
        with contextlib.suppress(RunDirError):
            facts.labels = read_labels(run_dir).labels
            facts.rule = read_rule(run_dir)
        facts.stats = peek_dict(run_dir / LABEL_STATS)
        facts.metrics = peek_metrics(run_dir) or {}
        facts.provenance = read_provenance(run_dir)
        facts.lexical_weight = lexical_weight(run_dir) if (run_dir / LEXICAL).exists() else None
        facts.per_label_f1 = _per_label_f1(run_dir, facts.labels, facts.rule)
        return facts

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
    def refit(self) -> bool:
        return bool(self.section("train").get("refit"))

    @property
    def one_transformers_model(self) -> bool:
        """transformers alone gives this folder's scores: a native head, one model (not K folds), no TF-IDF blend,
        and the model is there (a run's encoder/, or an hf export; not an ONNX export)."""
        return (self.native and not self.onnx and (self.folds <= 1 or self.refit)
                and not self.lexical_weight)

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
        rows = (self.stats or {}).get("labels")
        if isinstance(rows, dict) and isinstance(rows.get(label), dict):
            return rows[label].get("positives")
        return None


def _per_label_f1(run_dir: Path, labels: list[str], rule) -> dict[str, float] | None:
    """Each label's F1 on the scores the rule was tuned on (tuning_scores.npz), under that rule."""
    saved = peek_tuning_scores(run_dir) if rule is not None and labels else None
    if saved is None or not {"probs", "targets", "mask"} <= set(saved):
        return None
    probs, targets, mask = saved["probs"], saved["targets"], saved["mask"]
    if probs.shape != targets.shape or probs.shape[1] != len(labels):
        return None
    per_label = compute_metrics(targets, mask, rule.apply(probs, labels), labels)["per_label"]
    return {row["label"]: row["f1"] for row in per_label if row["support"] > 0}


# ------------------------------------------------------------------------------------------ front matter


def _front_matter(facts: _Facts) -> str:
    import yaml

    tags = ["text-classification", "multi-label", "multi-label-classification", "mlcls"]
    if facts.onnx:
        tags += ["onnx"] + (["int8"] if facts.export.get("quantize") == "int8" else [])
    if facts.one_transformers_model:
        tags += ["transformers"]
    meta: dict[str, Any] = {"pipeline_tag": "text-classification", "tags": tags}
    if facts.hf_export:  # the model at the folder's top, where the Hub's transformers loader looks
        meta["library_name"] = "transformers"
    if _HUB_ID.match(facts.encoder) and not Path(facts.encoder).exists():
        meta["base_model"] = facts.encoder
    micro, macro = facts.validation.get("micro_f1"), facts.validation.get("macro_f1")
    if isinstance(micro, int | float) and isinstance(macro, int | float):
        meta["metrics"] = ["f1"]
        kind = "out-of-fold" if facts.out_of_fold else "validation"
        train_file = Path(str(facts.section("data").get("train", "training data"))).name
        meta["model-index"] = [{
            "name": facts.name,
            "results": [{
                "task": {"type": "text-classification", "name": "Multi-label text classification"},
                "dataset": {"name": f"{train_file} ({kind})", "type": train_file},
                "metrics": [
                    {"type": "f1", "value": round(float(micro), 4), "name": f"{kind} micro-F1",
                     "args": {"average": "micro"}},
                    {"type": "f1", "value": round(float(macro), 4), "name": f"{kind} macro-F1",
                     "args": {"average": "macro"}},
                ],
            }],
        }]
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------ body


def _body(facts: _Facts) -> list[str]:
    model, train = facts.section("model"), facts.section("train")
    pooling = model.get("pooling", "mean")
    ensemble = (f" (the mean probability of {facts.folds} cross-fitted fold models)"
                if facts.folds > 1 and not facts.refit else "")
    what = {"onnx": "An ONNX export of the", "hf": "A transformers export of the"}.get(
        (facts.export or {}).get("format", "onnx") if facts.export else "", "The")
    head = ("transformers' own sequence-classification head (AutoModelForSequenceClassification, problem_type "
            "multi_label_classification)" if facts.native else
            f"{pooling} pooling of the token vectors, then a linear head")
    lines = [
        f"# {facts.name}",
        "",
        f"{what} multi-label text classifier `{facts.name}`, fine-tuned with mlcls from the encoder "
        f"`{facts.encoder}`: {head} with one sigmoid per label{ensemble}. An article may get no label, one or "
        "several; each label has its own probability and the decision rule below turns the probabilities into a "
        "label set.",
        "",
    ]
    if facts.lexical_weight:
        lines += [f"The run blends a TF-IDF + logistic-regression model into every label's probability "
                  f"(p = {1 - facts.lexical_weight:.1f} p_encoder + {facts.lexical_weight:.1f} p_lexical; folder "
                  "`lexical/`); its decision rule was tuned on the blend, so apply it to the blend (mlcls does).", ""]
    lines += _labels_section(facts)
    lines += _rule_section(facts)
    lines += _data_section(facts)
    lines += _training_section(facts, model, train)
    lines += _metrics_section(facts)
    lines += _provenance_section(facts)
    lines += _usage_section(facts)
    return lines


def _labels_section(facts: _Facts) -> list[str]:
    if not facts.labels:
        return []
    kind = "out-of-fold F1" if facts.out_of_fold else "validation F1"
    cutoffs = facts.rule.cutoffs(facts.labels) if facts.rule is not None and facts.rule.rule != "top_k" else None
    lines = [f"## Labels ({len(facts.labels)})", "",
             f"Training support: training articles with the label (soft labels count their confidence). "
             f"{kind[0].upper() + kind[1:]}: "
             "on the data the decision rule was tuned on, under that rule (- where that data has no article with "
             "the label).", "",
             f"| label | training support | {kind} |" + (" cut-off |" if cutoffs is not None else ""),
             "| --- | ---: | ---: |" + (" ---: |" if cutoffs is not None else "")]
    f1 = facts.per_label_f1 or {}
    for i, label in enumerate(facts.labels):
        support = facts.support(label)
        row = (f"| {_cell(label)} | {_number(support)} | "
               f"{f'{f1[label]:.3f}' if label in f1 else '-'} |")
        if cutoffs is not None:
            row += f" {float(cutoffs[i]):.2f} |"
        lines.append(row)
    records = (facts.stats or {}).get("num_records")
    if records is not None:
        lines += ["", f"Training articles: {records}."]
    return lines + [""]


def _rule_section(facts: _Facts) -> list[str]:
    rule = facts.rule
    if rule is None:
        return []
    lines = ["## Decision rule", "", f"`thresholds.json`: {rule.describe()}"
             + (f", tuned on {rule.tuned_on} scores" if rule.tuned_on else "") + ".", ""]
    if rule.rule == "top_k":
        lines.append(f"An article gets its {rule.top_k} highest-scoring label(s).")
    else:
        lines.append("A label is predicted when its probability is at least its cut-off: `per_label[label]` where "
                     f"listed, else the global `threshold` ({rule.threshold:.2f}).")
    if rule.min_labels:
        lines.append("An article left with no label gets its highest-scoring one.")
    return lines + [""]


def _data_section(facts: _Facts) -> list[str]:
    data = facts.section("data")
    recorded = (facts.provenance or {}).get("data") or {}
    lines = ["## Data", "", "| split | file | records | sha256 |", "| --- | --- | ---: | --- |"]
    for key in ("train", "validation", "test"):
        value = data.get(key)
        info = recorded.get(key) if isinstance(recorded.get(key), dict) else {}
        if key == "validation" and not value:
            lines.append(_held_out_row(facts, data))
            continue
        if not value and not info:
            continue
        digest = info.get("sha256")
        lines.append(f"| {key} | `{_cell(str(value))}` | {_number(info.get('records'))} | "
                     f"{f'`{digest[:16]}…`' if digest else '-'} |")
    fields = data.get("text_fields")
    if fields:
        lines += ["", f"Text: the fields {', '.join(f'`{f}`' for f in fields)} joined; labels: "
                      f"`{data.get('label_field', 'labels')}`."]
    return lines + [""]


def _held_out_row(facts: _Facts, data: dict[str, Any]) -> str:
    records = _number(facts.metrics.get("validation_records"))
    if facts.folds > 1:
        return (f"| validation | out-of-fold: every training article scored by the fold model that did not see it "
                f"({facts.folds} folds) | {records} | |")
    return (f"| validation | held out of train ({_number(data.get('val_fraction'))} of it, {data.get('split', '')} "
            f"split) | {records} | |")


def _training_section(facts: _Facts, model: dict[str, Any], train: dict[str, Any]) -> list[str]:
    loss = facts.section("loss")
    loss_params = ", ".join(f"{k}={v}" for k, v in loss.items() if k != "name")
    rows = [
        ("encoder", f"`{facts.encoder}`"),
        ("pooling", "the architecture's own (model.head transformers)" if facts.native else model.get("pooling")),
        ("max length", f"{model.get('max_length')} tokens"),
        ("dropout", model.get("dropout")),
        ("loss", f"{loss.get('name', 'bce')}" + (f" ({loss_params})" if loss_params else "")),
        ("epochs", f"{facts.metrics.get('epochs_trained', train.get('epochs'))} trained, epoch "
                   f"{facts.metrics.get('best_epoch', '?')} kept (best validation {train.get('select_metric')})"),
        ("batch size", f"{train.get('batch_size')} x {train.get('grad_accum', 1)} accumulation"),
        ("learning rates", f"encoder {train.get('lr')}, head {train.get('head_lr')} (AdamW, warm-up "
                           f"{train.get('warmup_ratio')}, linear decay)"),
        ("seed", train.get("seed")),
    ]
    if facts.folds > 1:
        rows.append(("cross-fitting", f"{facts.folds} folds" + (", refit on all of train" if train.get("refit")
                                                                else ", the fold models predict together")))
    if train.get("freeze_encoder"):
        rows.append(("encoder", "frozen (head only)"))
    elif train.get("train_top_layers"):
        rows.append(("trained layers", f"the top {train.get('train_top_layers')}"))
    if facts.lexical_weight is not None:
        rows.append(("lexical fusion", f"TF-IDF + logistic regression, weight {facts.lexical_weight:.1f}"))
    device = facts.metrics.get("device")
    if device:
        rows.append(("hardware", f"{device}, {facts.metrics.get('precision')}, {facts.metrics.get('processes', 1)} "
                                 f"process(es), {_number(facts.metrics.get('train_seconds'))} s of training"))
    lines = ["## Training", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(str(value))} |" for name, value in rows if value is not None]
    return lines + ["", "The whole resolved configuration is `config.yaml`.", ""]


def _metrics_section(facts: _Facts) -> list[str]:
    val = facts.validation
    if not val:
        return []
    kind = ("Out-of-fold (every training article scored by the fold model that did not train on it)"
            if facts.out_of_fold else "Validation")
    names = [("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("micro_precision", "micro precision"),
             ("micro_recall", "micro recall"), ("samples_f1", "samples F1"), ("subset_accuracy", "subset accuracy"),
             ("hamming_loss", "Hamming loss")]
    lines = ["## Validation metrics", "",
             f"{kind}, {_number(val.get('records'))} articles, under the decision rule above (tuned on these "
             "articles, so somewhat optimistic; `mlcls eval` on a test file is the honest figure). Macro-F1 is "
             "over the labels with at least one article there.", "",
             "| metric | value |", "| --- | ---: |"]
    lines += [f"| {label} | {val[key]:.4f} |" for key, label in names if isinstance(val.get(key), int | float)]
    return lines + [""]


def _provenance_section(facts: _Facts) -> list[str]:
    summary = provenance_summary(facts.run_dir) or {}
    lines = ["## Provenance", ""]
    if summary:
        commit = summary.get("git_commit")
        version = f"mlcls {summary.get('mlcls_version')}" + (
            f" (commit {commit[:12]}{', uncommitted changes' if summary.get('git_dirty') else ''})" if commit else "")
        libraries = ", ".join(f"{name} {summary[name]}" for name in ("torch", "transformers", "accelerate")
                              if summary.get(name))
        lines += [f"- trained with {version}, Python {summary.get('python')}, {libraries}",
                  f"- on {summary.get('device', '?')}" + (f" ({summary['gpu']})" if summary.get("gpu") else "")
                  + f", precision {summary.get('precision', '?')}, {summary.get('created', '')}"]
        if summary.get("command"):
            lines.append(f"- command: `{summary['command']}`")
        lines.append("- `provenance.json` has every version and each data file's sha256 and record count")
    else:
        lines.append("This run has no provenance.json (trained before mlcls wrote one).")
    if facts.hf_export:
        check = facts.export.get("check") or {}
        lines.append(f"- exported as a transformers model by mlcls {facts.export.get('mlcls_version')} (transformers "
                     f"{facts.export.get('transformers')}) from `{facts.export.get('source_run')}`" + (
                         f"; largest probability difference between transformers and mlcls on the export's check: "
                         f"{check['max_abs_diff']:.1e}" if isinstance(check.get("max_abs_diff"), float) else ""))
    elif facts.export:
        quant = " with int8 dynamic quantisation of the weights" if facts.export.get("quantize") == "int8" else ""
        check = facts.export.get("check") or {}
        lines.append(f"- exported to ONNX{quant} by mlcls {facts.export.get('mlcls_version')} (torch "
                     f"{facts.export.get('torch')}, opset {facts.export.get('opset')}) from `"
                     f"{facts.export.get('source_run')}`" + (
                         f"; largest probability difference from the torch model on the export's check: "
                         f"{check['max_abs_diff']:.1e}" if isinstance(check.get("max_abs_diff"), float) else ""))
    return lines + [""]


def _usage_section(facts: _Facts) -> list[str]:
    max_length = facts.section("model").get("max_length", 128)
    here = "THIS_FOLDER"
    lines = ["## How to use it", ""]
    if not facts.hf_export:
        lines += ["With mlcls (`pip install mlcls`" + (' plus `pip install "mlcls[onnx]"`' if facts.export else "")
                  + "):", "", "```bash",
                  f"mlcls predict articles.jsonl --model {here} -o predictions.jsonl",
                  f"mlcls eval {here} --data test.jsonl",
                  *([] if facts.export else
                    [f"mlcls export {here} --format onnx --out {here}-onnx   # for ONNX Runtime",
                     *([f"mlcls export {here} --format hf --out {here}-hf   # a transformers model folder"]
                       if facts.one_transformers_model else [])]),
                  "```", ""]
    if facts.one_transformers_model:
        return lines + _transformers_usage(facts, here if facts.hf_export else f"{here}/encoder", max_length)
    if not facts.export:
        return lines + ["`encoder/` with `head.safetensors` is mlcls's format (a pooled encoder with its own head, "
                        "which `AutoModelForSequenceClassification` cannot express without custom code); "
                        "`mlcls export` turns the run into one ONNX graph that ONNX Runtime loads anywhere.", ""]
    inputs = ", ".join(f"`{name}`" for name in facts.export.get("inputs", []))
    lines += [f"With ONNX Runtime alone (`pip install onnxruntime transformers`): `model.onnx` takes {inputs} "
              "(int64, batch x sequence, any sizes) and answers `probabilities` (batch x labels, the sigmoid "
              "probabilities) and `logits` (their log-odds).", "",
              "```python",
              "import json",
              "",
              "import numpy as np",
              "import onnxruntime as ort",
              "from transformers import AutoTokenizer",
              "",
              f'folder = "{here}"',
              "tokenizer = AutoTokenizer.from_pretrained(folder)",
              'session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])',
              'labels = json.load(open(f"{folder}/labels.json"))["labels"]',
              'rule = json.load(open(f"{folder}/thresholds.json"))',
              "",
              'texts = ["Cocoa prices fell as the harvest came in ..."]',
              f'batch = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="np")',
              "feed = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}",
              'probs = session.run(["probabilities"], feed)[0]']
    rule = facts.rule
    if rule is not None and rule.rule == "top_k":
        lines.append(f"chosen = np.argsort(-probs, axis=1)[:, :{rule.top_k}]")
        lines.append("predicted = [[labels[j] for j in row] for row in chosen]")
    else:
        lines += ['cutoffs = np.array([rule["per_label"].get(name, rule["threshold"]) for name in labels])',
                  "chosen = probs >= cutoffs"]
        if rule is not None and rule.min_labels:
            lines.append("chosen[np.arange(len(probs)), probs.argmax(1)] |= ~chosen.any(1)  # at least one label")
        lines.append("predicted = [[name for name, on in zip(labels, row) if on] for row in chosen]")
    lines += ["```", ""]
    if facts.lexical_weight:
        lines += [f"This run also blends its TF-IDF model (`lexical/`, weight {facts.lexical_weight:.1f}) into the "
                  "probabilities, and its rule was tuned on the blend: ONNX Runtime alone gives the encoder's part, "
                  "so use `mlcls predict` to get the run's own labels.", ""]
    return lines


def _transformers_usage(facts: _Facts, folder: str, max_length: int) -> list[str]:
    """transformers alone: `pipeline` answers every label's sigmoid probability; the rule picks the labels."""
    fields = facts.section("data").get("text_fields") or ["text"]
    joined = " and ".join(f"`{name}`" for name in fields)
    lines = [f"With transformers alone (`pip install transformers torch`): `{folder}` is an "
             "`AutoModelForSequenceClassification` with `id2label` and `problem_type: multi_label_classification`, so "
             "`pipeline` gives each label's sigmoid probability (the scores mlcls computes). Give it the text as mlcls "
             f"built it: {joined}, each stripped, the ones not empty joined by "
             f"{json.dumps(facts.section('data').get('text_separator', chr(10)))}.", "",
             "```python",
             "import json",
             "",
             "from transformers import pipeline",
             "",
             f'folder = "{folder}"',
             'classify = pipeline("text-classification", model=folder, top_k=None, truncation=True)',
             f'rule = json.load(open("{here_of(folder)}/thresholds.json"))',
             'scores = classify(["Cocoa prices fell as the harvest came in ..."])',
             "for article in scores:",
             '    probs = {row["label"]: row["score"] for row in article}']
    rule = facts.rule
    if rule is not None and rule.rule == "top_k":
        lines.append(f"    predicted = sorted(probs, key=probs.get, reverse=True)[:{rule.top_k}]")
    else:
        lines.append('    predicted = [name for name, p in probs.items() if p >= rule["per_label"].get(name, '
                     'rule["threshold"])]')
        if rule is not None and rule.min_labels:
            lines.append("    predicted = predicted or [max(probs, key=probs.get)]  # at least one label")
    lines += ["```", "", f"The tokenizer truncates at {max_length} tokens, the length the model was trained at.", ""]
    return lines


def here_of(folder: str) -> str:
    """The folder holding thresholds.json: the run (for its encoder/ subfolder) or the export itself."""
    return folder.removesuffix("/encoder")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if not value.is_integer() else f"{int(value)}"
    return str(value)


def _minimal_card(run_dir: Path, problem: str) -> str:
    return ("---\npipeline_tag: text-classification\ntags:\n- text-classification\n- multi-label\n- mlcls\n---\n\n"
            f"# {run_name(run_dir)}\n\nA multi-label text classifier trained with mlcls. This card is incomplete: it "
            f"could not be rendered from the run's files ({problem}); `mlcls eval` and `config.yaml` describe the "
            "run.\n")
