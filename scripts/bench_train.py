"""Training speed: mlcls's engine against the Hugging Face Trainer, side by side in one run.

Same encoder (the bundled MiniLM), same data (Reuters ApteMod-90 train, all 7,770 articles, title + body
as mlcls builds them; each contender draws its batches from all of it with its own sampler), same max
length, batch size and number of optimizer steps (STEPS), same machine, each contender in a fresh process,
one after the other (repeated --repeats times, interleaved, medians reported). The whole file matters:
Trainer's length grouping sorts "megabatches" of min(50, n / (4 x batch)) batches, so on a few hundred
articles it would not group at all.

  - hf-default: what transformers' examples/pytorch/text-classification/run_classification.py does by
    default: AutoModelForSequenceClassification(problem_type="multi_label_classification"), every text
    padded to max_length (its `pad_to_max_length` default), fp32, Trainer's defaults otherwise;
  - hf-best: the same Trainer with its speed switches: dynamic padding (DataCollatorWithPadding) and
    `group_by_length`; bf16 too where this machine runs it fast (see --bf16);
  - mlcls: mlcls's training loop with configs/reuters.yaml's recipe (length-grouped batches, dynamic
    padding, precision auto), stopped after STEPS steps as Ctrl-C stops it.
  - mlcls-glibc (only when named in --arms): the same, with glibc's malloc as it comes, where `mlcls train`
    sets it to keep freed activation memory for the next step (mlcls/training/host_malloc.py).

Samples/s are training samples over the training loop's time: Trainer's `train_runtime`, mlcls's
`train_seconds` from its checkpoint (both exclude model loading and tokenisation).

    python scripts/bench_train.py --steps 20 --max-length 128
    python scripts/bench_train.py --steps 8 --max-length 512
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import write_block  # scripts/ is on sys.path when a script runs

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def texts_and_labels(path: Path, n: int | None) -> tuple[list[str], list[list[str]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n] if line.strip()]
    texts = ["\n".join(part for part in (r.get("title"), r.get("text")) if part) for r in rows]
    return texts, [list(r["labels"]) for r in rows]


def hf_worker(args: argparse.Namespace, best: bool) -> dict:
    """Runs in its own process: the Trainer, configured the way run_classification.py configures it."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )
    from transformers.utils import logging

    from mlcls.api import resolve_encoder

    logging.set_verbosity_error()
    texts, labels = texts_and_labels(args.train, None)
    vocabulary = sorted({name for row in labels for name in row})
    index = {name: i for i, name in enumerate(vocabulary)}
    targets = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
    for row, names in enumerate(labels):
        targets[row, [index[n] for n in names]] = 1.0

    source = resolve_encoder(ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(vocabulary), problem_type="multi_label_classification", use_safetensors=True)
    padding = False if best else "max_length"
    dataset = Dataset.from_dict({"text": texts, "labels": targets.tolist()}).map(
        lambda b: tokenizer(b["text"], padding=padding, max_length=args.max_length, truncation=True),
        batched=True, remove_columns=["text"])
    collator = DataCollatorWithPadding(tokenizer) if best else default_data_collator
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=5e-5, train_sampling_strategy="group_by_length" if best else "random",
        bf16=best and args.bf16, use_cpu=not torch.cuda.is_available(),
        report_to=[], save_strategy="no", logging_strategy="no", dataloader_num_workers=0, seed=42,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator)
    metrics = trainer.train().metrics
    return {"seconds": metrics["train_runtime"], "samples": args.steps * args.batch_size}


