"""Refit the lexical model on train + validation once its weight and the rule are chosen? Studied on trained
runs' saved validation scores, without the test file.

`mlcls train` with a validation hold-out fits the lexical model (model.lexical: tfidf) on the training part,
then chooses its blend weight and the decision rule on validation. Cross-fitting already refits it on every
article once they are chosen on out-of-fold scores; this asks whether the hold-out should do the same. Proxy:
validation split in two stratified halves; weight and rule chosen on one half with the lexical model fitted on
the training part (as training chooses them); the other half scored with that model ("kept") and with one
refitted on the training part plus the tuning half ("refit"), at the same weight and rule. Both directions, a
few splits per run; the figures are paired (same articles, same encoder scores).

    python scripts/bench_lexical_refit.py runs/cpu-lexc100-seed1 runs/cpu-lexc100-seed2 runs/cpu-lexc100-seed3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import hold_out_run, machine, write_block  # scripts/ is on sys.path when a script runs

from mlcls.api import (
    LabelSpace,
    LabelStats,
    blend,
    choose_thresholds,
    choose_weight,
    compute_metrics,
    fit_lexical,
    fusion_objective,
    held_out_f1_of,
    iterative_stratification,
    load_config,
    training_split,
)


def f1(targets, mask, decisions, labels) -> tuple[float, float]:
    metrics = compute_metrics(targets, mask, decisions, labels)
    return 100 * metrics["micro_f1"], 100 * metrics["macro_f1"]


def study(run: Path, splits: int) -> list[dict]:
    """A trained run: its encoder's saved validation scores, blended as training blends them."""
    config, labels, train, texts, saved, priors = hold_out_run(run)
    return compare(run.name, config, train, labels, texts, saved["targets"], saved["mask"], saved["encoder_probs"],
                   priors, splits)


def study_alone(config_path: Path, seed: int, splits: int) -> list[dict]:
    """No trained run: the lexical model alone (weight 1), on the hold-out `mlcls train` draws at this seed."""
    config = load_config(config_path)
    config.train.seed = seed
    train, validation = training_split(config)
    labels = sorted({name for r in train for name in r.labels})
    val_enc = LabelSpace(labels).encode(validation)
    return compare(f"lexical alone, seed {seed}", config, train, labels, [r.text for r in validation],
                   val_enc.targets, val_enc.mask, None, None, splits)


def compare(name: str, config, train, labels: list[str], texts: list[str], targets: np.ndarray, mask: np.ndarray,
            enc_probs: np.ndarray | None, priors: np.ndarray | None, splits: int) -> list[dict]:
    """`enc_probs` None: the lexical model alone; `priors` None: the training part's, as training computes them."""
    texts = np.array(texts, dtype=object)
    train_enc = LabelSpace(labels).encode(train)
    if priors is None:
        priors = LabelStats.from_encoded(labels, train_enc.targets, train_enc.mask).prior()
    train_texts = [r.text for r in train]
    kept = fit_lexical(train_texts, train_enc.targets, train_enc.mask, config.model.lexical_c)
    kept_probs = kept.probabilities(list(texts))
    if enc_probs is None:  # the lexical model alone: blend(anything, lexical, 1.0) is the lexical scores
        enc_probs = np.zeros_like(kept_probs)
    space = config.model.lexical_blend  # blended as the run blends
    rows = []
    for split in range(splits):
        half = iterative_stratification((targets >= 0.5) & (mask > 0), [0.5, 0.5], seed=split)
        for tuned_on in (0, 1):
            tune, held = half == tuned_on, half != tuned_on
            if enc_probs.any():
                held_out = held_out_f1_of(config, targets[tune], mask[tune], labels, priors)
                weight, _ = choose_weight(enc_probs[tune], kept_probs[tune],
                                          lambda p, held_out=held_out: fusion_objective(held_out(p)),
                                          kept.abstain, space)
            else:
                weight = 1.0
            rule = choose_thresholds(config, blend(enc_probs[tune], kept_probs[tune], weight, kept.abstain, space),
                                     targets[tune], mask[tune], labels, priors)
            refit = fit_lexical(train_texts + list(texts[tune]), np.concatenate([train_enc.targets, targets[tune]]),
                                np.concatenate([train_enc.mask, mask[tune]]), config.model.lexical_c)
            scored = {}
            for which, model, probs in (("kept", kept, kept_probs[held]),
                                        ("refit", refit, refit.probabilities(list(texts[held])))):
                decisions = rule.apply(blend(enc_probs[held], probs, weight, model.abstain, space), labels)
                scored[which] = f1(targets[held], mask[held], decisions, labels)
            rows.append({"run": name, "split": split, "tuned_on": tuned_on, "weight": weight,
                         "kept_micro": scored["kept"][0], "kept_macro": scored["kept"][1],
                         "refit_micro": scored["refit"][0], "refit_macro": scored["refit"][1]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    lines = ["Validation split in two stratified halves; weight and rule chosen on one, the other scored with the "
             "lexical model fitted on the training part (kept) and refitted on the training part plus the tuning "
             "half (refit), at the same weight and rule. Mean over both directions and the splits, per run.",
             f"Machine: {machine()}; {seconds / 60:.1f} min.", "",
             "| run | halves scored | kept micro / macro-F1 | refit micro / macro-F1 | refit - kept micro / macro "
             "| refit better (micro, macro) |", "|---|---|---|---|---|---|"]

    def line(name: str, mine: list[dict]) -> str:
        mean = {k: statistics.mean(r[k] for r in mine) for k in ("kept_micro", "kept_macro", "refit_micro",
                                                                 "refit_macro")}
        better = (sum(r["refit_micro"] > r["kept_micro"] for r in mine),
                  sum(r["refit_macro"] > r["kept_macro"] for r in mine))
        return (f"| {name} | {len(mine)} | {mean['kept_micro']:.2f} / {mean['kept_macro']:.2f} | "
                f"{mean['refit_micro']:.2f} / {mean['refit_macro']:.2f} | "
                f"{mean['refit_micro'] - mean['kept_micro']:+.2f} / {mean['refit_macro'] - mean['kept_macro']:+.2f} "
                f"| {better[0]} of {len(mine)}, {better[1]} of {len(mine)} |")

    for run in dict.fromkeys(r["run"] for r in rows):
        lines.append(line(run, [r for r in rows if r["run"] == run]))
    lines.append(line("all", rows))
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="*", help="trained hold-out runs with model.lexical: tfidf")
    parser.add_argument("--alone", type=Path, metavar="CONFIG",
                        help="no runs: the lexical model alone, on CONFIG's hold-out at each of --seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--splits", type=int, default=3, help="stratified halvings of validation per run")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if bool(args.runs) == bool(args.alone):
        parser.error("give trained runs or --alone CONFIG")
    rows = ([row for run in args.runs for row in study(run, args.splits)] if args.runs else
            [row for seed in args.seeds for row in study_alone(args.alone, seed, args.splits)])
    table = markdown(rows, "python scripts/bench_lexical_refit.py " + " ".join(sys.argv[1:]),
                     time.perf_counter() - started)
    print(table)
    if not args.no_record:
        write_block(args.doc, "bench_lexical_refit" + ("_alone" if args.alone else ""), table,
                    "## Refitting the lexical model on validation too (`scripts/bench_lexical_refit.py`)")


if __name__ == "__main__":
    main()
