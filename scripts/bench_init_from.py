"""`mlcls train --init-from RUN` against training from scratch (issue 30's goals), on Reuters ApteMod-90 by default.

(a) New topics. K of the topics (default 20 of 90) are removed from the labels of train (the articles are kept,
    some with no topic left, so the parent's rule may predict none: threshold.min_labels=0): a run is trained on
    that, the parent. Then `--init-from` it on all topics for
    --child-epochs (1), against a from-scratch run on all topics for --scratch-epochs (3). Goals: the child within
    0.5 micro-F1 and 1.0 macro-F1 (points) of the scratch run, in at most half its training time, and the old
    topics' mean F1 (the parent's before, the child's after) down by at most 0.5 on average.
(b) More articles, same topics. A parent on the first half of train (file order), then `--init-from` it on the
    second half for --child-epochs, with --init-keep-labels (a rare topic the second half lacks is kept, not
    dropped), against the same scratch run.

Which K topics: all topics ordered by training frequency (most frequent first, then by name), and K of them at
even steps along that order (positions round(i * n / K)), so that frequent, medium and rare topics all become new.
The reduced and halved training files are written under --work (data/reuters/init-from/), beside the list of the
removed topics. Every run takes the same base --config and --set overrides (so that a cheaper CPU setting, e.g.
model.long_text=truncate, applies to all of them alike); a run already finished is only scored again, an
interrupted one is continued with `mlcls train --resume`. Every figure comes from `mlcls eval --json` (test
split) and the runs' metrics.json; the old topics' mean F1 is the mean of eval's per-label F1 over those topics
with test articles. Training time: metrics.json's train_seconds (the training loop) and wall_seconds (the whole
`mlcls train`, with loading, tokenising, validation and any lexical model); the time goal is judged on the wall.

    python scripts/bench_init_from.py                                            # configs/reuters.yaml: hours on a CPU
    python scripts/bench_init_from.py --set model.long_text=truncate --set model.lexical=none   # cheaper on a CPU
    python scripts/bench_init_from.py --scratch runs/reuters-seed1 --skip-halves # reuse a 3-epoch 90-topic run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchlib import machine, mlcls_command, pct, run_all, write_block  # scripts/ is on sys.path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def labels_of(row: dict) -> list[str]:
    labels = row.get("labels") or []
    return list(labels) if isinstance(labels, list) else [name for name in labels]


def topics_to_remove(rows: list[dict], k: int) -> list[str]:
    """K topics at even steps along the topics ordered by training frequency (most frequent first)."""
    counts: dict[str, int] = {}
    for row in rows:
        for name in labels_of(row):
            counts[name] = counts.get(name, 0) + 1
    ordered = sorted(counts, key=lambda name: (-counts[name], name))
    if not 0 < k < len(ordered):
        raise SystemExit(f"--new-topics {k}: the training file has {len(ordered)} topics")
    return sorted({ordered[round(i * len(ordered) / k)] for i in range(k)})


def without_topics(rows: list[dict], removed: set[str]) -> list[dict]:
    """The rows with those topics taken out of their labels (a list, or an object of confidences)."""
    out = []
    for row in rows:
        labels = row.get("labels") or []
        if isinstance(labels, dict):
            kept = {name: value for name, value in labels.items() if name not in removed}
        else:
            kept = [name for name in labels if name not in removed]
        out.append({**row, "labels": kept})
    return out


def training_files(args: argparse.Namespace) -> dict[str, Path]:
    """The reduced and halved training files (written once; the same on every rerun: nothing is random)."""
    rows = read_jsonl(args.data / "train.jsonl")
    removed = topics_to_remove(rows, args.new_topics)
    work = args.work
    (work / "removed-topics.json").parent.mkdir(parents=True, exist_ok=True)
    (work / "removed-topics.json").write_text(json.dumps(removed, indent=1) + "\n")
    half = len(rows) // 2
    return {"reduced": write_jsonl(work / f"train-without-{len(removed)}.jsonl", without_topics(rows, set(removed))),
            "first": write_jsonl(work / "train-first-half.jsonl", rows[:half]),
            "second": write_jsonl(work / "train-second-half.jsonl", rows[half:])}


def train_command(args: argparse.Namespace, name: str, train_file: Path, *extra: str) -> list[str] | None:
    """`mlcls train` of run `name` on `train_file`, with the base config and overrides; None when it has finished;
    `--resume` when it was interrupted."""
    run = args.runs / name
    if (run / "metrics.json").is_file():
        return None
    staging = args.runs / f".{name}.incomplete"
    if (staging / "checkpoint").is_dir() or (staging / "checkpoint.old").is_dir() or (staging / "folds").is_dir():
        return mlcls_command("train", "--resume", str(run))
    overrides = [item for pair in args.set for item in ("--set", pair)]
    return mlcls_command("train", "-c", str(args.config), *overrides, "--set", f"data.train={train_file}",
                         "--set", f"data.test={args.data / 'test.jsonl'}", "--out", str(args.runs), "--name", name,
                         *extra)


def evaluate(args: argparse.Namespace, run: Path) -> dict:
    """`mlcls eval RUN` on the test file (its JSON report), once per run."""
    out = args.runs / f"{run.name}.init-bench.eval.json"
    if not out.is_file():
        run_all([mlcls_command("eval", str(run), "--data", str(args.data / "test.jsonl"), "--json", str(out))], 1,
                quiet=True)
    return json.loads(out.read_text())


def figures(args: argparse.Namespace, run: Path, topics: list[str] | None = None) -> dict:
    """A run's test figures and training times; with `topics`, also their mean per-label F1 (those with test
    articles)."""
    report = evaluate(args, run)
    trained = json.loads((run / "metrics.json").read_text())
    row = {"run": run.name, "micro_f1": report["micro_f1"], "macro_f1": report["macro_f1"],
           "train_seconds": trained["train_seconds"], "wall_seconds": trained["wall_seconds"],
           "epochs": trained["epochs_trained"], "device": f"{trained['device']} {trained['precision']}",
           "per_label_f1": {r["label"]: r["f1"] for r in report["per_label"] if r["support"] > 0}}
    if topics is not None:
        scored = [row["per_label_f1"][name] for name in topics if name in row["per_label_f1"]]
        row["topics_mean_f1"] = statistics.mean(scored) if scored else None
    return row


def goals(child: dict, scratch: dict, before: dict | None = None) -> list[str]:
    """The issue's goals, each with its figure and whether it is met."""
    def line(text: str, ok: bool) -> str:
        return f"- {text}: {'met' if ok else '**not met**'}"

    micro, macro = 100 * (child["micro_f1"] - scratch["micro_f1"]), 100 * (child["macro_f1"] - scratch["macro_f1"])
    ratio = child["wall_seconds"] / max(scratch["wall_seconds"], 1e-9)
    out = [line(f"micro-F1 {micro:+.2f} points against from scratch (goal: no worse than -0.5)", micro >= -0.5),
           line(f"macro-F1 {macro:+.2f} points (goal: no worse than -1.0)", macro >= -1.0),
           line(f"training time {ratio:.2f}x from scratch's, wall clock (goal: at most 0.5x; the training loop "
                f"alone: {child['train_seconds'] / max(scratch['train_seconds'], 1e-9):.2f}x)", ratio <= 0.5)]
    if before is not None and before.get("topics_mean_f1") is not None and child.get("topics_mean_f1") is not None:
        drop = 100 * (child["topics_mean_f1"] - before["topics_mean_f1"])
        out.append(line(f"the old topics' mean F1 {drop:+.2f} points, the parent's {pct(before['topics_mean_f1'])} "
                        f"to the child's {pct(child['topics_mean_f1'])} (goal: no worse than -0.5)", drop >= -0.5))
    return out


