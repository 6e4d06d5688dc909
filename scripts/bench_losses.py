"""Every loss of the registry on Reuters-21578 ApteMod-90, one seed, one config; results into docs/benchmarks.md.

Two settings:
  --mode frozen    (default; the 2-core CPU setting) the bundled encoder is frozen: the texts are encoded
                   once (mean pooling, cached on disk), then a linear head is trained with each loss on
                   those vectors. Isolates what the loss does to the decision layer in minutes, not hours.
  --mode finetune  runs `mlcls train` + `mlcls eval` per loss (the full recipe; for a GPU).
Both tune the decision rule (per-label thresholds by default) on a validation split held out of
train (never test) and score the test split with mlcls's own metrics. A TF-IDF + linear SVM row
(scikit-learn) is computed on the same split.

    mlcls data reuters --source ../shared/data/reuters21578 --out data/reuters
    python scripts/bench_losses.py                      # writes the table into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks_doc import write_block  # scripts/ is on sys.path when a script runs

from mlcls.data.labels import LabelSpace, LabelStats
from mlcls.data.records import FieldSpec, read_records
from mlcls.evaluation.metrics import compute_metrics, frequency_group_scores
from mlcls.inference.decision import tune
from mlcls.model.loss_specs import LOSSES
from mlcls.model.losses import build_loss
from mlcls.training.split import hold_out

PAPER = {  # Huang et al. 2021 (EMNLP), Table 2, BERT-base fine-tuned, ApteMod-90 test: micro / macro F1
    "bce": (89.14, 47.32), "focal": (89.97, 56.83), "cb": (89.23, 52.96), "ntr_focal": (90.70, 60.70),
    "cb_ntr": (90.74, 63.31), "db": (90.62, 64.47), "tfidf_svm": (87.60, 51.63),
}


def encode_frozen(texts: list[str], encoder: str, max_length: int, cache: Path) -> np.ndarray:
    """Mean-pooled vectors of the frozen encoder, cached by content (encoder, max_length, texts)."""
    key = hashlib.sha256(json.dumps([encoder, max_length, texts]).encode()).hexdigest()[:16]
    path = cache / f"frozen-{key}.npy"
    if path.exists():
        return np.load(path)
    import torch

    from mlcls.data.batching import inference_batches, pad_batch, tokenize
    from mlcls.model.classifier import MultiLabelClassifier, load_encoder

    enc, tokenizer = load_encoder(encoder)
    model = MultiLabelClassifier(enc, 1).eval()
    ids = tokenize(tokenizer, texts, max_length)
    out = np.zeros((len(texts), enc.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for batch in inference_batches([len(i) for i in ids], 64):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], tokenizer.pad_token_id or 0)
            out[batch] = model.pool(input_ids, attention_mask).numpy()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def train_head(x, targets, mask, stats: LabelStats, loss_name: str, epochs: int, seed: int):
    """A linear head on frozen vectors: bias at the label log-odds, AdamW, minibatches of 64."""
    import torch

    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], targets.shape[1])
    with torch.no_grad():
        prior = stats.prior()
        head.bias.copy_(torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32))
        head.weight.normal_(0, 0.02)
    loss_fn = build_loss(loss_name, {}, stats)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt, mt = torch.from_numpy(x), torch.from_numpy(targets), torch.from_numpy(mask)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 64)):
            loss = loss_fn(head(xt[batch]), yt[batch], mt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return lambda v: torch.sigmoid(head(torch.from_numpy(v))).detach().numpy()


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


def read_split(args):
    """(all of train, its 90% / 10% hold-out split as mlcls makes it for the seed, test, label space)."""
    fields = FieldSpec(text_fields=("title", "text"))
    train_all = list(read_records(args.data / "train.jsonl", fields))
    test = list(read_records(args.data / "test.jsonl", fields))
    train, val = hold_out(train_all, 0.1, args.seed)
    return train_all, train, val, test, LabelSpace.from_records(train)


def run_frozen(args) -> list[dict]:
    train_all, train, val, test, space = read_split(args)
    tr, va, te = space.encode(train), space.encode(val), space.encode(test)
    stats = LabelStats.from_encoded(space.labels, tr.targets, tr.mask)
    counts = stats.counts()

    started = time.perf_counter()
    vectors = encode_frozen([r.text for r in train + val + test], args.encoder, args.max_length, args.cache)
    print(f"encoded {len(vectors)} texts in {time.perf_counter() - started:.0f} s (cached after the first run)")
    x_tr, x_va, x_te = np.split(vectors, [len(train), len(train) + len(val)])

    rows = []
    for name in args.losses:
        started = time.perf_counter()
        predict = train_head(x_tr, tr.targets, tr.mask, stats, name, args.epochs, args.seed)
        rule = tune(predict(x_va), va.targets, va.mask, space.labels, args.rule)
        report = compute_metrics(te.targets, te.mask, rule.apply(predict(x_te), space.labels), space.labels)
        report["threshold"] = rule.threshold
        rows.append(row(name, report, frequency_group_scores(report["per_label"], counts),
                        time.perf_counter() - started))
        print(json.dumps(rows[-1]))

    rows.append(svm_row(train_all, test, space, counts))
    return rows


def svm_row(train_all, test, space: LabelSpace, counts: dict) -> dict:
    """TF-IDF + linear SVM (scikit-learn) on the same split: all of train (it tunes no threshold), test scored;
    head/medium/tail by the label counts of the 90% that the neural rows train on."""
    te = space.encode(test)
    started = time.perf_counter()
    predicted = tfidf_svm([r.text for r in train_all], space.encode(train_all).targets >= 0.5,
                          [r.text for r in test])
    report = compute_metrics(te.targets, te.mask, predicted, space.labels)
    result = row("tfidf_svm", report, frequency_group_scores(report["per_label"], counts),
                 time.perf_counter() - started)
    print(json.dumps(result))
    return result


def run_finetune(args) -> list[dict]:
    """`mlcls train -c CONFIG --loss NAME` per loss (`--parallel` at a time: a GPU), then `mlcls eval` on test."""
    from reuters_accuracy import eval_command, run_all  # scripts/ is on sys.path when a script runs

    stamp = int(time.time())
    names = {loss: f"bench-{loss}-seed{args.seed}-{stamp}" for loss in args.losses}
    data = ["--set", f"data.train={args.data / 'train.jsonl'}", "--set", f"data.test={args.data / 'test.jsonl'}",
            *(item for pair in args.set for item in ("--set", pair))]
    run_all([[sys.executable, "-m", "mlcls", "train", "-c", str(args.config), "--loss", loss, "--name", name,
              "--seed", str(args.seed), "--out", str(args.runs), *data] for loss, name in names.items()],
            args.parallel)
    run_all([eval_command(args.runs / name, args.runs) for name in names.values()], args.parallel, quiet=True)
    rows = []
    for loss, name in names.items():
        run = args.runs / name
        report = json.loads((args.runs / f"{name}.eval.json").read_text())
        report["threshold"] = None  # per-label cut-offs (the config's rule): no single global one to show
        seconds = json.loads((run / "metrics.json").read_text())["train_seconds"]
        # mlcls eval groups labels by the run's own training counts (label_stats.json), as the frozen rows do
        rows.append(row(loss, report, report["frequency_groups"], seconds))
        print(json.dumps(rows[-1]))
    train_all, train, _, test, space = read_split(args)
    tr = space.encode(train)
    rows.append(svm_row(train_all, test, space, LabelStats.from_encoded(space.labels, tr.targets, tr.mask).counts()))
    return rows


def markdown(rows: list[dict], args, wall: float) -> str:
    from reuters_accuracy import machine

    setting = ("frozen encoder (bundled MiniLM, mean pooling, max length "
               f"{args.max_length}), linear head trained {args.epochs} epochs per loss" if args.mode == "frozen"
               else f"full fine-tuning with `{args.config}` (per-label thresholds), {args.parallel} trainings "
                    "at a time on one device (the s column: training seconds on that shared device)")
    lines = [
        f"Setting: {setting}; seed {args.seed}; {args.rule} thresholds tuned on 10% of train held out; "
        f"ApteMod-90 test (3,019 articles). Machine: {machine()}, "
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
            f"| {r['loss']} | {100 * r['micro_f1']:.2f} | {100 * r['macro_f1']:.2f} | {100 * r['head_macro_f1']:.2f} "
            f"| {100 * r['medium_macro_f1']:.2f} | {100 * r['tail_macro_f1']:.2f} | {threshold} | {r['seconds']} "
            f"| {f'{paper[0]:.2f} / {paper[1]:.2f}' if paper else '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("frozen", "finetune"), default="frozen")
    parser.add_argument("--data", type=Path, default=Path("data/reuters"))
    parser.add_argument("--losses", nargs="+", default=[n for n in LOSSES if n != "confidence"])
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rule", choices=("per_label", "global"), default="per_label",
                        help="decision rule tuned on validation (frozen mode)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mlcls" / "bench")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--config", type=Path, default=Path("configs/reuters.yaml"), help="finetune mode")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="finetune mode: where the runs go")
    parser.add_argument("--parallel", type=int, default=1, help="finetune mode: trainings at a time (a GPU)")
    parser.add_argument("--set", action="append", default=[], help="finetune mode: a config override, key=value")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run_frozen(args) if args.mode == "frozen" else run_finetune(args)
    table = markdown(rows, args, time.perf_counter() - started)
    print(table)
    write_block(args.doc, "bench_losses" if args.mode == "frozen" else "bench_losses:finetune", table,
                "## Losses on Reuters-21578 ApteMod-90 (`scripts/bench_losses.py`)")


if __name__ == "__main__":
    main()
