"""Time to reach a test micro-F1 (default 0.85) on Reuters ApteMod-90: mlcls against the Hugging Face Trainer.

Both contenders train the bundled MiniLM on data/reuters/train.jsonl at the same max length (128) and batch
size (32), and are scored on the whole ApteMod-90 test split (3,019 articles) every EVAL_EVERY optimizer
steps, each with the same rule (a label is predicted when its sigmoid score is >= 0.5, which is what
run_classification.py does for multi-label data) and the same scikit-learn micro-F1. A contender stops at
the first evaluation that reaches the target, or after its configured epochs.

  - hf-default: the Trainer as transformers' run_classification.py drives it by default
    (AutoModelForSequenceClassification with problem_type="multi_label_classification", every text padded
    to max length, fp32, learning rate 5e-5 with linear decay, 3 epochs), on all 7,770 training articles;
  - mlcls: configs/reuters.yaml as `mlcls train -c configs/reuters.yaml` runs it (it holds 10% of train out
    for validation, so it trains on 6,993 articles). Between evaluations it is stopped the way Ctrl-C stops
    it and resumed from its checkpoint; the test split is scored from the checkpoint's weights.

"Training seconds" is each training loop's own time: the test evaluations (and, for mlcls, the process
work of stopping and resuming) are left out; mlcls's validation at an epoch end is left out too
(its loop clock, `train_seconds`, does not count it). Test scores here are for the benchmark only: mlcls
never uses the test split to choose anything.

    python scripts/bench_time_to_f1.py               # > 1 h on the 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import write_block  # scripts/ is on sys.path when a script runs

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def micro_f1(targets, predicted) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(targets, predicted, average="micro", zero_division=0))


def texts_and_labels(path: Path, n: int | None) -> tuple[list[str], list[list[str]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:n]
    texts = ["\n".join(part for part in (r.get("title"), r.get("text")) if part) for r in rows]
    return texts, [list(r["labels"]) for r in rows]


def hf_worker(args: argparse.Namespace) -> list[dict]:
    """The Trainer with run_classification.py's defaults, the test split as its evaluation set."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )
    from transformers.utils import logging

    from mlcls.api import resolve_encoder

    logging.set_verbosity_error()
    texts, labels = texts_and_labels(args.train, args.limit)
    test_texts, test_labels = texts_and_labels(args.test, args.limit)
    vocabulary = sorted({name for row in labels for name in row})
    index = {name: i for i, name in enumerate(vocabulary)}

    def targets_of(rows: list[list[str]]):
        out = np.zeros((len(rows), len(vocabulary)), dtype=np.float32)
        for i, names in enumerate(rows):
            out[i, [index[n] for n in names if n in index]] = 1.0
        return out

    source = resolve_encoder(ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(vocabulary), problem_type="multi_label_classification", use_safetensors=True)

    def dataset(texts_: list[str], rows: list[list[str]]):
        return Dataset.from_dict({"text": texts_, "labels": targets_of(rows).tolist()}).map(
            lambda b: tokenizer(b["text"], padding="max_length", max_length=args.max_length, truncation=True),
            batched=True, remove_columns=["text"])

    def compute_metrics(prediction):
        return {"micro_f1": micro_f1(prediction.label_ids, prediction.predictions >= 0.0)}  # logit 0 = score 0.5

    class TimedTrainer(Trainer):
        """Keeps the evaluations' time out of the training clock."""

        eval_seconds = 0.0
        eval_started = 0.0

        def evaluate(self, *a, **kw):
            self.eval_started = time.perf_counter()
            result = super().evaluate(*a, **kw)
            self.eval_seconds += time.perf_counter() - self.eval_started
            return result

    points: list[dict] = []

    class Record(TrainerCallback):
        began = 0.0

        def on_train_begin(self, _args, state, control, **kw):
            self.began = time.perf_counter()

        def on_evaluate(self, _args, state, control, metrics=None, **kw):
            seconds = trainer.eval_started - self.began - trainer.eval_seconds
            points.append({"step": state.global_step, "samples": state.global_step * args.batch_size,
                           "seconds": seconds, "micro_f1": metrics["eval_micro_f1"]})
            print(json.dumps(points[-1]), file=sys.stderr, flush=True)
            if metrics["eval_micro_f1"] >= args.target:
                control.should_training_stop = True

    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        num_train_epochs=args.hf_epochs, learning_rate=args.hf_lr, eval_strategy="steps",
        eval_steps=args.eval_every,
        use_cpu=not torch.cuda.is_available(), report_to=[], save_strategy="no", logging_strategy="no",
        dataloader_num_workers=0, seed=args.seed, disable_tqdm=True,
    )
    trainer = TimedTrainer(model=model, args=training_args, train_dataset=dataset(texts, labels),
                           eval_dataset=dataset(test_texts, test_labels), data_collator=default_data_collator,
                           compute_metrics=compute_metrics, callbacks=[Record()])
    trainer.train()
    if not points or points[-1]["step"] != trainer.state.global_step:  # the end of training, if not evaluated
        trainer.evaluate()
    return points