def table(rows: list[dict], old_topics: int | None) -> list[str]:
    head = "| run | epochs | micro-F1 | macro-F1 |" + (f" old {old_topics} topics' mean F1 |" if old_topics else "")
    lines = [head + " training s (loop) | training s (wall) | device |",
             "|---" * (head.count("|") + 2) + "|"]
    for r in rows:
        cell = f" {pct(r.get('topics_mean_f1'))} |" if old_topics else ""
        lines.append(f"| {r['run']} | {r['epochs']} | {pct(r['micro_f1'])} | {pct(r['macro_f1'])} |{cell} "
                     f"{r['train_seconds']:.0f} | {r['wall_seconds']:.0f} | {r['device']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/reuters.yaml"), help="the base config")
    parser.add_argument("--set", action="append", default=[], help="a config override for every run, key=value")
    parser.add_argument("--data", type=Path, default=Path("data/reuters"), help="a folder with train/test.jsonl")
    parser.add_argument("--work", type=Path, help="where the derived training files go (default: DATA/init-from, "
                        "beside the collection they come from: data/reuters/ is never committed)")
    parser.add_argument("--runs", type=Path, default=Path("runs/init-from"))
    parser.add_argument("--prefix", default="reuters")
    parser.add_argument("--new-topics", type=int, default=20, help="topics removed from the parent's labels")
    parser.add_argument("--child-epochs", type=int, default=1)
    parser.add_argument("--scratch-epochs", type=int, default=3)
    parser.add_argument("--scratch", type=Path, help="an existing from-scratch run on all of train to compare with")
    parser.add_argument("--skip-halves", action="store_true", help="only (a), new topics")
    parser.add_argument("--parallel", type=int, default=1, help="trainings at a time (a GPU; 1 on a CPU)")
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    args.work = args.work or args.data / "init-from"

    files = training_files(args)
    removed = json.loads((args.work / "removed-topics.json").read_text())
    p, names = args.prefix, {"parent": f"{args.prefix}-without-{len(removed)}", "first": f"{args.prefix}-first-half"}
    scratch = args.scratch or args.runs / f"{p}-scratch"
    # Articles whose topics were all removed have none left: the parent's rule must be free to predict none.
    parents = [train_command(args, names["parent"], files["reduced"], "--set", "threshold.min_labels=0")]
    parents += [] if args.skip_halves else [train_command(args, names["first"], files["first"])]
    if args.scratch is None:
        parents.append(train_command(args, scratch.name, args.data / "train.jsonl", "--epochs",
                                     str(args.scratch_epochs)))
    run_all([c for c in parents if c], max(1, args.parallel))
    child_epochs = ("--epochs", str(args.child_epochs))
    children = [train_command(args, f"{p}-all-from-without", args.data / "train.jsonl", "--init-from",
                              str(args.runs / names["parent"]), *child_epochs)]
    if not args.skip_halves:
        children.append(train_command(args, f"{p}-second-from-first", files["second"], "--init-from",
                                      str(args.runs / names["first"]), "--init-keep-labels", *child_epochs))
    run_all([c for c in children if c], max(1, args.parallel))

    all_topics = sorted({name for row in read_jsonl(args.data / "train.jsonl") for name in labels_of(row)})
    old = [name for name in all_topics if name not in removed]
    base = figures(args, scratch, old)
    before = figures(args, args.runs / names["parent"], old)
    after = figures(args, args.runs / f"{p}-all-from-without", old)
    command = "python scripts/bench_init_from.py " + " ".join(sys.argv[1:])
    lines = [f"`{args.config}`{' with ' + ', '.join(args.set) if args.set else ''}; test split scored by `mlcls eval`. "
             f"Machine: {machine()}.", "",
             f"**(a) New topics.** {len(removed)} of {len(all_topics)} topics removed from the parent's labels "
             f"({', '.join(removed)}); the child starts from it on all topics. The parent's micro- and macro-F1 "
             "are over its own topics (eval leaves the others unscored).", "",
             *table([before, after, base], len(old)), "", *goals(after, base, before)]
    if not args.skip_halves:
        first = figures(args, args.runs / names["first"])
        second = figures(args, args.runs / f"{p}-second-from-first")
        lines += ["", "**(b) More articles, same topics.** The parent on the first half of train, the child "
                      "(`--init-keep-labels`) from it on the second half.", "",
                  *table([first, second, base], None), "", *goals(second, base)]
    lines += ["", f"Command: `{command}`."]
    text = "\n".join(lines)
    print(text)
    for row in (before, after, base):
        print(json.dumps({k: v for k, v in row.items() if k != "per_label_f1"}), flush=True)
    if not args.no_record:
        write_block(args.docs, f"init_from:{p}", text, "## Starting from a run (`scripts/bench_init_from.py`)")


if __name__ == "__main__":
    main()
