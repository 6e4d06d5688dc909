"""Every loss of the registry on Reuters-21578 ApteMod-90, one seed, one config; results into docs/benchmarks.md.

Each loss is one real `mlcls train -c CONFIG --loss NAME`, then `mlcls eval` on the test split: the table
measures the commands users run. Two settings, one flag apart:
  --mode frozen    (default; the 2-core CPU setting) `mlcls train --freeze-encoder`: mlcls encodes the texts
                   once with the config's encoder (cached on disk, shared by every loss) and trains only the
                   head, 40 epochs by default. Isolates what the loss does to the decision layer in minutes,
                   not hours.
  --mode finetune  the same command without --freeze-encoder (the full recipe, the config's epochs; a GPU).
Both tune the decision rule (--rule; per-label thresholds by default) on what `mlcls train` tunes it on (the
validation split it holds out of train, never test) and score the test split with `mlcls eval`. A TF-IDF +
linear SVM row (scikit-learn) is computed on the same split.

    mlcls data reuters --source ../shared/data/reuters21578 --out data/reuters
    python scripts/bench_losses.py                      # writes the table into docs/benchmarks.md
    python scripts/bench_losses.py --mode finetune --seed 1 --parallel 8     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchlib import eval_command, machine, mlcls_command, pct, run_all, write_block  # scripts/ is on sys.path

from mlcls.api import (
    LOSSES,
    Config,
    FieldSpec,
    LabelSpace,
    LabelStats,
    ReadPolicy,
    compute_metrics,
    frequency_group_scores,
    load_config,
    read_records,
    read_rule,
    training_split,
)

PAPER = {  # Huang et al. 2021 (EMNLP), Table 2, BERT-base fine-tuned, ApteMod-90 test: micro / macro F1
    "bce": (89.14, 47.32), "focal": (89.97, 56.83), "cb": (89.23, 52.96), "ntr_focal": (90.70, 60.70),
    "cb_ntr": (90.74, 63.31), "db": (90.62, 64.47), "tfidf_svm": (87.60, 51.63),
}
FROZEN_EPOCHS = 40  # a head on cached embeddings: 40 epochs take about as long as encoding the texts once


def epochs(args: argparse.Namespace) -> int | None:
    """--epochs, else 40 for a frozen encoder; None (the config's) for fine-tuning."""
    if args.epochs is not None:
        return args.epochs
    return FROZEN_EPOCHS if args.mode == "frozen" else None


def overrides(args: argparse.Namespace) -> list[str]:
    """The `--set key=value` pairs of every training; the user's own --set come last, so they win. A frozen
    encoder caches one vector per article, so its trainings read articles truncated (model.long_text)."""
    frozen = ["model.long_text=truncate"] if args.mode == "frozen" else []
    return [f"data.train={args.data / 'train.jsonl'}", f"data.test={args.data / 'test.jsonl'}",
            f"threshold.rule={args.rule}", *frozen, *args.set]


def config_of(args: argparse.Namespace) -> Config:
    """The config the trainings run with (the loss aside), resolved as `mlcls train` resolves it: a bad --set or
    --rule stops the script here, before any training starts."""
    options = {"train.seed": args.seed, "train.epochs": epochs(args),
               "train.freeze_encoder": True if args.mode == "frozen" else None}
    return load_config(args.config, overrides(args), options)


def run_name(loss: str, args: argparse.Namespace, stamp: int) -> str:
    return f"bench-{'frozen-' if args.mode == 'frozen' else ''}{loss}-seed{args.seed}-{stamp}"


def training_command(loss: str, name: str, args: argparse.Namespace) -> list[str]:
    """`mlcls train` of one loss; frozen and finetune differ only by --freeze-encoder (and the epochs)."""
    freeze = ["--freeze-encoder"] if args.mode == "frozen" else []
    n_epochs = epochs(args)
    return mlcls_command("train", "-c", str(args.config), *freeze, "--loss", loss,
                         *(["--epochs", str(n_epochs)] if n_epochs is not None else []), "--seed", str(args.seed),
                         "--name", name, "--out", str(args.runs),
                         *(item for pair in overrides(args) for item in ("--set", pair)))


def train_and_score(args: argparse.Namespace) -> list[dict]:
    """Train every loss (`--parallel` at a time), then `mlcls eval` each run on test; one row per loss."""
    stamp = int(time.time())
    names = {loss: run_name(loss, args, stamp) for loss in args.losses}
    commands = [training_command(loss, name, args) for loss, name in names.items()]
    if args.mode == "frozen" and args.parallel > 1:
        # The first training computes and caches the frozen embeddings; started side by side, each would.
        run_all(commands[:1], 1)
        commands = commands[1:]
    run_all(commands, args.parallel)
    run_all([eval_command(args.runs / name, args.runs) for name in names.values()], args.parallel, quiet=True)
    return [loss_row(loss, args.runs / name, args.runs) for loss, name in names.items()]


def loss_row(loss: str, run: Path, folder: Path) -> dict:
    """The row of a run that `eval_command` has scored."""
    report = json.loads((folder / f"{run.name}.eval.json").read_text())
    rule = read_rule(run)
    # The tuned global cut-off (per_label: the one of labels with too few validation positives); top_k has none.
    report["threshold"] = None if rule.rule == "top_k" else rule.threshold
    seconds = json.loads((run / "metrics.json").read_text())["train_seconds"]
    # mlcls eval groups labels by the run's own training counts (label_stats.json), as the SVM row does
    result = row(loss, report, report["frequency_groups"], seconds)
    print(json.dumps(result), flush=True)
    return result


def tfidf_svm(train_texts, train_y, test_texts):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2)
    model = OneVsRestClassifier(LinearSVC(class_weight="balanced"), n_jobs=1)
    model.fit(vectorizer.fit_transform(train_texts), train_y)
    return model.predict(vectorizer.transform(test_texts)).astype(bool)


