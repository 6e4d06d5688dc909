"""The accuracy protocol on Reuters-21578: `mlcls train -c CONFIG` once per seed, `mlcls eval` on test, a table.

Each seed is a run named PREFIX-seedN under --runs. The script picks up where it stopped: a finished run is
only scored again, an interrupted one (Ctrl-C, a kill, the end of a session) is continued with
`mlcls train --resume`. So a protocol that takes hours on a CPU can be run a piece at a time.

    mlcls data reuters --source ../shared/data/reuters21578 --out data/reuters
    python scripts/reuters_accuracy.py --seeds 1 2 3                       # ApteMod-90, configs/reuters.yaml
    mlcls data reuters --source ../shared/data/reuters21578 --out data/reuters-modapte --split modapte
    python scripts/reuters_accuracy.py --seeds 1 --prefix modapte --data data/reuters-modapte

Thresholds come from the validation split that the config holds out of train; the test split is only
scored. Per seed: micro/macro-F1, head/medium/tail macro-F1, the share of zero-topic test articles
predicted empty (ModApte keeps them), training seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchlib import eval_command, machine, mlcls_command, pct, run_all, write_block  # scripts/ is on sys.path

PAPER = "Huang et al. 2021, BERT-base: best micro-F1 90.74 (CB-NTR), best macro-F1 64.47 (DB); BCE 89.14 / 47.32"


def training_command(name: str, seed: int, args: argparse.Namespace) -> list[str] | None:
    """The `mlcls train` that (re)starts run `name`; None when it has finished."""
    run = args.runs / name
    if (run / "metrics.json").is_file():
        return None
    if (args.runs / f".{name}.incomplete" / "checkpoint").is_dir() or (
            args.runs / f".{name}.incomplete" / "checkpoint.old").is_dir():
        return mlcls_command("train", "--resume", str(run))
    overrides = [item for pair in args.set for item in ("--set", pair)]
    if args.data:
        overrides += ["--set", f"data.train={args.data / 'train.jsonl'}",
                      "--set", f"data.test={args.data / 'test.jsonl'}"]
    return mlcls_command("train", "-c", str(args.config), "--seed", str(seed), "--name", name,
                         "--out", str(args.runs), *overrides)


def score(run: Path, folder: Path) -> dict:
    """The row of a run that `eval_command` has scored."""
    out = folder / f"{run.name}.eval.json"
    report = json.loads(out.read_text())
    trained = json.loads((run / "metrics.json").read_text())
    groups = report.get("frequency_groups", {})
    return {
        "run": run.name, "micro_f1": report["micro_f1"], "macro_f1": report["macro_f1"],
        **{f"{g}_macro_f1": groups.get(g, {}).get("macro_f1") for g in ("head", "medium", "tail")},
        "no_topic_articles": report["no_gold_label"]["articles"],
        "no_topic_predicted_empty": report["no_gold_label"]["share_predicted_empty"],
        "decision_rule": report["decision_rule"], "train_seconds": trained["train_seconds"],
        "epochs": trained["epochs_trained"], "device": trained["device"], "precision": trained["precision"],
    }


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"`{args.config}`{' on ' + str(args.data) if args.data else ''}"
        f"{' with ' + ', '.join(args.set) if args.set else ''}; test split scored by `mlcls eval`. {PAPER}.",
        *([f"Machine: {machine()}; {args.parallel} trainings at a time, so a run's training seconds are those of "
           "a shared device."] if args.parallel > 1 else [f"Machine: {machine()}."]),
        "",
        "| run | micro-F1 | macro-F1 | head | medium | tail | zero-topic predicted empty | rule | epochs | "
        "training s | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n_empty = r["no_topic_articles"]
        empty = f"{pct(r['no_topic_predicted_empty'])}% of {n_empty}" if n_empty else "-"
        lines.append(f"| {r['run']} | {pct(r['micro_f1'])} | {pct(r['macro_f1'])} | {pct(r['head_macro_f1'])} | "
                     f"{pct(r['medium_macro_f1'])} | {pct(r['tail_macro_f1'])} | {empty} | {r['decision_rule']} | "
                     f"{r['epochs']} | {r['train_seconds']:.0f} | {r['device']} {r['precision']} |")
    if len(rows) > 1:
        def mean_sd(key: str) -> str:
            values = [100 * r[key] for r in rows]
            return f"**{statistics.mean(values):.2f}** ± {statistics.stdev(values):.2f}"

        lines.append(f"| mean ± sd of {len(rows)} | {mean_sd('micro_f1')} | {mean_sd('macro_f1')} | | | | | | | "
                     f"{statistics.mean(r['train_seconds'] for r in rows):.0f} | |")
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/reuters.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--prefix", default="reuters")
    parser.add_argument("--data", type=Path, help="a folder with train.jsonl and test.jsonl instead of the config's")
    parser.add_argument("--set", action="append", default=[], help="a config override, key=value (repeatable)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--save-scores", action="store_true",
                        help="also keep each run's test scores (RUNS/NAME.test-scores.npz) for offline study")
    parser.add_argument("--parallel", type=int, default=1,
                        help="trainings at a time (a GPU; on a 2-core CPU one at a time is fastest)")
    args = parser.parse_args()

    names = {seed: f"{args.prefix}-seed{seed}" for seed in args.seeds}
    commands = [training_command(name, seed, args) for seed, name in names.items()]
    run_all([c for c in commands if c], max(1, args.parallel))
    run_all([eval_command(args.runs / name, args.runs, args.save_scores) for name in names.values()],
            max(1, args.parallel), quiet=True)
    rows = []
    for name in names.values():
        rows.append(score(args.runs / name, args.runs))
        print(json.dumps(rows[-1]), flush=True)
    command = "python scripts/reuters_accuracy.py " + " ".join(sys.argv[1:])
    table = markdown(rows, args, command)
    print(table)
    if not args.no_record:
        write_block(args.docs, f"reuters_accuracy:{args.prefix}", table,
                    "## Reuters-21578 accuracy protocol (`scripts/reuters_accuracy.py`)")


if __name__ == "__main__":
    main()
