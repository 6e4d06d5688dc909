"""`mlcls eval`: a run's decisions on a labelled file, scored."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from sklearn.metrics import coverage_error, label_ranking_average_precision_score, ndcg_score

from mlcls.data.ids import repeated_ids
from mlcls.data.labels import LabelStats
from mlcls.data.records import ON_ERROR, FieldSpec, ReadPolicy, Record, read_records
from mlcls.data.stats import HEAD_MIN, TAIL_MAX
from mlcls.decision.metrics import compute_metrics, frequency_group_scores, gold_matrix, micro_f1_counts
from mlcls.decision.rules import DecisionRule, with_overrides
from mlcls.errors import MlclsError
from mlcls.inference.loading import LoadedRun, load_run
from mlcls.inference.onnx_run import export_note
from mlcls.inference.scoring import score_records
from mlcls.run.files import peek_label_stats
from mlcls.run.layout import CONFIG
from mlcls.run.provenance import data_overlap_notes, provenance_summary


@dataclass
class DecisionOverrides:
    """`eval` / `predict` options that replace a run's tuned rule (None: not given)."""

    threshold: float | None = None
    top_k: int | None = None
    min_labels: int | None = None

    def apply(self, rule: DecisionRule) -> DecisionRule:
        return with_overrides(rule, self.threshold, self.top_k, self.min_labels)


@dataclass
class ScoredRuns:
    names: list[str]  # one per run; a run given twice is told apart as name#2
    reports: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)  # skipped lines, labels the run does not know


def evaluate_runs(runs: list[str | Path | None], data: str | Path | None, batch_size: int | None,
                  overrides: DecisionOverrides | None = None, keep_scores: bool = False, on_error: str | None = None,
                  rejects: IO[bytes] | None = None, int8: bool = False, precision: str | None = None,
                  trust_remote_code: bool = False) -> ScoredRuns:
    """`mlcls eval` on one run or several (--compare): each run's report on `data` (default: its test file).
    `precision`: auto, fp32 or bf16 (None: each run's model.inference_precision); the notes say what was used.
    `trust_remote_code`: --trust-remote-code (load_run's)."""
    overrides = overrides or DecisionOverrides()
    if isinstance(runs, str | Path):  # one run given as itself, not as a list of one (its letters were runs)
        runs = [runs]
    if on_error is not None and on_error not in ON_ERROR:
        raise MlclsError(f"on_error {on_error!r}: the choice is {' or '.join(ON_ERROR)}")
    scored = ScoredRuns([], [])
    # Files read alike (the same fields, the same policy) whose bad lines are in `rejects` already: runs that
    # read one file the same way reject the same lines, which go there once.
    rejected_from: set[str] = set()
    header_written = b""
    for run in runs:
        loaded = load_run(run, int8=int8, precision=precision, trust_remote_code=trust_remote_code)
        source = data if data is not None else run_test_file(loaded, [])
        on = on_error or loaded.config.data.on_error
        read_as = repr((str(Path(source).resolve()), FieldSpec.from_config(loaded.config.data), on))
        policy = ReadPolicy(on, None if read_as in rejected_from else rejects)
        policy.header_written = header_written  # one rejects file: a CSV header already in it is not written again
        rejected_from.add(read_as)
        report = evaluate(loaded, data, batch_size, overrides.apply(loaded.thresholds), keep_scores, policy)
        scored.reports.append(report)
        header_written = policy.header_written
        for path in policy.stats:  # runs that read one file alike skip the same lines: said once
            scored.notes.extend(note for note in policy.report(path) if note not in scored.notes)
        scored.names.append(run_name(loaded.path, scored.names))
        if loaded.config.model.long_text != "truncate":
            scored.notes.append(f"model.long_text {loaded.config.model.long_text}: {loaded.windows.describe()}")
        if loaded.precision_note:
            note = loaded.precision_note if len(runs) == 1 else f"{scored.names[-1]}: {loaded.precision_note}"
            scored.notes.append(note)
        scored.notes.extend(note for note in report["notes"] if note not in scored.notes)
        for label, count in list(report["unknown_labels"].items())[:10]:
            scored.notes.append(f"label '{label}' ({count} records) in {report['data']} is not in the vocabulary of "
                                f"{scored.names[-1]}: not scored")
    return scored


