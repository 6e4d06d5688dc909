"""README.md: a Hugging Face model card for a run directory or an export, rendered from `ModelCardData`.

The facts come from card_facts.py, which reads the run's own files once, so the card can be regenerated at any
time; this module only renders them, as sentence-transformers renders its ModelCardData through a template. Its
YAML front matter is what the Hub reads (pipeline_tag, tags, base_model, metrics, model-index with the validation
micro- and macro-F1); the body says what the model does, its labels with their training support and validation
F1, the decision rule, the data, the training settings, the validation metrics, where it came from, and how to
load it. The code the card shows (mlcls, ONNX Runtime for an ONNX export, transformers' `pipeline` for a
native-head run) is in the `string.Template` files of card_templates/, one per snippet, so that it reads as the
code it is. The folder can be uploaded to the Hub as it is.

Writing a card never fails a finished training over a file it cannot read: that part of the card is left
out (a card that cannot be rendered at all is replaced by a short one that says why).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from mlcls.run.card_facts import ModelCardData
from mlcls.run.layout import (
    CARD,
    CONFIG,
    ENCODER,
    HEAD,
    LABELS,
    LEXICAL,
    MANIFEST,
    ONNX_MODEL,
    PROVENANCE,
    THRESHOLDS,
    run_name,
)

# The snippets' folder, inside this package (package data in pyproject.toml, so a wheel carries it too).
TEMPLATES = "card_templates"
# What the snippets call the folder the card sits in: the user's copy of it, wherever that is.
HERE = "THIS_FOLDER"


def write_model_card(run_dir: Path, target: Path | None = None, export: dict[str, Any] | None = None) -> Path:
    """Write the card of the run in `run_dir` to `target`/README.md (default: the run itself); `export` is
    the export's manifest (export.json) when the card is for an export (ONNX or hf). Returns the card's path."""
    run_dir = Path(run_dir)
    path = Path(target if target is not None else run_dir) / CARD
    try:
        text = render_model_card(run_dir, export)
    except Exception as exc:  # a bug here must not cost a finished training its run
        text = _minimal_card(run_dir, f"{type(exc).__name__}: {exc}")
    path.write_text(text, encoding="utf-8")
    return path


def render_model_card(run_dir: Path, export: dict[str, Any] | None = None) -> str:
    card = ModelCardData.read(run_dir, export)
    return "---\n" + _front_matter(card) + "---\n\n" + "\n".join(_body(card))


# ------------------------------------------------------------------------------------------ front matter


def _front_matter(card: ModelCardData) -> str:
    import yaml

    tags = ["text-classification", "multi-label", "multi-label-classification", "mlcls"]
    if card.onnx:
        tags += ["onnx"] + (["int8"] if card.export.get("quantize") == "int8" else [])
    if card.one_transformers_model:
        tags += ["transformers"]
    meta: dict[str, Any] = {"pipeline_tag": "text-classification", "tags": tags}
    if card.hf_export:  # the model at the folder's top, where the Hub's transformers loader looks
        meta["library_name"] = "transformers"
    elif card.onnx:  # the Hub's name for ONNX models (huggingface.co/models?library=onnx)
        meta["library_name"] = "onnx"
    meta.update(card.license)  # the Hub's licence identifier (apache-2.0, mit, ...), when known
    if card.base_model:
        meta["base_model"] = card.base_model
    micro, macro = card.validation.get("micro_f1"), card.validation.get("macro_f1")
    if isinstance(micro, int | float) and isinstance(macro, int | float):
        meta["metrics"] = ["f1"]
        kind = "out-of-fold" if card.out_of_fold else "validation"
        train_file = Path(str(card.section("data").get("train", "training data"))).name
        meta["model-index"] = [{
            "name": card.name,
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


def _body(card: ModelCardData) -> list[str]:
    model, train = card.section("model"), card.section("train")
    pooling = model.get("pooling", "mean")
    ensemble = (f" (the mean probability of {card.folds} cross-fitted fold models)"
                if card.folds > 1 and not card.refit else "")
    what = {"onnx": "An ONNX export of the", "hf": "A transformers export of the"}.get(
        (card.export or {}).get("format", "onnx") if card.export else "", "The")
    head = ("transformers' own sequence-classification head (AutoModelForSequenceClassification, problem_type "
            "multi_label_classification)" if card.native else
            f"{pooling} pooling of the token vectors, then a linear head")
    lines = [
        f"# {card.name}",
        "",
        f"{what} multi-label text classifier `{card.name}`, fine-tuned with mlcls from the encoder "
        f"`{card.encoder}`: {head} with one sigmoid per label{ensemble}. An article may get no label, one or "
        "several; each label has its own probability and the decision rule below turns the probabilities into a "
        "label set.",
        "",
    ]
    if card.lexical_weight:
        w = card.lexical_weight
        formula = (f"p = sigmoid({1 - w:.1f} logit p_encoder + {w:.1f} logit p_lexical)"
                   if card.lexical_blend == "logit" else f"p = {1 - w:.1f} p_encoder + {w:.1f} p_lexical")
        lines += [f"The run blends a TF-IDF + logistic-regression model into every label's probability "
                  f"({formula}; folder `{LEXICAL}/`); its decision rule was tuned on the blend, so apply it to the "
                  "blend (mlcls does).", ""]
    lines += _labels_section(card)
    lines += _rule_section(card)
    lines += _data_section(card)
    lines += _training_section(card, model, train)
    lines += _metrics_section(card)
    lines += _provenance_section(card)
    lines += _usage_section(card)
    return lines


def _soft_counting(card: ModelCardData) -> str:
    rows = (card.stats or {}).get("labels")
    counted = isinstance(rows, dict) and all(isinstance(row, dict) and "articles" in row for row in rows.values())
    # a run saved before label_stats.json counted articles has its confidences summed
    return "a soft label counts from a confidence of 0.5" if counted else "soft labels count their confidence"


def _labels_section(card: ModelCardData) -> list[str]:
    if not card.labels:
        return []
    kind = "out-of-fold F1" if card.out_of_fold else "validation F1"
    cutoffs = card.rule.cutoffs(card.labels) if card.rule is not None and card.rule.rule != "top_k" else None
    lines = [f"## Labels ({len(card.labels)})", "",
             f"Training support: training articles with the label ({_soft_counting(card)}). "
             f"{kind[0].upper() + kind[1:]}: "
             "on the data the decision rule was tuned on, under that rule (- where that data has no article with "
             "the label).", "",
             f"| label | training support | {kind} |" + (" cut-off |" if cutoffs is not None else ""),
             "| --- | ---: | ---: |" + (" ---: |" if cutoffs is not None else "")]
    f1 = card.per_label_f1 or {}
    for i, label in enumerate(card.labels):
        support = card.support(label)
        row = (f"| {_cell(label)} | {_number(support)} | "
               f"{f'{f1[label]:.3f}' if label in f1 else '-'} |")
        if cutoffs is not None:
            row += f" {float(cutoffs[i]):.2f} |"
        lines.append(row)
    records = (card.stats or {}).get("num_records")
    if records is not None:
        lines += ["", f"Training articles: {records}."]
    return lines + [""]


def _rule_section(card: ModelCardData) -> list[str]:
    rule = card.rule
    if rule is None:
        return []
    lines = ["## Decision rule", "", f"`{THRESHOLDS}`: {rule.describe()}"
             + (f", tuned on {rule.tuned_on} scores" if rule.tuned_on else "") + ".", ""]
    if rule.rule == "top_k":
        lines.append(f"An article gets its {rule.top_k} highest-scoring label(s).")
    else:
        lines.append("A label is predicted when its probability is at least its cut-off: `per_label[label]` where "
                     f"listed, else the global `threshold` ({rule.threshold:.2f}).")
    if rule.min_labels:
        lines.append("An article left with no label gets its highest-scoring one.")
    return lines + [""]


def _data_section(card: ModelCardData) -> list[str]:
    data = card.section("data")
    recorded = (card.provenance or {}).get("data") or {}
    lines = ["## Data", "", "| split | file | records | sha256 |", "| --- | --- | ---: | --- |"]
    for key in ("train", "validation", "test"):
        value = data.get(key)
        info = recorded.get(key) if isinstance(recorded.get(key), dict) else {}
        if key == "validation" and not value:
            lines.append(_held_out_row(card, data))
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


def _held_out_row(card: ModelCardData, data: dict[str, Any]) -> str:
    records = _number(card.metrics.get("validation_records"))
    if card.folds > 1:
        return (f"| validation | out-of-fold: every training article scored by the fold model that did not see it "
                f"({card.folds} folds) | {records} | |")
    return (f"| validation | held out of train ({_number(data.get('val_fraction'))} of it, {data.get('split', '')} "
            f"split) | {records} | |")


def _training_section(card: ModelCardData, model: dict[str, Any], train: dict[str, Any]) -> list[str]:
    loss = card.section("loss")
    loss_params = ", ".join(f"{k}={v}" for k, v in loss.items() if k != "name")
    rows = [
        ("encoder", f"`{card.encoder}`"),
        ("pooling", "the architecture's own (model.head transformers)" if card.native else model.get("pooling")),
        ("max length", f"{model.get('max_length')} tokens"),
        ("dropout", model.get("dropout") if model.get("attention_dropout") is None
         else f"{model.get('dropout')}, on attention weights {model.get('attention_dropout')}"),
        ("loss", f"{loss.get('name', 'bce')}" + (f" ({loss_params})" if loss_params else "")),
        ("epochs", f"{card.metrics.get('epochs_trained', train.get('epochs'))} trained, epoch "
                   f"{card.metrics.get('best_epoch', '?')} kept (best validation {train.get('select_metric')})"),
        ("batch size", f"{train.get('batch_size')} x {train.get('grad_accum', 1)} accumulation"),
        ("learning rates", f"encoder {train.get('lr')}, head {train.get('head_lr')} (AdamW, warm-up "
                           f"{train.get('warmup_ratio')}, linear decay)"),
        ("seed", train.get("seed")),
    ]
    if card.parent:
        rows.append(("started from", f"the run `{Path(card.parent['path']).name}` (see Provenance)"))
    if card.folds > 1:
        rows.append(("cross-fitting", f"{card.folds} folds" + (", refit on all of train" if train.get("refit")
                                                                else ", the fold models predict together")))
    if train.get("freeze_encoder"):
        rows.append(("encoder", "frozen (head only)"))
    elif train.get("train_top_layers"):
        rows.append(("trained layers", f"the top {train.get('train_top_layers')}"))
    if card.lexical_weight is not None:
        averaged = "log-odds" if card.lexical_blend == "logit" else "probabilities"
        rows.append(("lexical fusion",
                     f"TF-IDF + logistic regression, weight {card.lexical_weight:.1f} (a mean of {averaged})"))
    device = card.metrics.get("device")
    if device:
        rows.append(("hardware", f"{device}, {card.metrics.get('precision')}, {card.metrics.get('processes', 1)} "
                                 f"process(es), {_number(card.metrics.get('train_seconds'))} s of training"))
    lines = ["## Training", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(str(value))} |" for name, value in rows if value is not None]
    return lines + ["", f"The whole resolved configuration is `{CONFIG}`.", ""]


def _metrics_section(card: ModelCardData) -> list[str]:
    val = card.validation
    if not val:
        return []
    kind = ("Out-of-fold (every training article scored by the fold model that did not train on it)"
            if card.out_of_fold else "Validation")
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


def _provenance_section(card: ModelCardData) -> list[str]:
    summary = card.provenance or {}
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
        if card.parent:
            lines.append(_parent_line(card.parent))
        lines.append(f"- `{PROVENANCE}` has every version and each data file's sha256 and record count")
    else:
        lines.append(f"This run has no {PROVENANCE} (trained before mlcls wrote one).")
    if card.hf_export:
        check = card.export.get("check") or {}
        lines.append(f"- exported as a transformers model by mlcls {card.export.get('mlcls_version')} (transformers "
                     f"{card.export.get('transformers')}) from `{card.export.get('source_run')}`" + (
                         f"; largest probability difference between transformers and mlcls on the export's check: "
                         f"{check['max_abs_diff']:.1e}" if isinstance(check.get("max_abs_diff"), float) else ""))
    elif card.export:
        quant = " with int8 dynamic quantisation of the weights" if card.export.get("quantize") == "int8" else ""
        check = card.export.get("check") or {}
        lines.append(f"- exported to ONNX{quant} by mlcls {card.export.get('mlcls_version')} (torch "
                     f"{card.export.get('torch')}, opset {card.export.get('opset')}) from `"
                     f"{card.export.get('source_run')}`" + (
                         f"; largest probability difference from the torch model on the export's check: "
                         f"{check['max_abs_diff']:.1e}" if isinstance(check.get("max_abs_diff"), float) else ""))
    return lines + [""]


def _parent_line(parent: dict[str, Any]) -> str:
    """model.init_from: the run the training started from, and what it took from it."""
    digest = parent.get("weights_sha256")
    line = (f"- started from the run `{_cell(str(parent['path']))}` (`mlcls train --init-from`" +
            (f"; its weights' sha256 `{digest}`" if digest else "; no longer there when this run was written") + ")")
    labels = parent.get("labels")
    if isinstance(labels, dict):
        new, dropped = labels.get("new") or [], labels.get("dropped") or []
        line += (f": its encoder and the head rows of the {labels.get('shared')} labels they share; {len(new)} new "
                 f"label(s) started at their prior log-odds" +
                 (f"; {len(dropped)} of its labels dropped ({_cell(', '.join(map(str, dropped)))})" if dropped else ""))
    return line


def _usage_section(card: ModelCardData) -> list[str]:
    lines = ["## How to use it", ""]
    if not card.hf_export:  # mlcls refuses an hf export (it scores the run it came from): transformers alone
        name = ("mlcls_export.md" if card.export else
                "mlcls_run_hf.md" if card.one_transformers_model else "mlcls_run.md")
        lines += _snippet(name, folder=HERE) + [""]
    if card.one_transformers_model:
        return lines + _transformers_usage(card)
    if not card.export:
        return lines + [f"`{ENCODER}/` with `{HEAD}` is mlcls's format (a pooled encoder with its own head, "
                        "which `AutoModelForSequenceClassification` cannot express without custom code); "
                        "`mlcls export` turns the run into one ONNX graph that ONNX Runtime loads anywhere.", ""]
    lines += _snippet("onnx.md", folder=HERE, onnx_model=ONNX_MODEL, labels_file=LABELS, thresholds_file=THRESHOLDS,
                      inputs=", ".join(f"`{name}`" for name in card.export.get("inputs", [])),
                      max_length=_max_length(card), decide=_decide("onnx", card), **_text_of(card)) + [""]
    if card.long_text != "truncate":
        lines += [f"This run reads a long text as `model.long_text: {card.long_text}` (the settings are in "
                  f"`{MANIFEST}`): the code above scores one window of `max_length` tokens per text, so use "
                  "`mlcls predict`, which cuts each text into the run's windows and pools their scores, to get "
                  "the run's own labels.", ""]
    if card.lexical_weight:
        lines += [f"This run also blends its TF-IDF model (`{LEXICAL}/`, weight {card.lexical_weight:.1f}) into the "
                  "probabilities, and its rule was tuned on the blend: ONNX Runtime alone gives the encoder's part, "
                  "so use `mlcls predict` to get the run's own labels.", ""]
    return lines


def _transformers_usage(card: ModelCardData) -> list[str]:
    """transformers alone: `pipeline` answers every label's sigmoid probability; the rule picks the labels. The
    model is an hf export's folder itself, or a run's encoder folder beside the run's rule."""
    folder = HERE if card.hf_export else f"{HERE}/{ENCODER}"
    return _snippet("transformers.md", folder=folder, rule_folder=HERE, thresholds_file=THRESHOLDS,
                    max_length=_max_length(card), decide=_decide("transformers", card), **_text_of(card)) + [""]