def row(name: str, report: dict, groups: dict, seconds: float) -> dict:
    return {"loss": name, "micro_f1": report["micro_f1"], "macro_f1": report["macro_f1"],
            **{f"{g}_macro_f1": groups[g]["macro_f1"] for g in ("head", "medium", "tail")},
            "threshold": report.get("threshold"), "seconds": round(seconds, 1)}


def svm_row(config: Config) -> dict:
    """TF-IDF + linear SVM (scikit-learn) on the same split: all of train (it tunes no threshold), test scored;
    head/medium/tail by the label counts of the part of train that the neural rows train on."""
    fields, policy = FieldSpec.from_config(config.data), ReadPolicy(config.data.on_error)
    train_all = list(read_records(config.data.train, fields, policy=policy))
    test = list(read_records(config.data.test, fields, policy=policy))
    train, _ = training_split(config)  # what `mlcls train` trains on: its validation hold-out left out
    space = LabelSpace.from_records(train)
    tr, te = space.encode(train), space.encode(test)
    counts = LabelStats.from_encoded(space.labels, tr.targets, tr.mask).counts()
    started = time.perf_counter()
    predicted = tfidf_svm([r.text for r in train_all], space.encode(train_all).targets >= 0.5,
                          [r.text for r in test])
    report = compute_metrics(te.targets, te.mask, predicted, space.labels)
    result = row("tfidf_svm", report, frequency_group_scores(report["per_label"], counts),
                 time.perf_counter() - started)
    print(json.dumps(result), flush=True)
    return result


def tuned_on(config: Config) -> str:
    if config.train.folds > 1:
        return f"out-of-fold scores of all of train ({config.train.folds} folds)"
    if config.data.validation:
        return f"`{config.data.validation}`"
    return f"{config.data.val_fraction:.0%} of train held out"


def setting(args: argparse.Namespace, config: Config) -> str:
    model = config.model
    if args.mode == "frozen":
        return (f"`mlcls train -c {args.config} --freeze-encoder`: frozen encoder (`{model.encoder}`, "
                f"{model.pooling} pooling, max length {model.max_length}, embeddings cached by mlcls), head trained "
                f"{config.train.epochs} epochs per loss")
    return (f"full fine-tuning with `{args.config}` ({config.train.epochs} epochs), {args.parallel} trainings at a "
            "time on one device (the s column: training seconds on that shared device)")


def markdown(rows: list[dict], args: argparse.Namespace, config: Config, wall: float) -> str:
    lines = [
        f"Setting: {setting(args, config)}; seed {args.seed}; {config.threshold.rule} rule tuned on "
        f"{tuned_on(config)}; test split scored by `mlcls eval` (ApteMod-90: 3,019 articles). Machine: {machine()}, "
        f"total wall time {wall / 60:.1f} min. Command: `{' '.join(['python', *sys.argv])}`.",
        "",
        "| loss | micro-F1 | macro-F1 | head macro-F1 | medium macro-F1 | tail macro-F1 | global cut-off | s "
        "| paper micro / macro (BERT-base, fine-tuned) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = PAPER.get(r["loss"])
        threshold = f"{r['threshold']:.2f}" if r["threshold"] is not None else "-"
        lines.append(
            f"| {r['loss']} | {pct(r['micro_f1'])} | {pct(r['macro_f1'])} | {pct(r['head_macro_f1'])} "
            f"| {pct(r['medium_macro_f1'])} | {pct(r['tail_macro_f1'])} | {threshold} | {r['seconds']} "
            f"| {f'{paper[0]:.2f} / {paper[1]:.2f}' if paper else '-'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("frozen", "finetune"), default="frozen",
                        help="frozen: `mlcls train --freeze-encoder`; finetune: the same without it")
    parser.add_argument("--data", type=Path, default=Path("data/reuters"), help="a folder with train/test.jsonl")
    parser.add_argument("--losses", nargs="+", default=[n for n in LOSSES if n != "confidence"])
    parser.add_argument("--epochs", type=int, help=f"default: {FROZEN_EPOCHS} frozen, the config's for finetune")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rule", default="per_label", help="the decision rule each run tunes (threshold.rule)")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--config", type=Path, default=Path("configs/reuters.yaml"))
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the runs go")
    parser.add_argument("--parallel", type=int, default=1, help="trainings at a time (a GPU)")
    parser.add_argument("--set", action="append", default=[], help="a config override, key=value (repeatable)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    args.parallel = max(1, args.parallel)
    config = config_of(args)
    started = time.perf_counter()
    rows = [*train_and_score(args), svm_row(config)]
    table = markdown(rows, args, config, time.perf_counter() - started)
    print(table)
    write_block(args.doc, "bench_losses" if args.mode == "frozen" else "bench_losses:finetune", table,
                "## Losses on Reuters-21578 ApteMod-90 (`scripts/bench_losses.py`)")


if __name__ == "__main__":
    main()