def evaluate(
    run: LoadedRun, data: str | Path | None, batch_size: int | None, rule: DecisionRule | None = None,
    keep_scores: bool = False, policy: ReadPolicy | None = None,
) -> dict[str, Any]:
    """Every number of the report. With keep_scores, the raw arrays are added under "_arrays" (for plots)."""
    rule = rule or run.thresholds
    notes: list[str] = []
    path = data if data is not None else run_test_file(run, notes)
    policy = policy or ReadPolicy(run.config.data.on_error)
    records = list(read_records(path, FieldSpec.from_config(run.config.data), policy=policy))
    encoded = run.labels.encode(records)
    probs = np.concatenate([scores for _, scores in score_records(run, records, batch_size)])
    labels = run.labels.labels
    predicted = rule.apply(probs, labels)

    report = compute_metrics(encoded.targets, encoded.mask, predicted, labels)
    report["run"] = str(run.path)
    report["data"] = str(path)
    report["decision_rule"] = rule.describe()
    report["precision"] = run.precision  # fp32, bf16 or int8, as load_run chose (eval --precision)
    report["unknown_labels"] = dict(encoded.unknown_labels.most_common())
    report["skipped_lines"] = dict(policy.stats[str(path)].skipped)
    report["ranking"] = ranking_metrics(probs, encoded.targets, encoded.mask)
    report["no_gold_label"] = no_gold_label_stats(predicted, np.array([carries_no_topic(r) for r in records]))
    stats = _train_stats(run)
    if stats is not None:
        counts = stats.counts()
        report["frequency_groups"] = frequency_group_scores(report["per_label"], counts)
        for row in report["per_label"]:
            row["train_positives"] = counts.get(row["label"], 0.0)
        report["baseline_micro_f1"] = most_frequent_label_baseline(stats, encoded.targets, encoded.mask)
    notes.extend(data_notes(report, run.path.name, str(path)))
    repeats = repeated_ids(records, path, policy.stats[str(path)].unit)
    notes.extend([repeats] if repeats else [])
    report["provenance"] = provenance_summary(run.path)  # None: a run trained before provenance.json
    notes.extend(eval_notes(run.path, path))  # an ONNX export; the evaluated file is the training/validation file
    report["notes"] = notes
    if keep_scores:
        report["_arrays"] = {"probs": probs, "targets": encoded.targets, "mask": encoded.mask,
                             "predicted": predicted, "ids": [r.id for r in records]}
    return report


def run_name(path: Path, taken: list[str]) -> str:
    """A scored run's name in the report (and its --plots folder): its folder's name; a name given already (a
    run given twice, or two runs of one name in other folders) is told apart as name#N."""
    return path.name if path.name not in taken else f"{path.name}#{len(taken) + 1}"


def run_test_file(run: LoadedRun, notes: list[str]) -> Path:
    """The run's data.test. A relative one (runs trained before data paths were saved absolute) is relative
    to the folder the run was trained in: found there when the run still sits where it was written, else
    relative to this folder; if neither holds it, the error says so and suggests --data."""
    return config_test_file(run.config, run.path, notes)


def config_test_file(config, run_path: Path, notes: list[str]) -> Path:
    """run_test_file of a run's config and resolved folder (the run not loaded: eval checks its outputs apart
    from it before any run is)."""
    value = config.data.test
    if value is None:
        raise MlclsError("no evaluation data: the run's config names no data.test; pass --data FILE")
    given = Path(value)
    if given.is_absolute():
        if not given.exists():
            raise MlclsError(f"{given}: not found (data.test of {run_path / CONFIG}); pass --data FILE")
        return given
    trained_in = training_folder(run_path, config.output.dir)
    if trained_in is not None and (trained_in / given).exists():
        there = trained_in / given
        if not given.exists() or given.resolve() != there.resolve():
            notes.append(f"data.test of {run_path.name} is {value}, relative to the folder it was trained in: "
                         f"reading {there}")
        return there
    if given.exists():
        return given
    where = f" ({trained_in} by where the run sits), not this one" if trained_in is not None else ""
    raise MlclsError(f"{value}: not found; data.test in {run_path / CONFIG} is relative to the folder the run "
                     f"was trained in{where}: run eval from there, or pass --data FILE")


def training_folder(run: Path, output_dir: str) -> Path | None:
    """The folder a run was trained in, read off where it sits: a run written to the relative output.dir
    `runs` sits in <that folder>/runs/<name>. None when the run has moved or output.dir says nothing."""
    out = Path(output_dir)
    if out.is_absolute() or ".." in out.parts:
        return None
    parent = run.absolute().parent
    n = len(out.parts)
    if n and (len(parent.parts) <= n or parent.parts[-n:] != out.parts):
        return None
    return Path(*parent.parts[: len(parent.parts) - n])


