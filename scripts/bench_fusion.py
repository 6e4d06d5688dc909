"""Lexical fusion and decision rules studied offline on trained runs' saved scores (no model needed).

For each run: its tuning scores (RUN/tuning_scores.npz: validation, or out-of-fold for a cross-fitted run),
its test scores (`mlcls eval RUN --save-scores RUN.test-scores.npz`, what scripts/gpu_bench.sh brings back),
and the data. The lexical model (mlcls's model.lexical: tfidf) is fitted exactly as training would: on the
same folds for out-of-fold scores (or on the run's training part for a validation hold-out), then on all
of it for test. The blend weight and the rule are chosen on the tuning scores only; test is reported.

    python scripts/bench_fusion.py /tmp/gpu/gpu-cv5-bce-seed1 ... --data data/reuters [--no-record]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs

from mlcls.api import (
    FieldSpec,
    blend,
    choose_weight,
    compute_metrics,
    fit_lexical,
    fold_of_each_record,
    frequency_group_scores,
    held_out_f1,
    load_config,
    out_of_fold_lexical,
    peek_label_stats,
    read_records,
    training_split,
    tune_rule,
)

RULES = [("per_label", 3, 1), ("hybrid", 3, 1), ("prior_quantile", 3, 1)]


def lexical_scores(run: Path, config, ids: list[str], cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lexical probabilities on the tuning rows, in `ids` order; on the test records), as training makes them."""
    metrics = json.loads((run / "metrics.json").read_text())
    folds = metrics.get("folds", 1)
    key = (config.train.seed, folds, config.data.split)
    if key in cache:
        return cache[key]
    fields = FieldSpec.from_config(config.data)
    test = list(read_records(config.data.test, fields))
    if folds > 1:
        config.data.val_fraction = 0.0
        pool, _ = training_split(config)
        labels = json.loads((run / "labels.json").read_text())["labels"]
        targets, mask = encode(pool, labels)
        fold = fold_of_each_record(pool, folds, config.train.seed)
        tuning = out_of_fold_lexical([r.text for r in pool], targets, mask, fold, config.model.lexical_c)
        order = {r.id: i for i, r in enumerate(pool)}
        tuning = tuning[[order[i] for i in ids]]
        model = fit_lexical([r.text for r in pool], targets, mask, config.model.lexical_c)
    else:
        train, val = training_split(config)
        labels = json.loads((run / "labels.json").read_text())["labels"]
        targets, mask = encode(train, labels)
        model = fit_lexical([r.text for r in train], targets, mask, config.model.lexical_c)
        by_id = {r.id: r for r in val}
        tuning = model.probabilities([by_id[i].text for i in ids])
    cache[key] = (tuning, model.probabilities([r.text for r in test]))
    return cache[key]


def encode(records, labels: list[str]):
    from mlcls.api import LabelSpace

    enc = LabelSpace(labels).encode(records)
    return enc.targets, enc.mask


def study(run: Path, test_scores: Path, data: Path, cache: dict) -> list[dict]:
    config = load_config(run / "config.yaml")
    # The runs were trained elsewhere (a GPU machine): read the data from here.
    config.data.train, config.data.test = str(data / "train.jsonl"), str(data / "test.jsonl")
    saved = np.load(run / "tuning_scores.npz", allow_pickle=False)
    test = np.load(test_scores, allow_pickle=False)
    ids = saved["ids"].tolist()
    labels = json.loads((run / "labels.json").read_text())["labels"]
    stats = peek_label_stats(run)
    if stats is None:
        raise SystemExit(f"{run}: no readable label statistics (label_stats.json)")
    lex_tuning, lex_test = lexical_scores(run, config, ids, cache)
    space = config.model.lexical_blend  # blended as the run's config blends
    rows = []
    for rule_name, min_positives, min_labels in RULES:
        def rule_for(probs, targets=saved["targets"], mask=saved["mask"], rule_name=rule_name,
                     min_positives=min_positives, min_labels=min_labels):
            return tune_rule(probs, targets, mask, labels, rule_name, 0.5, min_positives, 1, min_labels,
                             priors=stats.prior(), seed=config.train.seed)

        def tuning_f1(probs, rule_for=rule_for):  # what a user can choose by: held-out mean micro / macro
            f1 = held_out_f1(probs, saved["targets"], saved["mask"], labels, rule_for, seed=config.train.seed)
            return (f1["micro_f1"] + f1["macro_f1"]) / 2

        for fused in (False, True):
            weight = choose_weight(saved["probs"], lex_tuning, tuning_f1, space=space)[0] if fused else 0.0
            tuning = blend(saved["probs"], lex_tuning, weight, space=space)
            scores = blend(test["probs"], lex_test, weight, space=space)
            rule = rule_for(tuning)
            report = compute_metrics(test["targets"], test["mask"], rule.apply(scores, labels), labels)
            groups = frequency_group_scores(report["per_label"], stats.counts())
            shown = rule.describe().split(" (held-out")[0] if rule_name == "auto" else rule_name
            rows.append({"run": run.name, "rule": f"{shown}{' + at least one' if min_labels else ''}",
                         "lexical": weight if fused else None,
                         "tuning": round(100 * tuning_f1(tuning), 2), "micro": 100 * report["micro_f1"],
                         "macro": 100 * report["macro_f1"], "tail": groups["tail"]["macro_f1"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    lines = ["Tuning = mean of micro- and macro-F1 on the run's tuning scores (validation, or out-of-fold), each "
             "rule tuned on 4/5 of them and scored on the other 1/5 in turn (held out): what the weight and, for "
             "auto, the rule are chosen by; test is only reported.",
             f"Machine for the fusion (scores came from the runs): {machine()}; {seconds / 60:.0f} min.", "",
             "| run | rule | lexical weight | tuning | test micro-F1 | test macro-F1 | tail macro-F1 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        weight = "-" if r["lexical"] is None else f"{r['lexical']:.1f}"
        tail = "-" if r["tail"] is None else f"{100 * r['tail']:.2f}"
        lines.append(f"| {r['run']} | {r['rule']} | {weight} | {r['tuning']:.2f} | {r['micro']:.2f} | "
                     f"{r['macro']:.2f} | {tail} |")
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("data/reuters"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    cache: dict = {}
    rows = []
    for run in args.runs:
        rows += study(run, run.with_name(f"{run.name}.test-scores.npz"), args.data, cache)
    table = markdown(rows, "python scripts/bench_fusion.py " + " ".join(sys.argv[1:]), time.perf_counter() - started)
    print(table)
    if not args.no_record:
        write_block(args.doc, "bench_fusion", table, "## Lexical fusion and rules on saved scores "
                    "(`scripts/bench_fusion.py`)")


if __name__ == "__main__":
    main()
