"""The lexical model's regularisation (model.lexical_c) and blend (model.lexical_blend) studied offline on trained
runs' saved validation scores.

For each run (a validation hold-out; not cross-fitted): the encoder's own validation scores from
RUN/tuning_scores.npz, and the lexical model refitted on the run's training part (the same seeded hold-out as
`mlcls train`) at each C. The blend weight is chosen as training chooses it, by the held-out mean of micro- and
macro-F1 on validation (`mlcls.training.fusion`), and that figure is reported; no test file is read.

    python scripts/bench_lexical_c.py runs/cpu-chunks128-seed1 runs/cpu-chunks128-seed2 --c 10 30 100 300 1000
    python scripts/bench_lexical_c.py runs/cpu-fastdrop-seed1 --c 100 --blend probability logit
    python scripts/bench_lexical_c.py runs/cpu-passes-seed1 --c 100 --set threshold.quantile_scale=auto

--set changes the runs' saved config before the study (a decision rule's keys: the rule is tuned inside each
held-out fold, so a rule that searches, such as quantile_scale auto, is scored on rows its search did not see).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchlib import hold_out_run, machine, write_block  # scripts/ is on sys.path when a script runs

from mlcls.api import (
    BLENDS,
    LabelSpace,
    blend,
    choose_weight,
    fit_lexical,
    fusion_objective,
    held_out_f1_of,
)


def study(run: Path, cs: list[float], blends: list[str] | None, data: Path | None,
          overrides: list[str] | None = None) -> list[dict]:
    config, labels, train, texts, saved, priors = hold_out_run(run, data / "train.jsonl" if data is not None else None,
                                                               overrides)
    encoded = LabelSpace(labels).encode(train)

    held_out = held_out_f1_of(config, saved["targets"], saved["mask"], labels, priors)  # as training

    label = run.name if run.parent.name == "runs" else f"{run.parent.name}/{run.name}"  # a tune study's trial
    rows = []
    for c in cs:
        started = time.perf_counter()
        model = fit_lexical([r.text for r in train], encoded.targets, encoded.mask, c)
        fit_s = time.perf_counter() - started
        lexical = model.probabilities(texts)
        alone = held_out(lexical)
        for space in blends or [config.model.lexical_blend]:
            weight, _ = choose_weight(saved["encoder_probs"], lexical, lambda p: fusion_objective(held_out(p)),
                                      model.abstain, space)
            fused = held_out(blend(saved["encoder_probs"], lexical, weight, model.abstain, space))
            rows.append({"run": label, "c": c, "blend": space, "weight": weight, "micro": 100 * fused["micro_f1"],
                         "macro": 100 * fused["macro_f1"], "alone_micro": 100 * alone["micro_f1"],
                         "alone_macro": 100 * alone["macro_f1"], "fit_s": fit_s})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], cs: list[float], command: str, seconds: float) -> str:
    lines = ["Held-out validation F1 (each rule tuned on 4/5 of the validation rows, scored on the other 1/5 in turn): "
             "what training chooses the blend weight by. Fused = encoder and lexical model blended at the weight "
             "chosen; alone = the lexical model by itself.",
             f"Machine: {machine()}; {seconds / 60:.1f} min.", "",
             "| run | C | blend | weight chosen | fused micro / macro-F1 | mean of the two "
             "| lexical alone micro / macro-F1 | fit s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['c']:g} | {r['blend']} | {r['weight']:.1f} | {r['micro']:.2f} / "
                     f"{r['macro']:.2f} | {(r['micro'] + r['macro']) / 2:.2f} | {r['alone_micro']:.2f} / "
                     f"{r['alone_macro']:.2f} | {r['fit_s']:.1f} |")
    for c in cs:
        for space in dict.fromkeys(r["blend"] for r in rows):
            mine = [(r["micro"] + r["macro"]) / 2 for r in rows if r["c"] == c and r["blend"] == space]
            lines.append(f"| mean of {len(mine)} runs | {c:g} | {space} | | | {statistics.mean(mine):.2f} | | |")
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--c", type=float, nargs="+", default=[10.0, 30.0, 100.0, 300.0, 1000.0])
    parser.add_argument("--blend", nargs="+", choices=list(BLENDS),
                        help="model.lexical_blend values to try at each C (default: each run's own)")
    parser.add_argument("--data", type=Path, help="a folder with the runs' train.jsonl (default: their config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key changed in every run before the study (repeatable)")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--block", default="bench_lexical_c", help="the docs block the table goes to")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    for item in args.set:  # other keys (data, seed) would draw another hold-out than the run's saved scores'
        if not item.startswith("threshold."):
            parser.error(f"--set {item}: only threshold.* keys can change (the runs' validation scores are fixed)")
    started = time.perf_counter()
    rows = [row for run in args.runs for row in study(run, args.c, args.blend, args.data, args.set)]
    table = markdown(rows, args.c, "python scripts/bench_lexical_c.py " + " ".join(sys.argv[1:]),
                     time.perf_counter() - started)
    print(table)
    if not args.no_record:
        write_block(args.doc, args.block, table, "## The lexical model's regularisation "
                    "(`scripts/bench_lexical_c.py`)")


if __name__ == "__main__":
    main()
