"""`mlcls predict --engine ray` against local `mlcls predict` on the same articles, side by side in one run.

Input: the Reuters test articles (title + body, as mlcls builds them), repeated to --lines lines with unique ids,
split into --shards JSONL shards for Ray, and the same lines in one file for local predict.
Contenders, each a fresh process timed by the wall clock (process start, Ray's start, model loading included):
  - local: `mlcls predict ALL.jsonl -o OUT` with --local-threads torch threads (OMP_NUM_THREADS; default 2);
  - ray 2x1: `mlcls predict SHARDS --engine ray --workers 2 --threads-per-worker 1`;
  - ray 1x1: the same with one worker.
The issue's goals, as ratios of articles/s: ray 2x1 over local (>= 0.90: Ray's overhead is small) and ray 2x1
over ray 1x1 (>= 1.7: it scales). Memory: local predict's peak RSS (os.wait4) against each Ray worker's (the peak
RSS its process reports with every shard, in the job's _manifest.json; the largest shard's figure). The "busy"
rate is Ray's records over the longest time one worker spent in its shards (reading, scoring, writing): the
rate without Ray's and the workers' start.
--memory-lines N ...: local and ray 2x1 at each size (peak RSS flat from 10k to 100k articles?). With
--shard-lines, shards of that many lines (more shards for more lines) instead of --shards of them: then a worker's
peak after its first shard against after its last tells growth over the job from growth with the shard's size
(ru_maxrss only rises, so a worker's shards sorted by their peak are in the order it finished them).
--gpu: on a GPU machine, local predict on the GPU against one Ray worker with the GPU (--gpus-per-worker 1).

    python scripts/bench_ray_predict.py --run runs/cpu-chunks128-seed1 --lines 20000 --shards 8
    python scripts/bench_ray_predict.py --run runs/cpu-chunks128-seed1 --memory-lines 10000 100000 --no-speed
    python scripts/bench_ray_predict.py --run runs/cpu-chunks128-seed1 --memory-lines 100000 --shard-lines 1250 \
        --no-speed
    python scripts/bench_ray_predict.py --run RUN --lines 20000 --gpu
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs

HEADING = "## Tagging an archive on Ray Data (`scripts/bench_ray_predict.py`)"


def make_input(source: Path, lines: int, shards: int, folder: Path, per_shard: int | None = None) -> tuple[Path, Path]:
    """(one JSONL file of `lines` articles, a folder of `shards` JSONL shards holding the same lines in order: of
    `per_shard` lines each, the last one the rest, or of equal shares)."""
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    whole, parts = folder / f"all-{lines}.jsonl", folder / f"shards-{lines}"
    parts.mkdir()
    per_shard = per_shard or -(-lines // shards)
    handles = [open(parts / f"part-{k:03d}.jsonl", "w") for k in range(shards)]  # noqa: SIM115 (closed below)
    with open(whole, "w") as out:
        for i, row in zip(range(lines), itertools.cycle(rows), strict=False):
            line = json.dumps({"id": f"{row.get('id', 'a')}-{i}", "title": row.get("title", ""),
                               "text": row.get("text", "")}) + "\n"
            out.write(line)
            handles[i // per_shard].write(line)
    for handle in handles:
        handle.close()
    return whole, parts


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB of the process itself, by os.wait4)."""
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(command)}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def workers_of(out: Path) -> tuple[dict[str, float], float, int]:
    """From a job's manifest: each worker's peak RSS (MiB), the longest time one worker was busy, the records."""
    manifest = json.loads((out / "_manifest.json").read_text())
    busy: dict[str, float] = {}
    for shard in manifest["outputs"]:
        busy[shard["worker"]] = busy.get(shard["worker"], 0.0) + shard["seconds"]
    peaks = {worker: curve[-1] for worker, curve in peak_curves(manifest).items()}
    return peaks, max(busy.values()), manifest["records"]


def peak_curves(manifest: dict) -> dict[str, list[float]]:
    """Each worker's peak RSS after each of its shards, in the order it finished them (ru_maxrss never falls)."""
    curves: dict[str, list[float]] = {}
    for shard in manifest["outputs"]:
        curves.setdefault(shard["worker"], []).append(shard["peak_rss_mib"])
    return {worker: sorted(curve) for worker, curve in curves.items()}


def contenders(args: argparse.Namespace, whole: Path, parts: Path, folder: Path) -> list[tuple[str, list, dict]]:
    """(name, command, environment) of each contender."""
    mlcls = [sys.executable, "-m", "mlcls", "predict"]
    common = ["--model", str(args.run), *(["--precision", args.precision] if args.precision else [])]
    if args.gpu:
        return [("local predict, GPU", [*mlcls, str(whole), *common, "-o", str(folder / "local.jsonl")], {}),
                ("ray 1 worker x 1 GPU", [*mlcls, str(parts), *common, "--engine", "ray", "-o", str(folder / "ray-gpu"),
                                          "--workers", "1", "--gpus-per-worker", "1"], {})]
    threads = str(args.local_threads)
    rows = [(f"local predict, {threads} threads", [*mlcls, str(whole), *common, "-o", str(folder / "local.jsonl")],
             {"OMP_NUM_THREADS": threads})]
    for workers in (2, 1):
        rows.append((f"ray {workers} worker{'s' if workers > 1 else ''} x 1 thread",
                     [*mlcls, str(parts), *common, "--engine", "ray", "-o", str(folder / f"ray-{workers}x1"),
                      "--workers", str(workers), "--threads-per-worker", "1"], {}))
    return rows


