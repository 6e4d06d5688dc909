"""How a CPU process's memory grows with the number of distinct forward-pass shapes it has scored.

`mlcls serve` scores calls of whatever size arrives, so its passes take every (rows, padded width) up to the
batch size and max length, where `mlcls predict` scores full passes of one row count. This script loads a run,
scores one full pass (as the server's warm-up does), then every (rows, width) shape in turn — rows 1 to the CPU
batch size, widths in steps of the inference padding multiple up to the run's max length — printing the
process's RSS after each width, then all the shapes once more (a plateau: nothing new is kept). Run it once as
is and once with ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 to see how much of the growth is oneDNN's cache of compiled
kernels (one per shape) and what the cache saves in time.

    python scripts/bench_shape_memory.py --run runs/NAME
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 python scripts/bench_shape_memory.py --run runs/NAME
"""

from __future__ import annotations

import argparse
import time


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    args = parser.parse_args(argv)

    import torch

    from mlcls.api import INFERENCE_PAD_MULTIPLE, inference_batch_size, load_run

    run = load_run(args.run)
    model = run.model.eval()
    rows_max = inference_batch_size(run.device, None)
    widths = range(INFERENCE_PAD_MULTIPLE, run.config.model.max_length + 1, INFERENCE_PAD_MULTIPLE)

    def forward(rows: int, width: int) -> None:
        model(torch.full((rows, width), 1000), torch.ones(rows, width, dtype=torch.long))

    bf16 = torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16")  # as predict
    with torch.inference_mode(), bf16:
        forward(rows_max, widths[-1])
        print(f"loaded, one pass of {rows_max} x {widths[-1]}: {rss_mib():.0f} MiB", flush=True)
        started = time.perf_counter()
        for width in widths:
            for rows in range(1, rows_max + 1):
                forward(rows, width)
            print(f"  + rows 1-{rows_max} at width {width}: {rss_mib():.0f} MiB", flush=True)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for width in widths:
            for rows in range(1, rows_max + 1):
                forward(rows, width)
        again = time.perf_counter() - started
    print(f"{len(widths) * rows_max} shapes: {first:.1f} s the first time, {again:.1f} s again; "
          f"{rss_mib():.0f} MiB after the second round")


if __name__ == "__main__":
    main()
