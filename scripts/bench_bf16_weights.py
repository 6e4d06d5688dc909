"""One forward pass under bf16 autocast: linear weights kept in fp32 (autocast casts them at every pass) against
linear weights stored in bf16 once (what `load_run` does for bf16 scoring), side by side in one process.

The two copies of the run's model take turns at each (rows, width) shape, --repeats passes each after a warm-up
pass, medians in ms; then both score the same random token ids and their logits are compared (the cast is
expected to change no bit). Written to docs/benchmarks.md (block bench_bf16_weights).

    python scripts/bench_bf16_weights.py --run runs/cpu-chunks128-seed1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs

HEADING = "## bf16 scoring: linear weights cast once, not at every pass (`scripts/bench_bf16_weights.py`)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--shapes", nargs="+", default=["1x16", "1x128", "4x128", "16x64", "16x128"],
                        help="ROWSxWIDTH of each pass timed")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from mlcls.api import load_run

    cast = load_run(args.run, precision="bf16")  # linear weights in bf16 (load_run's cast)
    if cast.precision != "bf16":
        raise SystemExit(f"{args.run}: loaded in {cast.precision}, not bf16")
    per_pass = copy.deepcopy(cast.model)
    for module in per_pass.modules():  # back to fp32: autocast casts them at every pass, as before the cast
        if isinstance(module, torch.nn.Linear):
            module.to(torch.float32)
    models = {"fp32 weights, cast by autocast": per_pass, "bf16 weights, cast at load": cast.model.eval()}
    generator = torch.Generator().manual_seed(0)

    def logits(model, ids):
        with torch.inference_mode(), torch.autocast(cast.device.type, dtype=torch.bfloat16):
            return model(ids, torch.ones_like(ids)).float()

    rows_out = []
    for shape in args.shapes:
        rows, width = (int(part) for part in shape.split("x"))
        ids = torch.randint(1000, cast.tokenizer.vocab_size, (rows, width), generator=generator).to(cast.device)
        times: dict[str, list[float]] = {name: [] for name in models}
        for repeat in range(args.repeats + 1):
            for name, model in models.items():  # alternating, so that drift hits both
                started = time.perf_counter()
                logits(model, ids)
                if repeat:  # the first pass of a shape pays oneDNN's kernel creation
                    times[name].append(1000 * (time.perf_counter() - started))
        medians = [statistics.median(times[name]) for name in models]
        same = bool(torch.equal(*(logits(model, ids) for model in models.values())))
        rows_out.append(f"| {rows} x {width} | {medians[0]:.2f} | {medians[1]:.2f} | {medians[0] / medians[1]:.2f}x "
                        f"| {'yes' if same else 'no'} |")
        print(rows_out[-1], flush=True)
    table = "\n".join([
        f"Machine: {machine()}. Run: `{args.run}` (precision bf16, {torch.get_num_threads()} threads). Command: "
        f"`python scripts/bench_bf16_weights.py --run {args.run}`. Medians of {args.repeats} passes each, the two "
        "models alternating.", "",
        "| pass (rows x tokens) | fp32 weights, cast by autocast, ms | bf16 weights, cast at load, ms | speed-up | "
        "logits bit-identical |", "|---|---|---|---|---|", *rows_out, ""])
    print(table)
    if not args.no_doc:
        write_block(args.doc, "bench_bf16_weights", table, HEADING)


if __name__ == "__main__":
    main()