def data_notes(report: dict[str, Any], run: str, data: str) -> list[str]:
    """What the figures cannot say by themselves: labels that are all unknown to the run, data without a gold
    label, frequency groups with nothing to score (their F1 is shown as -, not as a 0)."""
    notes = []
    known_positives = sum(row["support"] for row in report["per_label"])
    unknown = report["unknown_labels"]
    if unknown and known_positives == 0:
        shown = ", ".join(f"'{label}'" for label in list(unknown)[:3]) + (", ..." if len(unknown) > 3 else "")
        notes.append(f"none of the labels in {data} is in the vocabulary of {run} ({len(unknown)} unknown: {shown}): "
                     "every article counts as having no topic, so F1 is 0; is this the data the run was trained "
                     "for?")
    elif known_positives == 0:
        notes.append(f"no article in {data} has a gold label: F1, precision and recall have nothing to measure "
                     "(shown as 0); the no-topic figures still apply")
    groups = report.get("frequency_groups")
    if groups:
        spans = {"head": f"at least {HEAD_MIN}", "medium": f"{TAIL_MAX + 1} to {HEAD_MIN - 1}",
                 "tail": f"fewer than {TAIL_MAX + 1}"}
        empty = [name for name, group in groups.items() if group["labels"] == 0]
        if empty:
            notes.append(f"{run} has no {' or '.join(empty)} labels ("
                         + "; ".join(f"{name}: {spans[name]} training articles" for name in empty)
                         + f"): {'that group is' if len(empty) == 1 else 'those groups are'} shown as -")
        for name, group in groups.items():
            if group["labels"] and group["micro_f1"] is None:
                notes.append(f"none of the {group['labels']} {name} labels of {run} has a gold or predicted article "
                             f"in {data}: {name} F1 is shown as -")
            elif group["labels"] and group["macro_f1"] is None:
                notes.append(f"none of the {group['labels']} {name} labels of {run} has a gold article in {data} "
                             f"(only false alarms): {name} macro-F1 is shown as -, micro-F1 is 0")
    return notes


def ranking_metrics(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Threshold-free quality of the score ranking, over the articles with at least one gold label.

    An article with no gold label has nothing to rank (scikit-learn would count it as perfect for LRAP);
    not-annotated entries are moved to the bottom of the ranking and count as not relevant.
    """
    gold = gold_matrix(targets, mask)
    rows = gold.sum(axis=1) > 0
    out: dict[str, Any] = {"articles": int(rows.sum())}
    if not rows.any():
        return out
    gold, scores = gold[rows], np.where(mask[rows] > 0, probs[rows], -1.0)
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 3, 5):
        k_eff = min(k, scores.shape[1])
        hits = np.take_along_axis(gold, order[:, :k_eff], axis=1).sum(axis=1)
        out[f"precision_at_{k}"] = float((hits / k).mean())
    if scores.shape[1] < 2:  # a run of one label ranks nothing (scikit-learn refuses nDCG and coverage there)
        return out
    for k in (3, 5):
        out[f"ndcg_at_{k}"] = float(ndcg_score(gold, scores, k=k))
    out["lrap"] = float(label_ranking_average_precision_score(gold, scores))
    out["coverage_error"] = float(coverage_error(gold, scores))
    return out


def carries_no_topic(record: Record) -> bool:
    """An article known to have no topic: `labels: []`, or every entry annotated below 0.5. Not one whose only
    topics are unknown to the run (it has a topic), nor one with a `null` entry (it may have that one)."""
    return all(confidence is not None and confidence < 0.5 for confidence in (record.labels or {}).values())


def no_gold_label_stats(predicted: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """The articles with no topic (`rows`, carries_no_topic): a model that always says something is wrong on all
    of them. What was predicted for them is the whole output, every label of the run."""
    chosen = predicted[rows]
    return {
        "articles": int(rows.sum()),
        "share_predicted_empty": float((~chosen.any(axis=1)).mean()) if rows.any() else None,
        # false alarms over those articles' label slots (all of them negatives)
        "false_alarm_rate": float(chosen.sum() / chosen.size) if chosen.size else None,
        "mean_labels_predicted": float(chosen.sum(axis=1).mean()) if rows.any() else None,
    }


def _train_stats(run: LoadedRun) -> LabelStats | None:
    return peek_label_stats(run.path)


def eval_notes(run_dir: Path, evaluated: str | Path) -> list[str]:
    """What `mlcls eval` adds about the run it scores: an ONNX export says so (and whether it is int8); the
    evaluated file being the training or validation file is warned about."""
    note = export_note(run_dir)
    return ([note] if note else []) + data_overlap_notes(run_dir, evaluated)


def most_frequent_label_baseline(stats: LabelStats, targets: np.ndarray, mask: np.ndarray) -> float:
    """Micro-F1 of tagging every article with the training set's most frequent label."""
    pred = np.zeros_like(targets, dtype=bool)
    pred[:, int(np.argmax(stats.article_counts()))] = True
    return micro_f1_counts(gold_matrix(targets, mask).astype(bool), pred & (mask > 0))
