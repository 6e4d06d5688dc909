"""What a trial of `mlcls tune` costs beyond the same `mlcls train` (issue 28's goal: at most 5% more).

Both run as users run them, each in a fresh process, one after the other, `--repeats` pairs interleaved (train,
tune, tune, train, ...), medians reported:

  - train: `mlcls train -c BASE [--set ...] --name overhead-train-K`
  - tune:  `mlcls tune -c BASE [--set ...] --space ONE-POINT --trials 1 --study overhead-K`, whose space holds one
    value, the base's own learning rate: its one trial trains exactly BASE, plus everything a study adds (Optuna,
    the SQLite study, the base trial queued, a report after each epoch, best.yaml, importances, the table). Not
    measured: the pruner's check, which a base trial never makes (it runs to the end), nor any trial after its
    last epoch; the check is one query of the study (milliseconds) between epochs of minutes.

A 1-trial study is the worst case: later trials of a study share its set-up and read the data once for all.
Figures: the whole command's wall seconds (what a user waits for) and the training's own `wall_seconds`
(metrics.json). The two runs train one config with one seed, so their validation figures should agree; the
table shows both. A first, uncounted `mlcls train` fills the token cache that every run then reads (--no-warmup:
skip it when the cache is warm).

    python scripts/tune_overhead.py -c configs/reuters.yaml --set model.long_text=truncate --set train.epochs=1
    python scripts/tune_overhead.py --repeats 3 --no-record          # configs/default.yaml's demo data
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import machine, mlcls_command, write_block  # scripts/ is on sys.path when a script runs

from mlcls.api import load_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "## `mlcls tune`: a trial against the same `mlcls train` (`scripts/tune_overhead.py`)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default=None, help="base config (default: the built-in defaults)")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="key=value, as for mlcls train")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of (train, tune) runs")
    parser.add_argument("--runs", default=None, help="where the runs go (default: a temporary folder, removed)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the uncounted first training")
    parser.add_argument("--no-record", action="store_true", help="print the table only")
    return parser.parse_args(argv)


def base_args(args: argparse.Namespace, runs: Path) -> list[str]:
    config = ["-c", args.config] if args.config else []
    return [*config, *(item for pair in args.sets for item in ("--set", pair)), "--set", f"output.dir={runs}"]


def one_point_space(args: argparse.Namespace, folder: Path) -> Path:
    """A space whose one value is the base config's own learning rate: the trial trains the base as it is."""
    lr = load_config(args.config, args.sets).train.lr
    path = folder / "one-point.yaml"
    path.write_text(f"train.lr: {{choices: [{lr!r}]}}\n")
    return path


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def measure(args: argparse.Namespace, runs: Path, space: Path) -> dict[str, list[float]]:
    """Wall seconds and training seconds of each kind of run, and their validation figures."""
    found: dict[str, list[float]] = {key: [] for key in ("train", "tune", "train_run", "tune_run", "train_f1",
                                                         "tune_f1")}
    common = base_args(args, runs)
    if not args.no_warmup:
        timed(mlcls_command("train", *common, "--name", "overhead-warmup"))
        shutil.rmtree(runs / "overhead-warmup", ignore_errors=True)
    for k in range(args.repeats):
        order = ("train", "tune") if k % 2 == 0 else ("tune", "train")
        for kind in order:
            if kind == "train":
                found["train"].append(timed(mlcls_command("train", *common, "--name", f"overhead-train-{k}")))
                run = runs / f"overhead-train-{k}"
            else:
                found["tune"].append(timed(mlcls_command("tune", *common, "--space", str(space), "--trials", "1",
                                                         "--study", f"overhead-{k}")))
                run = runs / f"tune-overhead-{k}" / "trial-0000"
            metrics = metrics_of(run)
            found[f"{kind}_run"].append(metrics["wall_seconds"])
            found[f"{kind}_f1"].append(metrics["validation"]["micro_f1"])
            # a Reuters run is ~90 MB: keep the disk flat (and a rerun into --runs from resuming an old study)
            shutil.rmtree(run if kind == "train" else run.parent, ignore_errors=True)
    return found


def table(found: dict[str, list[float]], args: argparse.Namespace) -> str:
    median = {key: statistics.median(values) for key, values in found.items()}
    options = ([f"-c {args.config}"] if args.config else []) + [f"--set {s}" for s in args.sets]
    command = "python scripts/tune_overhead.py " + " ".join([*options, f"--repeats {args.repeats}"])
    return "\n".join([
        f"`{command}` on {machine()}; medians of {args.repeats} runs of each, interleaved.",
        "",
        "| | `mlcls train` | `mlcls tune`, 1 trial | tune / train |",
        "|---|---:|---:|---:|",
        f"| command, wall s | {median['train']:.1f} | {median['tune']:.1f} | {median['tune'] / median['train']:.3f} |",
        f"| training (metrics.json wall_seconds) | {median['train_run']:.1f} | {median['tune_run']:.1f} | "
        f"{median['tune_run'] / median['train_run']:.3f} |",
        f"| validation micro-F1 | {median['train_f1']:.4f} | {median['tune_f1']:.4f} | |",
        "",
        f"Overhead of a trial: {100 * (median['tune'] / median['train'] - 1):+.1f}% of the command's wall time "
        "(goal: at most +5%).",
    ])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tune-overhead-") as scratch:
        runs = Path(args.runs) if args.runs else Path(scratch) / "runs"
        found = measure(args, runs, one_point_space(args, Path(scratch)))
    text = table(found, args)
    print(text)
    if not args.no_record:
        write_block(DOC, "tune-overhead", text, HEADING)


if __name__ == "__main__":
    main()
