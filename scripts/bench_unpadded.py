"""Scoring on real tokens only (mlcls/model/unpadded.py) against the model's own padded forward, in one process.

Two workloads of the scoring step that predict, eval and serve share (`score_chunk`: windows, length-sorted
passes, pooling, the lexical blend):
  - calls: --calls random calls of K articles each (K in --articles), what `mlcls serve` scores when K clients
    wait with one article each: few windows of mixed lengths, so the passes pad;
  - chunk: the first --chunk articles scored as one chunk, what `mlcls predict` does: windows sorted across the
    chunk, so its passes pad little.
Each arm runs the same workload, alternating over --repeats rounds (the first round after a warm-up of every
shape); medians reported, with the largest difference between the two arms' probabilities.

    python scripts/bench_unpadded.py --run runs/cpu-lexc100-seed1 --data data/reuters/test.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--articles", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--calls", type=int, default=120)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--block", default="bench_unpadded")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    from mlcls.api import FieldSpec, load_run, read_records, score_chunk, set_unpadded_scoring

    run = load_run(args.run)
    records = list(read_records(args.data, FieldSpec.from_config(run.config.data), require_labels=False))
    rng = np.random.default_rng(0)
    workloads = {f"calls of {k}": [[records[i] for i in rng.choice(len(records), k, replace=False)]
                                   for _ in range(args.calls)] for k in args.articles}
    workloads[f"chunk of {args.chunk}"] = [records[: args.chunk]]

    def score(arm: str, calls: list) -> tuple[float, np.ndarray]:
        set_unpadded_scoring(arm == "unpadded")
        start = time.perf_counter()
        probs = [score_chunk(run, call) for call in calls]
        return time.perf_counter() - start, np.concatenate(probs)

    for calls in workloads.values():  # warm-up: oneDNN creates its kernels at the first pass of a shape
        score("unpadded", calls[:20])
        score("own", calls[:20])
    seconds = {(name, arm): [] for name in workloads for arm in ("own", "unpadded")}
    differences = {}
    for round_ in range(args.repeats):
        for name, calls in workloads.items():
            results = {}
            for arm in ("own", "unpadded") if round_ % 2 == 0 else ("unpadded", "own"):
                elapsed, results[arm] = score(arm, calls)
                seconds[name, arm].append(elapsed)
            differences[name] = float(np.abs(results["own"] - results["unpadded"]).max())
            print(f"round {round_ + 1} {name}: own {seconds[name, 'own'][-1]:.2f} s, unpadded "
                  f"{seconds[name, 'unpadded'][-1]:.2f} s", flush=True)

    lines = [f"Machine: {machine()}; run `{args.run}` ({run.config.model.encoder}, {run.precision}, "
             f"{run.config.model.long_text} at {run.config.model.max_length} tokens). Command: `python "
             f"scripts/bench_unpadded.py --run {args.run} --data {args.data} --calls {args.calls} --chunk "
             f"{args.chunk} --repeats {args.repeats}` (medians of the rounds, arms alternating).", "",
             "| workload | articles | own forward, articles/s | real tokens only, articles/s | speed-up | "
             "largest probability difference |", "|---|---:|---:|---:|---:|---:|"]
    for name, calls in workloads.items():
        n = sum(len(call) for call in calls)
        own, fast = (statistics.median(seconds[name, arm]) for arm in ("own", "unpadded"))
        lines.append(f"| {name} | {n} | {n / own:.1f} | {n / fast:.1f} | {own / fast:.2f}x | "
                     f"{differences[name]:.1e} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        write_block(args.docs, args.block, text, heading="## Serving (`scripts/bench_serve.py`)")


if __name__ == "__main__":
    main()
