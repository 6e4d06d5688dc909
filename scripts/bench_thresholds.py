"""Decision rules compared on real trained runs: each rule tuned on a run's own tuning scores, scored on test.

For each run directory: the scores its decision rule was tuned on (RUN/tuning_scores.npz, saved by
`mlcls train`: the validation split, or out-of-fold scores of all of train), its training label priors
(RUN/label_stats.json) and its config's test file, scored once. Every rule below is tuned on the tuning
scores, with min_labels 0 and 1, and reported twice: micro/macro-F1 on the tuning scores themselves (what
a user can choose a rule by) and on test (only reported: test must never be used to choose). The rule a
user would pick, the best tuning macro-F1 of the run, is marked in bold.

    python scripts/bench_thresholds.py runs/reuters-seed1 runs/reuters-seed2
    python scripts/bench_thresholds.py runs/latest --no-record             # print the table only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from benchlib import pct, write_block  # scripts/ is on sys.path when a script runs

from mlcls.api import (
    FieldSpec,
    compute_metrics,
    frequency_group_scores,
    load_run,
    peek_label_stats,
    read_records,
    score_records,
    tune_rule,
)

# (shown as, rule, min_positives, quantile_scale): min_positives only matters to per_label and hybrid, the scale
# to prior_quantile and hybrid
RULES = [
    ("fixed 0.5", "fixed", 3, 1.0),
    ("global", "global", 3, 1.0),
    ("per_label (min_positives 3)", "per_label", 3, 1.0),
    ("per_label (min_positives 5)", "per_label", 5, 1.0),
    ("top_k 1", "top_k", 3, 1.0),
    ("prior_quantile (scale 1.0)", "prior_quantile", 3, 1.0),
    ("hybrid (min_positives 3)", "hybrid", 3, 1.0),
    ("hybrid (min_positives 5)", "hybrid", 5, 1.0),
    ("hybrid (min_positives 3, scale auto)", "hybrid", 3, "auto"),
]
MIN_LABELS = (0, 1)
HEADING = "## Decision rules on fine-tuned scores (`scripts/bench_thresholds.py`)"


def rule_rows(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, priors: np.ndarray,
              counts: dict[str, float], test_scores: np.ndarray, te_targets: np.ndarray, te_mask: np.ndarray,
              labels: list[str]) -> list[dict]:
    """One row per rule and min_labels: tuned on (probs, targets, mask), scored there and on test. The row
    with the best tuning macro-F1 (the first of equals: the simpler rule) gets "picked": True."""
    rows = []
    for shown, name, min_positives, scale in RULES:
        for min_labels in MIN_LABELS:
            rule = tune_rule(probs, targets, mask, labels, name, default=0.5, min_positives=min_positives, top_k=1,
                             min_labels=min_labels, priors=priors, quantile_scale=scale)
            tuning = compute_metrics(targets, mask, rule.apply(probs, labels), labels)
            test = compute_metrics(te_targets, te_mask, rule.apply(test_scores, labels), labels)
            groups = frequency_group_scores(test["per_label"], counts)
            rows.append({"rule": shown, "min_labels": min_labels, "decision": rule.describe(),
                         "tuning_micro_f1": tuning["micro_f1"], "tuning_macro_f1": tuning["macro_f1"],
                         "test_micro_f1": test["micro_f1"], "test_macro_f1": test["macro_f1"],
                         **{f"{g}_macro_f1": groups[g]["macro_f1"] for g in ("head", "medium", "tail")},
                         "picked": False})
    # the choice a user can make: by the tuning scores alone (max keeps the first of equal rows)
    max(rows, key=lambda r: r["tuning_macro_f1"])["picked"] = True
    return rows


def tuning_scores(run: Path, n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probs, targets, mask) of RUN/tuning_scores.npz, checked against the run's label count."""
    path = run / "tuning_scores.npz"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; a run trained without validation data, or by an mlcls that did not "
                         "save its tuning scores, has none (train it again)")
    with np.load(path, allow_pickle=False) as saved:
        probs, targets, mask = saved["probs"], saved["targets"], saved["mask"]
    if not probs.shape == targets.shape == mask.shape or probs.shape[1:] != (n_labels,):
        raise SystemExit(f"{path}: arrays of shapes {probs.shape}, {targets.shape}, {mask.shape} do not fit the "
                         f"run's {n_labels} labels")
    return probs, targets, mask


def training_stats(run: Path, labels: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """(priors in the order of `labels`, positives per label name) from RUN/label_stats.json."""
    stats = peek_label_stats(run)
    if stats is None:
        raise SystemExit(f"{run}: no readable label statistics (label_stats.json)")
    prior = dict(zip(stats.labels, stats.prior().tolist(), strict=True))
    missing = [name for name in labels if name not in prior]
    if missing:
        raise SystemExit(f"{run / 'label_stats.json'}: no statistics for labels {', '.join(missing[:5])}")
    return np.array([prior[name] for name in labels]), stats.counts()


def run_rows(run_dir: Path, batch_size: int) -> list[dict]:
    """The rows of one run: its test file scored once, every rule applied to those scores."""
    run = load_run(run_dir)
    labels = run.labels.labels
    probs, targets, mask = tuning_scores(run.path, len(labels))
    priors, counts = training_stats(run.path, labels)
    config = run.config
    if config.data.test is None:
        raise SystemExit(f"{run.path}: its config names no data.test to score")
    records = list(read_records(config.data.test, FieldSpec.from_config(config.data)))
    te = run.labels.encode(records)
    test_scores = np.concatenate([scores for _, scores in score_records(run, records, batch_size)])
    rows = rule_rows(probs, targets, mask, priors, counts, test_scores, te.targets, te.mask, labels)
    for r in rows:
        r["run"] = run.path.name
    return rows


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "Each rule tuned on the run's tuning scores (RUN/tuning_scores.npz: the validation split its rule was tuned "
        "on, or out-of-fold scores of all of train), then applied to the run's test split. **Bold**: the rule a "
        "user would pick, the best macro-F1 on the tuning scores.",
        "",
        "| run | rule | min_labels | tuning micro / macro | test micro | test macro | head / medium / tail macro |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rule = f"**{r['rule']}**" if r["picked"] else r["rule"]
        tuning = f"{pct(r['tuning_micro_f1'])} / {pct(r['tuning_macro_f1'])}"
        tuning = f"**{tuning}**" if r["picked"] else tuning
        groups = " / ".join(pct(r[f"{g}_macro_f1"]) for g in ("head", "medium", "tail"))
        lines.append(f"| {r['run']} | {rule} | {r['min_labels']} | {tuning} | {pct(r['test_micro_f1'])} | "
                     f"{pct(r['test_macro_f1'])} | {groups} |")
    lines += [
        "",
        "Test is only reported, never used for choosing: a rule is picked by its tuning scores alone. Rules that "
        "tune cut-offs are scored on the scores they were tuned on, so their tuning F1 flatters them more the "
        "more cut-offs they fit (per_label most of all).",
        "",
        f"Command: `{command}`.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directories (mlcls train output)")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true", help="print the table, do not write it into --doc")
    parser.add_argument("--batch-size", type=int, default=64, help="scoring batch size (articles per pass)")
    args = parser.parse_args()
    rows = [r for run in args.runs for r in run_rows(run, args.batch_size)]
    table = markdown(rows, "python scripts/bench_thresholds.py " + " ".join(sys.argv[1:]))
    print(table)
    if not args.no_record:
        write_block(args.doc, "bench_thresholds", table, HEADING)


if __name__ == "__main__":
    main()
