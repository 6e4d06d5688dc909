"""`mlcls predict` against `transformers.pipeline` on the same model and inputs, side by side in one run.

Inputs: the Reuters test articles (title + body, as mlcls builds them), repeated to --lines lines.
Contenders, each a fresh process timed by /usr/bin/time (wall seconds and peak RSS, model loading included):
  - mlcls predict INPUT -o OUT --model RUN (batch 64, texts sorted by length within chunks);
  - the same with --int8 (the encoder's linear layers in dynamic int8);
  - transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid") over the run's
    encoder with a sequence-classification head of the same size (weights of that head don't matter for
    speed), truncation to the run's max_length, at the pipeline's default batch size (1) and at 32.
--memory-lines runs only mlcls predict at each size and reports its peak RSS.

    python scripts/bench_predict.py --run runs/reuters-1epoch-v2 --lines 10000
    python scripts/bench_predict.py --run runs/reuters-1epoch-v2 --memory-lines 10000 100000 --no-speed
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks_doc import write_block  # scripts/ is on sys.path when a script runs


def make_input(source: Path, lines: int, folder: Path) -> Path:
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    path = folder / f"predict-input-{lines}.jsonl"
    with open(path, "w") as out:
        for i, row in zip(range(lines), itertools.cycle(rows), strict=False):
            out.write(json.dumps({"id": str(i), "title": row.get("title", ""), "text": row.get("text", "")}) + "\n")
    return path


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a command, via GNU time."""
    with tempfile.NamedTemporaryFile(suffix=".time") as report:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        peak_kib = int(Path(report.name).read_text().strip().splitlines()[-1])
    return wall, peak_kib / 1024


def pipeline_worker(run: Path, input_path: Path, batch_size: int) -> None:
    """Runs in its own process: the peer, the way a user would call it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    from transformers.utils import logging

    from mlcls.config import Config, read_yaml_mapping
    from mlcls.data import FieldSpec, read_records

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    config = Config.from_dict(read_yaml_mapping(run / "config.yaml"))
    labels = json.loads((run / "labels.json").read_text())["labels"]
    texts = [r.text for r in read_records(input_path, FieldSpec.from_config(config.data), require_labels=False)]
    model = AutoModelForSequenceClassification.from_pretrained(
        run / "encoder", num_labels=len(labels), problem_type="multi_label_classification")
    tokenizer = AutoTokenizer.from_pretrained(run / "encoder")
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                        function_to_apply="sigmoid", device="cpu")
    kwargs = {"truncation": True, "max_length": config.model.max_length}
    if batch_size > 1:
        kwargs["batch_size"] = batch_size
    out = classify(texts, **kwargs)
    assert len(out) == len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/reuters/test.jsonl"))
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--memory-lines", type=int, nargs="*", default=[])
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--memory-int8", action="store_true", help="memory rows with --int8 (a faster run)")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--worker", choices=("pipeline",), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        pipeline_worker(args.run, args.input, args.batch_size)
        return

    mlcls = [sys.executable, "-m", "mlcls", "predict"]
    lines = [f"Machine: {platform.machine()} CPU, 2 cores. Model: `{args.run}` (bundled MiniLM fine-tuned, "
             "max length from its config). Wall time includes process start and model loading. "
             f"Command: `python scripts/bench_predict.py --run {args.run} --lines {args.lines}"
             + (f" --memory-lines {' '.join(map(str, args.memory_lines))}" if args.memory_lines else "")
             + (" --memory-int8" if args.memory_int8 else "") + (" --no-speed" if args.no_speed else "") + "`.", ""]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if not args.no_speed:
            source = make_input(args.data, args.lines, folder)
            results = {}
            for name, command in (
                ("mlcls predict (batch 64)", [*mlcls, str(source), "--model", str(args.run), "-o",
                                              str(folder / "out.jsonl")]),
                ("mlcls predict --int8 (batch 64)", [*mlcls, str(source), "--model", str(args.run), "--int8",
                                                     "-o", str(folder / "out-int8.jsonl")]),
                ("pipeline, batch 32", [sys.executable, __file__, "--worker", "pipeline", "--run", str(args.run),
                                        "--input", str(source), "--batch-size", "32"]),
                ("pipeline, default batch (1)", [sys.executable, __file__, "--worker", "pipeline", "--run",
                                                 str(args.run), "--input", str(source), "--batch-size", "1"]),
            ):
                wall, peak = timed(command)
                results[name] = (wall, peak)
                print(f"{name}: {wall:.1f} s, {args.lines / wall:.1f} docs/s, peak RSS {peak:.0f} MiB", flush=True)
            ours = results["mlcls predict (batch 64)"][0]
            int8 = results["mlcls predict --int8 (batch 64)"][0]
            lines += [f"Speed, {args.lines} lines:", "",
                      "| contender | wall s | docs/s | mlcls speed-up over it | mlcls --int8 speed-up | peak RSS MiB |",
                      "|---|---|---|---|---|---|"]
            for name, (wall, peak) in results.items():
                lines.append(f"| {name} | {wall:.1f} | {args.lines / wall:.1f} | {wall / ours:.2f}x | "
                             f"{wall / int8:.2f}x | {peak:.0f} |")
            lines.append("")
        memory: list[str] = []
        if args.memory_lines:
            memory += [lines[0], "", f"Peak RSS of `mlcls predict{' --int8' if args.memory_int8 else ''}`:", "",
                      "| input lines | wall s | peak RSS MiB |", "|---|---|---|"]
            for n in args.memory_lines:
                source = make_input(args.data, n, folder)
                wall, peak = timed([*mlcls, str(source), "--model", str(args.run), "-o", str(folder / "out.jsonl"),
                                    *(["--int8"] if args.memory_int8 else [])])
                print(f"{n} lines: {wall:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
                memory.append(f"| {n} | {wall:.1f} | {peak:.0f} |")
    # Two blocks, so that a memory-only run leaves the speed table alone and the other way round.
    for name, block in (("bench_predict", lines), ("bench_predict:memory", memory)):
        if len(block) > 2:
            print("\n".join(block))
            write_block(args.doc, name, "\n".join(block), "## Prediction speed and memory (`scripts/bench_predict.py`)")


if __name__ == "__main__":
    main()
