"""Decision rules compared on Reuters-21578 ApteMod-90, in bench_losses.py's frozen-encoder setting.

For each loss given, one linear head is trained on the cached frozen-encoder vectors; then every rule is
tuned on the validation split (10% of train) and scored on test:

    python scripts/bench_thresholds.py --losses bce asl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_losses import encode_frozen, train_head

from mlcls.data.labels import LabelSpace, LabelStats
from mlcls.data.records import FieldSpec, read_records
from mlcls.evaluation.metrics import compute_metrics
from mlcls.inference.decision import tune
from mlcls.training.split import hold_out

RULES = [("fixed", 3), ("global", 3), ("per_label", 3), ("per_label", 5), ("per_label", 10), ("per_label", 20)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/reuters"))
    parser.add_argument("--losses", nargs="+", default=["bce", "asl"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mlcls" / "bench")
    args = parser.parse_args()

    fields = FieldSpec(text_fields=("title", "text"))
    train, val = hold_out(list(read_records(args.data / "train.jsonl", fields)), 0.1, args.seed)
    test = list(read_records(args.data / "test.jsonl", fields))
    space = LabelSpace.from_records(train)
    tr, va, te = space.encode(train), space.encode(val), space.encode(test)
    stats = LabelStats.from_encoded(space.labels, tr.targets, tr.mask)
    vectors = encode_frozen([r.text for r in train + val + test], "sentence-transformers/all-MiniLM-L6-v2", 128,
                            args.cache)
    x_tr, x_va, x_te = np.split(vectors, [len(train), len(train) + len(val)])

    print("| loss | rule | min_positives | labels at the global cut-off | test micro-F1 | test macro-F1 |")
    print("|---|---|---|---|---|---|")
    for loss in args.losses:
        predict = train_head(x_tr, tr.targets, tr.mask, stats, loss, 40, args.seed)
        val_scores, test_scores = predict(x_va), predict(x_te)
        for rule_name, min_positives in RULES:
            rule = tune(val_scores, va.targets, va.mask, space.labels, rule_name, min_positives=min_positives)
            report = compute_metrics(te.targets, te.mask, rule.apply(test_scores, space.labels), space.labels)
            fallback = len(rule.fallback_labels) if rule_name == "per_label" else "-"
            shown_min = min_positives if rule_name == "per_label" else "-"
            print(f"| {loss} | {rule_name} | {shown_min} | {fallback} | {100 * report['micro_f1']:.2f} "
                  f"| {100 * report['macro_f1']:.2f} |")


if __name__ == "__main__":
    main()