def speed_table(args: argparse.Namespace, folder: Path) -> list[str]:
    whole, parts = make_input(args.data, args.lines, args.shards, folder)
    results = {}
    for name, command, env in contenders(args, whole, parts, folder):
        wall, peak = timed(command, env)
        out = Path(command[command.index("-o") + 1])
        workers = workers_of(out) if out.is_dir() else None
        results[name] = (wall, peak, workers)
        print(f"{name}: {wall:.1f} s, {args.lines / wall:.1f} articles/s, peak RSS {peak:.0f} MiB"
              + (f", workers' peak RSS {sorted(workers[0].values())} MiB" if workers else ""), flush=True)
    local, local_peak, _ = next(result for result in results.values() if result[2] is None)
    lines = [f"Speed, {args.lines} articles in {args.shards} shards:", "",
             "| contender | wall s | articles/s | x local | busy articles/s | peak RSS MiB (per worker) | "
             "worker RSS / local |", "|---|---|---|---|---|---|---|"]
    for name, (wall, peak, workers) in results.items():
        busy = f"{workers[2] / workers[1]:.1f}" if workers else "-"
        rss = " / ".join(f"{p:.0f}" for p in sorted(workers[0].values())) if workers else f"{peak:.0f}"
        ratio = " / ".join(f"{p / local_peak:.2f}" for p in sorted(workers[0].values())) if workers else "-"
        lines.append(f"| {name} | {wall:.1f} | {args.lines / wall:.1f} | {local / wall:.2f}x | {busy} | {rss} | "
                     f"{ratio} |")
    if not args.gpu:
        two, one = results["ray 2 workers x 1 thread"][0], results["ray 1 worker x 1 thread"][0]
        lines += ["", f"Ray 2x1 over local: {local / two:.2f} (goal >= 0.90); Ray 2x1 over Ray 1x1: {one / two:.2f} "
                  "(goal >= 1.7)."]
    return lines + [""]


def memory_table(args: argparse.Namespace, folder: Path) -> list[str]:
    ray = "1 worker x 1 GPU" if args.gpu else "2 workers x 1 thread"
    lines = [f"Peak RSS by input size (local predict's process; each Ray worker's, {ray}):", "",
             "| articles | shards | local wall s | local peak RSS MiB | ray wall s | ray workers' peak RSS MiB | "
             "each worker's peak after its first shard -> its middle one -> its last (shards) |",
             "|---|---|---|---|---|---|---|"]
    for n in args.memory_lines:
        sized = folder / f"memory-{n}"
        sized.mkdir()
        shards = -(-n // args.shard_lines) if args.shard_lines else args.shards
        whole, parts = make_input(args.data, n, shards, sized, args.shard_lines)
        commands = contenders(args, whole, parts, sized)
        local_wall, local_peak = timed(commands[0][1], commands[0][2])
        ray_wall, _ = timed(commands[1][1], commands[1][2])
        out = Path(commands[1][1][commands[1][1].index("-o") + 1])
        curves = peak_curves(json.loads((out / "_manifest.json").read_text()))
        ends = " / ".join(f"{curve[-1]:.0f}" for curve in sorted(curves.values(), key=lambda c: c[-1]))
        firsts = " / ".join(f"{curve[0]:.0f} -> {curve[len(curve) // 2]:.0f} -> {curve[-1]:.0f} ({len(curve)})"
                            for curve in sorted(curves.values(), key=lambda c: c[-1]))
        lines.append(f"| {n} | {shards} | {local_wall:.1f} | {local_peak:.0f} | {ray_wall:.1f} | {ends} | {firsts} |")
        print(lines[-1], flush=True)
    return lines + [""]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/reuters/test.jsonl"))
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--local-threads", type=int, default=2, help="torch threads of local predict")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="passed to every contender")
    parser.add_argument("--memory-lines", type=positive, nargs="*", default=[])
    parser.add_argument("--shard-lines", type=positive, help="memory runs: shards of this many lines, not --shards")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="local predict on the GPU against 1 Ray worker with it")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    command = (f"python scripts/bench_ray_predict.py --run {args.run}"
               + ("" if args.no_speed else f" --lines {args.lines} --shards {args.shards}")
               + (f" --precision {args.precision}" if args.precision else "") + (" --gpu" if args.gpu else "")
               + (f" --memory-lines {' '.join(map(str, args.memory_lines))}"
                  + (f" --shard-lines {args.shard_lines}" if args.shard_lines else f" --shards {args.shards}")
                  if args.memory_lines else "") + (" --no-speed" if args.no_speed else ""))
    head = [f"Machine: {machine()}. Model: `{args.run}`. Wall time includes process start, Ray's start and model "
            f"loading. Command: `{command}`.", ""]
    with tempfile.TemporaryDirectory() as folder:
        speed = [] if args.no_speed else speed_table(args, Path(folder))
        memory = memory_table(args, Path(folder)) if args.memory_lines else []
    suffix = ":gpu" if args.gpu else ""
    for name, block in ((f"bench_ray_predict{suffix}", speed), (f"bench_ray_predict:memory{suffix}", memory)):
        if block:
            print("\n".join(head + block))
            write_block(args.doc, name, "\n".join(head + block), HEADING)


if __name__ == "__main__":
    main()
