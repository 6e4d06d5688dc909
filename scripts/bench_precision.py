"""Is `precision: auto` the faster choice for training on this CPU? fp32 against bf16, a few steps each.

Each precision trains configs/reuters.yaml's recipe on Reuters for --steps optimizer steps (stopped as Ctrl-C
stops a run, from its checkpoint's train_seconds: model loading and tokenising excluded), in a fresh process,
alternating fp32 / bf16 --repeats times; medians of samples/s. Then says what auto picks here.

    python scripts/bench_precision.py --steps 15 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs


def worker(precision: str, steps: int, train_file: Path, folder: Path) -> None:
    from rich.console import Console

    from mlcls.api import StopAfterStep, TrainingInterrupted, find_checkpoint, load_checkpoint, load_config, train

    config = load_config("configs/reuters.yaml", [f"data.train={train_file}", f"train.precision={precision}",
                                                  f"output.dir={folder}", "model.lexical=none"],
                         {"output.name": precision})
    with contextlib.suppress(TrainingInterrupted):  # the stop after `steps` steps
        train(config, Console(stderr=True, quiet=True), stop=StopAfterStep(steps))
    state = load_checkpoint(find_checkpoint(folder / f".{precision}.incomplete")).state
    print(json.dumps({"precision": precision, "samples_per_second": state["samples_seen"] / state["train_seconds"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=Path("data/reuters/train.jsonl"))
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--worker", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.train, args.folder)
        return
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for precision in rates:
            with tempfile.TemporaryDirectory() as folder:
                out = subprocess.run([sys.executable, __file__, "--worker", precision, "--steps", str(args.steps),
                                      "--train", str(args.train), "--folder", folder],
                                     capture_output=True, text=True, check=True).stdout
                rates[precision].append(json.loads(out.strip().splitlines()[-1])["samples_per_second"])
                print(precision, f"{rates[precision][-1]:.1f} samples/s", flush=True)
    from mlcls.api import cpu_has_fast_bf16

    fp32, bf16 = (statistics.median(rates[p]) for p in ("fp32", "bf16"))
    auto = "bf16" if cpu_has_fast_bf16() else "fp32"
    faster = "bf16" if bf16 > fp32 else "fp32"
    table = "\n".join([
        f"Machine: {machine()}; configs/reuters.yaml's recipe (batch 32, max length 128), {args.steps} optimizer "
        f"steps per run, medians of {args.repeats} runs each, alternating.", "",
        "| precision | training samples/s |", "|---|---|",
        f"| fp32 | {fp32:.1f} |", f"| bf16 | {bf16:.1f} |", "",
        f"bf16 / fp32: {bf16 / fp32:.2f}x. `precision: auto` picks **{auto}** here; the faster is {faster}"
        f"{' (auto agrees)' if auto == faster else ' (AUTO DISAGREES)'}. "
        f"Command: `python scripts/bench_precision.py {' '.join(sys.argv[1:])}`."])
    print(table)
    if not args.no_record:
        write_block(args.doc, "bench_precision", table,
                    "## Training precision on the CPU (`scripts/bench_precision.py`)")


if __name__ == "__main__":
    main()
