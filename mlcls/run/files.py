"""One writer and one reader for each small file of a run (layout.py names them), as spaCy's
`Language.to_disk` / `from_disk` map each file to one serializer and its mirror.

Readers come in two strengths. `read_*` is strict: a missing or malformed file is a one-line RunDirError that
names the file (what `eval`, `predict`, `serve` and `export` need before they trust a run). `peek_*` is
lenient: None when the file is missing or unreadable (what a model card or a report may leave out).

Every field that mlcls reads is type-checked where it is read (Config.from_dict, LabelSpace.from_dict,
LabelStats.from_dict, DecisionRule.from_dict, and here the manifest's): a hand-edited file with a field of the
wrong type is one line naming the file and the field (`thresholds.json: field top_k: expected an integer >= 1,
got "3"`), never an internal error further on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.atomic import describe_os_error
from mlcls.config import Config, absolute_data_paths, read_yaml_mapping
from mlcls.data.labels import Encoded, LabelSpace, LabelStats, is_int, label_repr, shown
from mlcls.decision.rules import PER_LABEL_RULES, DecisionRule
from mlcls.errors import ConfigError, RunDirError
from mlcls.run.layout import (
    CONFIG,
    LABEL_STATS,
    LABELS,
    MANIFEST,
    METRICS,
    THRESHOLDS,
    TRAIN_LOG,
    TUNING_SCORES,
)
from mlcls.run.lifecycle import run_write_error

# ------------------------------------------------------------------------------------------ any JSON file


def peek_json(path: Path) -> Any:
    """A small JSON file of a run, or None when it is missing or unreadable."""
    if not Path(path).is_file():  # missing, or a FIFO or a device, which reading could block on
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def peek_dict(path: Path) -> dict[str, Any] | None:
    """peek_json, when the file holds a JSON object."""
    data = peek_json(path)
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Any) -> None:
    try:
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise run_write_error(path.parent, path, "", exc) from None


# ------------------------------------------------------------------------------------------ config.yaml


def write_config(run: Path, config: Config) -> None:
    """The resolved config, its data paths made absolute: the run is evaluated and resumed from any folder."""
    absolute_data_paths(config).save(run / CONFIG)


def read_config(run: Path) -> Config:
    path = run / CONFIG
    try:
        return Config.from_dict(read_yaml_mapping(path), where=str(path))
    except ConfigError as exc:
        message = str(exc)
        raise RunDirError(message if message.startswith(str(path)) else f"{path}: {message}") from None


# ------------------------------------------------------------------------------------------ labels.json


def write_labels(run: Path, labels: LabelSpace) -> None:
    write_json(run / LABELS, labels.to_dict())


def read_labels(run: Path) -> LabelSpace:
    """The label vocabulary: a non-empty list of distinct names."""
    path = run / LABELS
    try:
        return LabelSpace.from_dict(read_json(path))
    except ValueError as exc:
        raise RunDirError(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------------------ label_stats.json


def write_label_stats(run: Path, stats: LabelStats) -> None:
    write_json(run / LABEL_STATS, stats.to_dict())


def read_label_stats(run: Path, labels: list[str] | None = None) -> LabelStats | None:
    """The training label frequencies, None when the run has none (it still scores); a RunDirError naming the
    field when they are malformed, or with `labels` (labels.json's) when they count other labels."""
    path = run / LABEL_STATS
    if not path.exists():
        return None
    try:
        stats = LabelStats.from_dict(read_json(path))
    except ValueError as exc:
        raise RunDirError(f"{path}: {exc}") from None
    if labels is not None and set(stats.labels) != set(labels):
        other = sorted(set(stats.labels) ^ set(labels))
        raise RunDirError(f"{path}: field labels: counts other labels than {LABELS} (they differ in "
                          f"{', '.join(label_repr(name) for name in other[:3])}{' ...' if len(other) > 3 else ''}): "
                          "the files come from different runs")
    return stats


def peek_label_stats(run: Path) -> LabelStats | None:
    """The training label frequencies, or None (missing or malformed: a run or export without them still scores)."""
    try:
        return read_label_stats(run)
    except RunDirError:
        return None


# ------------------------------------------------------------------------------------------ thresholds.json


def write_rule(run: Path, rule: DecisionRule) -> None:
    write_json(run / THRESHOLDS, rule.to_dict())


def read_rule(run: Path, labels: list[str] | None = None) -> DecisionRule:
    """The decision rule; with `labels`, checked to name only those labels and to keep cut-offs in [0, 1]."""
    path = run / THRESHOLDS
    raw = read_json(path, "not a valid decision rule ({})")
    try:
        rule = DecisionRule.from_dict(raw)
    except ValueError as exc:
        raise RunDirError(f"{path}: {exc}") from None
    if labels is not None:
        _check_rule_labels(path, rule, labels)
    return rule


def _check_rule_labels(path: Path, rule: DecisionRule, labels: list[str]) -> None:
    known = set(labels)
    unknown = sorted(str(name) for name in [*rule.per_label, *rule.fallback_labels] if name not in known)
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise RunDirError(f"{path}: names {len(unknown)} label(s) that {LABELS} lacks ({shown}): the files "
                          "come from different runs")
    # A label left out of a per-label rule would silently take the global cut-off. mlcls lists every label
    # (decision.tuning.tune), so a gap is a hand edit: refused, rather than guessed at.
    missing = [name for name in labels if name not in rule.per_label] if rule.rule in PER_LABEL_RULES else []
    if missing:
        named = ", ".join(label_repr(name) for name in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RunDirError(f"{path}: field per_label: no cut-off for {len(missing)} label(s) of {LABELS} ({named}); "
                          f"a {rule.rule} rule gives every label its own")


# ------------------------------------------------------------------------------------------ metrics, log


def write_metrics(run: Path, summary: dict[str, Any]) -> None:
    write_json(run / METRICS, summary)


def peek_metrics(run: Path) -> dict[str, Any] | None:
    return peek_dict(run / METRICS)


def is_trained(run: Path) -> bool:
    """Whether a (fold's, refit's) training wrote its metrics: its last file before the rename."""
    return (run / METRICS).is_file()


def write_train_log(run: Path, entries: list[dict[str, Any]]) -> None:
    try:
        (run / TRAIN_LOG).write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    except OSError as exc:
        raise run_write_error(run, run / TRAIN_LOG, "", exc) from None


def read_train_log(run: Path) -> list[dict[str, Any]]:
    path = run / TRAIN_LOG
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: cannot read ({exc})") from None


# ------------------------------------------------------------------------------------------ tuning_scores.npz


def write_tuning_scores(run: Path, probs: np.ndarray, encoded: Encoded, ids: list[str], **parts: np.ndarray) -> None:
    """The scores, targets and mask a run's decision rule was tuned on (no pickle inside); with lexical fusion
    `probs` is the blend, and `parts` the encoder's and the lexical model's own scores."""
    with open(run / TUNING_SCORES, "wb") as handle:
        np.savez_compressed(handle, probs=probs.astype(np.float32), targets=encoded.targets, mask=encoded.mask,
                            ids=np.array(ids, dtype=str), **{k: v.astype(np.float32) for k, v in parts.items()})


def peek_tuning_scores(run: Path) -> dict[str, np.ndarray] | None:
    """{probs, targets, mask, ids, ...} as written, or None when the run has none (no validation data)."""
    path = run / TUNING_SCORES
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, ValueError):
        return None


def read_tuning_probs(run: Path) -> np.ndarray:
    """The tuning scores of a training that must have written them (a fold's: its out-of-fold part)."""
    saved = peek_tuning_scores(run)
    if saved is None or "probs" not in saved:
        raise RunDirError(f"{run / TUNING_SCORES}: missing or unreadable")
    return saved["probs"]


# ------------------------------------------------------------------------------------------ export.json


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_json(folder / MANIFEST, manifest)


def peek_manifest(folder: Path) -> dict[str, Any] | None:
    """An export's manifest, or None for a run (which has none) or an unreadable one; a RunDirError naming the
    field when one that mlcls reads is of the wrong type."""
    path = folder / MANIFEST
    manifest = peek_dict(path)
    return _checked_manifest(path, manifest) if manifest is not None else None


def read_onnx_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise RunDirError(f"{path}: not the manifest of an mlcls ONNX export (expected a JSON object, got "
                          f"{shown(manifest)})")
    if manifest.get("format") != "onnx":
        raise RunDirError(f"{path}: not the manifest of an mlcls ONNX export (field format: expected \"onnx\", "
                          f"got {shown(manifest.get('format'))})")
    return _checked_manifest(path, manifest)


# The manifest's fields that mlcls reads back: what each holds, and its check (the others are for people).
_MANIFEST_FIELDS = {
    "format": ('"onnx" or "hf"', lambda v: v in ("onnx", "hf")),
    "quantize": ('null or "int8"', lambda v: v is None or v == "int8"),
    "vocab_size": ("an integer >= 1", lambda v: is_int(v) and v >= 1),
    "source_run": ("a path (a string on one line)", lambda v: isinstance(v, str) and v.isprintable()),
}


def _checked_manifest(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest`, once its fields that mlcls reads are checked: `format` always, the others where present."""
    for name, (expected, fits) in _MANIFEST_FIELDS.items():
        if (name in manifest or name == "format") and not fits(manifest.get(name)):
            raise RunDirError(f"{path}: field {name}: expected {expected}, got {shown(manifest.get(name))}")
    return manifest


def export_format(folder: Path) -> str | None:
    """"onnx" or "hf" for an export folder, None for a run."""
    manifest = peek_manifest(folder)
    return manifest["format"] if manifest is not None else None


def read_json(path: Path, invalid: str = "corrupt (not JSON: {})") -> Any:
    """A JSON file a run needs: a one-line RunDirError naming it when it is missing, unreadable or not JSON
    (`invalid` says the last, around the parser's words)."""
    if path.exists() and not path.is_file():  # a folder, a FIFO (reading it would block) or a device
        raise RunDirError(f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing from the run directory (is this a complete mlcls run?)") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: corrupt (not UTF-8 text)") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({describe_os_error(exc)})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RunDirError(f"{path}: {invalid.format(exc)}") from None


def files_fingerprint(run: Path) -> str:
    """A short fingerprint of a run's (or an export's) files: their names, sizes and modification times. Cheap (no
    file is read), and it changes when the run is trained again under the same name: what a resumed prediction
    (predict --resume, --engine ray) compares, so that one output never mixes two models' predictions."""
    import hashlib

    files = []
    for path in Path(run).rglob("*"):
        if path.is_file():
            stat = path.stat()
            files.append((str(path.relative_to(run)), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]