def _text_of(card: ModelCardData) -> dict[str, str]:
    """The snippets' text: `text_of`, which joins a record's data.text_fields with data.text_separator as
    mlcls.data.records does (each field stripped, the missing and empty ones left out), and an example record."""
    data = card.section("data")
    fields = [str(name) for name in data.get("text_fields") or ["text"]]
    separator = data.get("text_separator", "\n")
    example = {name: "Cocoa prices fall" for name in fields[:-1]}
    example[fields[-1]] = "Cocoa prices fell as the harvest came in ..."
    return {"text_of": "\n".join(_snippet("text_of.txt", text_fields=repr(fields),
                                           separator=repr(str(separator)))),
            "example": repr(example), "field_names": _and([f"`{name}`" for name in fields])}


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _decide(engine: str, card: ModelCardData) -> str:
    """The snippet's last lines, the rule's own: the top k labels, or the cut-offs (with the rule's "at least one
    label" when it has one). A run without a readable rule gets the cut-offs' code, which reads the rule's file."""
    rule = card.rule
    if rule is not None and rule.rule == "top_k":
        return "\n".join(_snippet(f"{engine}_top_k.txt", top_k=rule.top_k))
    at_least_one = rule is not None and rule.min_labels
    return "\n".join(_snippet(f"{engine}_cutoffs{'_at_least_one' if at_least_one else ''}.txt"))


def _max_length(card: ModelCardData) -> Any:
    return card.section("model").get("max_length", 128)


def _snippet(name: str, **values: Any) -> list[str]:
    """The lines of the template `name` with its placeholders filled; a placeholder the call does not fill is a
    KeyError, which write_model_card turns into the short card rather than show a `$name` to the reader."""
    return _template(name).substitute(values).removesuffix("\n").split("\n")


@cache
def _template(name: str) -> Template:
    # importlib.resources finds the folder in an editable checkout, an installed wheel or a zip alike.
    return Template((files(__package__) / TEMPLATES / name).read_text(encoding="utf-8"))


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
            f"could not be rendered from the run's files ({problem}); `mlcls eval` and `{CONFIG}` describe the "
            "run.\n")