def mlcls_worker(args: argparse.Namespace) -> list[dict]:
    """configs/reuters.yaml, stopped every EVAL_EVERY steps (a StopSignal, as Ctrl-C), scored on test from
    the checkpoint, resumed."""
    import numpy as np
    import torch
    from rich.console import Console

    # build_model, find_checkpoint, load_checkpoint: not in mlcls.api yet (asked for): the model of a config,
    # and the weights of an interrupted run's checkpoint, which no public call reads.
    from mlcls.api import (
        FieldSpec,
        LabelSpace,
        LoadedRun,
        ReadPolicy,
        StopAfterStep,
        TrainingInterrupted,
        build_model,
        find_checkpoint,
        load_checkpoint,
        load_config,
        load_run,
        read_records,
        score_records,
        train,
        training_split,
    )

    folder = Path(tempfile.mkdtemp())
    train_file = folder / "train.jsonl"
    test_file = folder / "test.jsonl"
    for source, copy in ((args.train, train_file), (args.test, test_file)):
        lines = [line for line in source.read_text().splitlines(keepends=True) if line.strip()]
        copy.write_text("".join(lines[: args.limit]))
    config = load_config("configs/reuters.yaml", [
        f"data.train={train_file}", f"data.test={test_file}", f"model.max_length={args.max_length}",
        f"train.batch_size={args.batch_size}", f"train.seed={args.seed}", f"train.cache_dir={folder / 'cache'}",
        f"output.dir={folder / 'runs'}", "output.name=bench",
    ])

    # The label order training uses: the vocabulary of the training records left after the hold-out.
    labels = LabelSpace.from_records(training_split(config, ReadPolicy("fail"))[0])
    test_records = list(read_records(test_file, FieldSpec.from_config(config.data), policy=ReadPolicy("fail")))
    test_targets = labels.encode(test_records).targets
    scorer, tokenizer = build_model(config.model, labels.labels)
    # The checkpoint's weights go into `scorer`, scored as `mlcls eval` scores a run (score_records, batch 64).
    checkpointed = LoadedRun(folder, config, labels, None, scorer, tokenizer, torch.device("cpu"))

    def test_micro_f1(weights: dict) -> float:
        scorer.load_state_dict(weights)
        probs = np.concatenate([scores for _, scores in score_records(checkpointed, test_records, 64)])
        return micro_f1(test_targets, probs >= 0.5)

    points: list[dict] = []
    staging, resume, at = folder / "runs" / ".bench.incomplete", None, args.eval_every
    quiet = Console(stderr=True, quiet=True)
    while True:
        try:
            result = train(config, quiet, resume=resume, stop=StopAfterStep(at))
        except TrainingInterrupted:
            saved = load_checkpoint(find_checkpoint(staging))
            state = saved.state
            f1 = test_micro_f1(saved.model)
        else:  # all epochs done: the finished run's kept weights
            m = result.metrics
            state = {"step": -(-m["train_records"] // config.train.batch_size) * m["epochs_trained"],
                     "samples_seen": m["train_records"] * m["epochs_trained"], "train_seconds": m["train_seconds"],
                     "finished": True}
            f1 = test_micro_f1(load_run(result.run_dir, device="cpu", precision="fp32").model.state_dict())
        points.append({"step": state["step"], "samples": state["samples_seen"], "seconds": state["train_seconds"],
                       "micro_f1": f1})
        print(json.dumps(points[-1]), file=sys.stderr, flush=True)
        if f1 >= args.target or state.get("finished"):
            return points
        resume, at = staging, state["step"] + args.eval_every


def run_arm(arm: str, args: argparse.Namespace) -> list[dict]:
    command = [sys.executable, __file__, "--worker", arm, "--train", str(args.train), "--test", str(args.test),
               "--max-length", str(args.max_length), "--batch-size", str(args.batch_size), "--eval-every",
               str(args.eval_every), "--target", str(args.target), "--hf-epochs", str(args.hf_epochs),
               "--hf-lr", str(args.hf_lr),
               "--seed", str(args.seed)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def reached(points: list[dict], target: float) -> dict | None:
    return next((p for p in points if p["micro_f1"] >= target), None)


def markdown(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    lines = [
        f"Time to test micro-F1 >= {args.target} ({args.test}, score >= 0.5 for both), bundled MiniLM, max length "
        f"{args.max_length}, batch {args.batch_size}, evaluated every {args.eval_every} optimizer steps, "
        f"{platform.processor() or platform.machine()}:",
        "",
        "| contender | reached at step | articles seen | training seconds | test micro-F1 at each evaluation |",
        "|---|---:|---:|---:|---|",
    ]
    for arm, points in results.items():
        hit = reached(points, args.target)
        trail = ", ".join(f"{p['micro_f1']:.3f}" for p in points)
        if hit:
            lines.append(f"| {arm} | {hit['step']} | {hit['samples']:,} | {hit['seconds']:.0f} | {trail} |")
        else:
            last = points[-1]
            lines.append(f"| {arm} | not reached | {last['samples'] or 0:,} | > {last['seconds']:.0f} | {trail} |")
    hits = {arm: reached(points, args.target) for arm, points in results.items()}
    if hits.get("mlcls") and "hf-default" in results:
        ours, theirs = hits["mlcls"]["seconds"], hits["hf-default"]
        if theirs:
            verdict = f"the Trainer in {theirs['seconds']:.0f} s: **{theirs['seconds'] / ours:.1f}x** mlcls's time"
        else:
            last = results["hf-default"][-1]["seconds"]
            verdict = f"the Trainer not within its {last:.0f} s: **more than {last / ours:.1f}x** mlcls's time"
        lines += ["", f"mlcls reached the target in {ours:.0f} s of training; {verdict}."]
    lines += ["", f"Command: `python scripts/bench_time_to_f1.py --eval-every {args.eval_every} --target {args.target} "
              f"--hf-epochs {args.hf_epochs:g}" + (f" --hf-lr {args.hf_lr:g}" if args.hf_lr != 5e-5 else "") + "`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=Path("data/reuters/train.jsonl"))
    parser.add_argument("--test", type=Path, default=Path("data/reuters/test.jsonl"))
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--eval-every", type=int, default=60, help="optimizer steps between test evaluations")
    parser.add_argument("--hf-epochs", type=float, default=3.0, help="the Trainer's epochs (run_classification: 3)")
    parser.add_argument("--hf-lr", type=float, default=5e-5,
                        help="the Trainer's learning rate (run_classification: 5e-5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, help="first N articles of each file (a smoke test of the script)")
    parser.add_argument("--arms", nargs="+", default=["mlcls", "hf-default"])
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--worker", choices=["hf-default", "mlcls"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(mlcls_worker(args) if args.worker == "mlcls" else hf_worker(args)))
        return
    for path in (args.train, args.test):
        if not path.is_file():
            sys.exit(f"{path}: not found; convert Reuters first: mlcls data reuters --out data/reuters")

    results = {arm: run_arm(arm, args) for arm in args.arms}
    table = markdown(results, args)
    print(table)
    if not args.no_record and not args.limit:
        write_block(args.docs, "bench_time_to_f1", table)


if __name__ == "__main__":
    main()