def mlcls_worker(args: argparse.Namespace, glibc_as_it_comes: bool = False) -> dict:
    """Runs in its own process: `mlcls train` on configs/reuters.yaml's recipe over the whole training file, each
    article truncated at max_length as the Trainer arms read it (the config itself reads whole articles in chunks),
    stopped after STEPS optimizer steps the way Ctrl-C stops it (a StopSignal); the checkpoint it saves
    holds the loop's own time and sample count."""
    from rich.console import Console

    from mlcls.api import StopAfterStep, TrainingInterrupted, keep_freed_memory, load_config, train

    if not glibc_as_it_comes:
        keep_freed_memory()  # what `mlcls train` does before training

    folder = Path(tempfile.mkdtemp())
    val_file = folder / "validation.jsonl"  # not used before the stop; keeps the training pool = the whole file
    val_file.write_text("".join(args.train.read_text().splitlines(keepends=True)[:64]))
    config = load_config("configs/reuters.yaml", [
        f"data.train={args.train}", f"data.validation={val_file}", "train.epochs=1",
        f"train.batch_size={args.batch_size}", f"model.max_length={args.max_length}",
        "model.long_text=truncate",  # one window per article, as the Trainer reads it (the config reads chunks)
        f"train.cache_dir={folder / 'cache'}", f"output.dir={folder / 'runs'}", "output.name=bench",
    ])
    try:
        train(config, Console(stderr=True, quiet=True), stop=StopAfterStep(args.steps))
        raise SystemExit("mlcls trained a whole epoch: --steps exceeds one epoch")
    except TrainingInterrupted:
        pass
    state = json.loads((folder / "runs" / ".bench.incomplete" / "checkpoint" / "state.json").read_text())
    return {"seconds": state["train_seconds"], "samples": state["samples_seen"]}


def run_arm(arm: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", arm, "--steps", str(args.steps), "--batch-size",
               str(args.batch_size), "--max-length", str(args.max_length), "--train", str(args.train)]
    if args.bf16:
        command.append("--bf16")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def markdown(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    rate = {arm: statistics.median(r["samples"] / r["seconds"] for r in runs) for arm, runs in results.items()}
    lines = [
        f"Training speed, {args.train} ({sum(1 for line in args.train.open() if line.strip()):,} articles to draw "
        f"from), bundled MiniLM, "
        f"max length {args.max_length}, batch {args.batch_size}, {args.steps} optimizer steps, "
        f"{platform.processor() or platform.machine()}, median of {args.repeats} interleaved run(s):",
        "",
        "| contender | samples/s | seconds per run | mlcls ratio |",
        "|---|---:|---:|---:|",
    ]
    for arm, runs in results.items():
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        ratio = "" if arm == "mlcls" else f"**{rate['mlcls'] / rate[arm]:.2f}x**"
        lines.append(f"| {arm} | {rate[arm]:.2f} | {seconds} | {ratio} |")
    lines += ["", f"Command: `python scripts/bench_train.py {' '.join(sys.argv[1:])}`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=Path("data/reuters/train.jsonl"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="hf-best uses bf16 (only where the hardware runs it fast)")
    parser.add_argument("--arms", nargs="+", default=["hf-default", "hf-best", "mlcls"])
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--block", help="the docs block the table goes to (default: bench_train:lenMAX_LENGTH)")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--worker", choices=["hf-default", "hf-best", "mlcls", "mlcls-glibc"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker in ("mlcls", "mlcls-glibc"):
        print(json.dumps(mlcls_worker(args, glibc_as_it_comes=args.worker == "mlcls-glibc")))
        return
    if args.worker:
        print(json.dumps(hf_worker(args, best=args.worker == "hf-best")))
        return
    if not args.train.is_file():
        sys.exit(f"{args.train}: not found; convert Reuters first: mlcls data reuters --out data/reuters")

    results: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for _ in range(args.repeats):
        for arm in args.arms:
            result = run_arm(arm, args)
            results[arm].append(result)
            print(f"{arm}: {result['samples'] / result['seconds']:.2f} samples/s ({result['seconds']:.1f} s)",
                  flush=True)
    table = markdown(results, args)
    print(table)
    if not args.no_record:
        write_block(args.docs, args.block or f"bench_train:len{args.max_length}", table)


if __name__ == "__main__":
    main()
