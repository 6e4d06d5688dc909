"""A whole `mlcls train -c CONFIG`, with and without the malloc setting `mlcls train` makes, side by side.

`scripts/bench_train.py --arms mlcls-glibc mlcls` times 20 steps of the training loop. This runs the real
command end to end (tokenising, every epoch, validation, tuning the rule, the lexical model, writing the run) in
two arms, one after the other, alternating over --repeats:

  - kept:  `mlcls train` as users run it: glibc's malloc set to keep freed activation memory for the next step
           (mlcls/training/host_malloc.py);
  - glibc: the same command with GLIBC_TUNABLES set to the empty string, which changes nothing in glibc but
           is a user's own malloc setting, so `mlcls train` leaves glibc as it comes.

Per run it reports the training loop's seconds (`train_seconds` in the run's metrics.json), the whole command's
wall time, its user and system CPU seconds, minor page faults and peak RSS (the child's rusage), and whether
the run's figures are the same as the other arm's (training on the CPU is deterministic: the allocator must not
change a result).

    python scripts/bench_train_malloc.py --config configs/reuters.yaml --seed 1
    python scripts/bench_train_malloc.py --config configs/default.yaml --repeats 2 --no-record   # a quick probe
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import machine, mlcls_command, write_block  # scripts/ is on sys.path when a script runs

ARMS = {"kept": {}, "glibc": {"GLIBC_TUNABLES": ""}}


def run_arm(arm: str, args: argparse.Namespace, out: Path) -> dict:
    """One `mlcls train` in a child process under `arm`'s environment; its times, memory and figures."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    env.update(ARMS[arm])
    command = mlcls_command("train", "-c", args.config, "--seed", str(args.seed), "--out", str(out.parent),
                            "--name", out.name,
                            *[f"--set={s}" for s in args.set])
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{arm}: mlcls train failed (exit {os.waitstatus_to_exitcode(status)})")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "arm": arm, "train_s": metrics["train_seconds"], "wall_s": wall, "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime, "minor_faults": usage.ru_minflt, "peak_rss_mib": usage.ru_maxrss / 1024,
        "figures": {"validation": metrics["validation"], "best_epoch": metrics["best_epoch"],
                    "lexical_weight": metrics.get("lexical_weight"),
                    "thresholds": json.loads((out / "thresholds.json").read_text())},
    }


def table(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {machine()}. Command: `python scripts/bench_train_malloc.py --config {args.config} --seed "
        f"{args.seed} --repeats {args.repeats}" + "".join(f" --set {s}" for s in args.set) + "`.",
        "",
        "| run | arm | training loop s | wall s | user CPU s | system CPU s | minor page faults | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(results, 1):
        lines.append(f"| {i} | {r['arm']} | {r['train_s']:.0f} | {r['wall_s']:.0f} | {r['user_s']:.0f} | "
                     f"{r['sys_s']:.0f} | {r['minor_faults']:,} | {r['peak_rss_mib']:.0f} |")
    kept = [r for r in results if r["arm"] == "kept"]
    glibc = [r for r in results if r["arm"] == "glibc"]
    same = all(r["figures"] == results[0]["figures"] for r in results)
    ratio = statistics.median(r["train_s"] for r in glibc) / statistics.median(r["train_s"] for r in kept)
    wall = statistics.median(r["wall_s"] for r in glibc) / statistics.median(r["wall_s"] for r in kept)
    lines += ["", f"Speed-up of the kept setting (medians, glibc / kept): training loop {ratio:.2f}x, whole command "
              f"{wall:.2f}x. The runs' figures (validation F1 per epoch, the kept epoch, the blend weight, every "
              f"threshold) are {'the same in every run' if same else 'NOT the same across runs'}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/reuters.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="a config override, key=value (repeatable)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the two arms (which goes first alternates)")
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--block", default="bench_train_malloc")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="mlcls-malloc-") as tmp:
        for round_ in range(args.repeats):
            for arm in ("kept", "glibc") if round_ % 2 == 0 else ("glibc", "kept"):
                result = run_arm(arm, args, Path(tmp) / f"{arm}-{round_}")
                print(json.dumps({k: v for k, v in result.items() if k != "figures"}), flush=True)
                results.append(result)
    text = table(results, args)
    print(text)
    if not args.no_record:
        write_block(args.docs, args.block, text, heading="## Training engine (`scripts/bench_train.py`)")


if __name__ == "__main__":
    main()
