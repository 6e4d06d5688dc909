"""Peak RSS and time of mlcls's predict path over many lines, under one allocator / padding setting.

The question it answers: how to keep `mlcls predict`'s memory flat over long inputs at the least cost in
speed (docs/benchmarks.md, prediction section; mlcls/data/batching.py). One setting per process, since allocator
state is per process:
  tight      batches padded to their longest text, glibc as it comes (its mmap threshold climbs with the
             largest block freed);
  pinned     tight, with glibc's mmap threshold pinned at 1 MiB (what predict did before it padded to 16);
  bucketN    glibc as it comes, each inference batch padded to a multiple of N tokens, so that activation
             sizes repeat and freed heap blocks fit the next batch (bucket16 is what predict does).
The scores are mlcls's own (`mlcls.api.score_records`, chunks of 2,048); nothing is written. VmHWM is read
after each chunk.

    python scripts/bench_predict_allocator.py bucket16 --run runs/reuters-1epoch-v2 --lines 20480 --int8
    python scripts/bench_predict_allocator.py pinned --run runs/reuters-1epoch-v2 --lines 20480 --int8
    python scripts/bench_predict_allocator.py tight --layers 1 --lines 36000 --int8    # a fast probe
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import itertools
import time
from pathlib import Path


def peak_rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def pin_mmap_threshold(threshold: int = 1 << 20) -> bool:
    """Blocks of `threshold` bytes and more are mmapped (and unmapped when freed), always. True if set."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(-3, threshold) == 1  # -3: M_MMAP_THRESHOLD in malloc.h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setting", help="tight, pinned or bucketN (e.g. bucket16)")
    parser.add_argument("--run", default="runs/reuters-1epoch-v2")
    parser.add_argument("--data", type=Path, default=Path("data/reuters/test.jsonl"))
    parser.add_argument("--lines", type=int, default=20480)
    parser.add_argument("--layers", type=int, help="keep only the first N encoder layers (a faster probe)")
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args()

    # Not in mlcls.api yet (asked for): it replaces setting mlcls.data.batching.INFERENCE_PAD_MULTIPLE.
    from mlcls.api import set_inference_pad_multiple

    if args.setting in ("tight", "pinned"):
        set_inference_pad_multiple(1)  # scoring reads it at call time
        if args.setting == "pinned" and not pin_mmap_threshold():
            raise SystemExit("mallopt is not available here (not glibc)")
    elif args.setting.startswith("bucket") and (step := args.setting[len("bucket"):]).isdigit() and int(step) > 0:
        set_inference_pad_multiple(int(step))
    else:
        raise SystemExit(f"unknown setting {args.setting!r}")

    # after the allocator setting, as before: the model and its libraries are loaded under it
    from mlcls.api import FieldSpec, load_run, read_records, score_records, transformer_layers

    run = load_run(args.run, int8=args.int8)
    if args.layers:
        del transformer_layers(run.model.encoder)[args.layers:]
    records = list(read_records(args.data, FieldSpec.from_config(run.config.data), require_labels=False))
    stream = (record for _, record in zip(range(args.lines), itertools.cycle(records), strict=False))
    started, done, marks = time.perf_counter(), 0, []
    for chunk, _ in score_records(run, stream, 64):
        done += len(chunk)
        marks.append(f"{done}: {peak_rss_mib()} MiB")
    print(f"{args.setting}: {args.lines} lines in {time.perf_counter() - started:.1f} s; peak RSS after each chunk: "
          + ", ".join(marks))


if __name__ == "__main__":
    main()
