"""`mlcls predict` against `transformers.pipeline` on the same model and inputs, side by side in one run.

Inputs: the Reuters test articles (title + body, as mlcls builds them), repeated to --lines lines.
Contenders, each a fresh process (wall seconds and peak RSS by os.wait4, model loading included), on the GPU
when there is one (mlcls predict takes it by itself; the pipeline gets device='cuda'), else on the CPU:
  - mlcls predict INPUT -o OUT --model RUN (its default batch: 16 on a CPU, 64 on a GPU; texts sorted by length
    within chunks), on the CPU with
    --precision fp32 (on a GPU its auto: bf16 where the GPU has it);
  - on a CPU with native bf16 (AVX512-BF16, AMX), the same with --precision bf16 (what auto picks there);
  - the same with --int8 (the encoder's linear layers in dynamic int8; CPU only);
  - transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid") over the run's
    encoder with a sequence-classification head of the same size (weights of that head don't matter for
    speed), truncation to the run's max_length, at the pipeline's default batch size (1) and at 32 (on a GPU
    also at 32 in bf16, the precision mlcls predict uses there).
  - on the CPU, a floor: only the encoder's matrix products (its Linear layers, torch's fp32 routines), on the
    real tokens of each batch (mlcls predict's default size) packed together (no padding, no attention, no
    activations), after reading and tokenizing as mlcls does. An fp32 implementation that multiplies with
    torch's routines in batches like these cannot beat it, so it caps the speed-up over the pipeline on this
    machine.
A GPU run writes its own blocks (bench_predict:cuda) beside the CPU ones.
--memory-lines runs only mlcls predict at each size and reports its peak RSS (fp32 on the CPU; --memory-bf16,
--memory-int8: in that precision).

    python scripts/bench_predict.py --run runs/reuters-1epoch-v2 --lines 10000
    python scripts/bench_predict.py --run runs/reuters-1epoch-v2 --memory-lines 10000 100000 --no-speed
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

# Environment variables that cap the instructions torch's kernels use, to measure a CPU without AVX-512 / bf16 on
# one that has them: aten's own kernels, oneDNN (bf16, fp32 convolutions and matmuls), MKL (fp32 GEMM).
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def make_input(source: Path, lines: int, folder: Path) -> Path:
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    path = folder / f"predict-input-{lines}.jsonl"
    with open(path, "w") as out:
        for i, row in zip(range(lines), itertools.cycle(rows), strict=False):
            out.write(json.dumps({"id": str(i), "title": row.get("title", ""), "text": row.get("text", "")}) + "\n")
    return path


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a command; os.wait4 reports that child's own peak (no GNU time needed)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def pipeline_worker(run: Path, input_path: Path, batch_size: int, device: str, dtype: str) -> None:
    """Runs in its own process: the peer, the way a user would call it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    from transformers.utils import logging

    from mlcls.api import FieldSpec, load_config, read_records

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    config = load_config(run / "config.yaml")  # the run's config alone: load_run would load the model too
    labels = json.loads((run / "labels.json").read_text())["labels"]
    texts = [r.text for r in read_records(input_path, FieldSpec.from_config(config.data), require_labels=False)]
    model = AutoModelForSequenceClassification.from_pretrained(
        run / "encoder", num_labels=len(labels), problem_type="multi_label_classification",
        dtype=getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(run / "encoder")
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                        function_to_apply="sigmoid", device=device)
    kwargs = {"truncation": True, "max_length": config.model.max_length}
    if batch_size > 1:
        kwargs["batch_size"] = batch_size
    out = classify(texts, **kwargs)
    assert len(out) == len(texts)


def matrix_floor_worker(run: Path, input_path: Path) -> None:
    """Runs in its own process: read, tokenize and batch as mlcls predict does, then only the Linear layers."""
    import torch

    from mlcls.api import (
        CHUNK_RECORDS,
        FieldSpec,
        inference_batch_size,
        inference_batches,
        load_run,
        read_records,
        tokenize,
        transformer_layers,
    )

    loaded = load_run(run, device="cpu", precision="fp32")  # fp32 weights: the floor calls its layers as they are
    batch_size = inference_batch_size(loaded.device, None)  # mlcls predict's default; the floor batches the same way
    linears = [m for layer in transformer_layers(loaded.model.encoder) for m in layer.modules()
               if isinstance(m, torch.nn.Linear)]
    records = iter(read_records(input_path, FieldSpec.from_config(loaded.config.data), require_labels=False))
    # The same random rows for every batch (no chaining: magnitudes stay put, no denormals to slow it down).
    most_rows = batch_size * loaded.config.model.max_length
    inputs = {width: torch.randn(most_rows, width) for width in {m.in_features for m in linears}}
    with torch.inference_mode():
        while chunk := list(itertools.islice(records, CHUNK_RECORDS)):
            lengths = [len(ids) for ids in tokenize(loaded.tokenizer, [r.text for r in chunk],
                                                    loaded.config.model.max_length)]
            for batch in inference_batches(lengths, batch_size):
                rows = sum(lengths[i] for i in batch)
                for linear in linears:
                    linear(inputs[linear.in_features][:rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/reuters/test.jsonl"))
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--memory-lines", type=int, nargs="*", default=[])
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--memory-int8", action="store_true", help="memory rows with --int8 (a faster run)")
    parser.add_argument("--memory-bf16", action="store_true", help="memory rows with --precision bf16")
    parser.add_argument("--onnx", type=Path, nargs="*", default=[],
                        help="`mlcls export` folders of the run: each a row scored with ONNX Runtime")
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only the contenders whose name contains one of these words (e.g. bf16 onnx default)")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--block", default=None, help="name of the speed table's block (e.g. avx2 for a run under "
                        "an emulated CPU without AVX-512); default: by device and --onnx")
    parser.add_argument("--worker", choices=("pipeline", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=("cpu", "cuda"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "pipeline":
        pipeline_worker(args.run, args.input, args.batch_size, args.device, args.dtype)
        return
    if args.worker == "floor":
        matrix_floor_worker(args.run, args.input)
        return
    import torch

    from mlcls.api import cpu_has_fast_bf16, inference_batch_size

    # mlcls predict takes the GPU when there is one; the pipeline is put on the same device.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = f"batch {inference_batch_size(device, None)}"  # mlcls predict's default --batch-size there
    # the memory rows' precision: on the CPU fp32 unless asked (auto would follow the CPU); on a GPU its auto
    memory_flags = (["--int8"] if args.memory_int8 else ["--precision", "bf16"] if args.memory_bf16
                    else ["--precision", "fp32"] if device == "cpu" else [])
    memory_precision = "int8" if args.memory_int8 else "bf16" if args.memory_bf16 else "fp32"

    mlcls = [sys.executable, "-m", "mlcls", "predict"]
    limits = [f"{k}={os.environ[k]}" for k in ISA_LIMITS if os.environ.get(k)]
    emulated = (f" Emulating a CPU without AVX-512 (so without native bf16): {', '.join(limits)}; torch reports "
                f"capability {torch.backends.cpu.get_cpu_capability()}, native bf16 {cpu_has_fast_bf16()}. ONNX "
                "Runtime's kernels and fbgemm's int8 ones pick their instructions by themselves and are not "
                "limited by these." if limits else "")
    lines = [f"Machine: {machine()}.{emulated} Model: `{args.run}` (bundled MiniLM fine-tuned, max length from its "
             "config). "
             "Wall time includes process start and model loading. "
             f"Command: `{''.join(limit + ' ' for limit in limits)}python scripts/bench_predict.py --run {args.run}"
             + ("" if args.no_speed else f" --lines {args.lines}")
             + (f" --memory-lines {' '.join(map(str, args.memory_lines))}" if args.memory_lines else "")
             + (" --memory-int8" if args.memory_int8 else "") + (" --memory-bf16" if args.memory_bf16 else "")
             + (" --no-speed" if args.no_speed else "")
             + (f" --onnx {' '.join(map(str, args.onnx))}" if args.onnx else "")
             + (f" --only {' '.join(repr(w) if ' ' in w else w for w in args.only)}" if args.only else "")
             + (f" --block {args.block}" if args.block else "") + "`.", ""]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if not args.no_speed:
            source = make_input(args.data, args.lines, folder)
            results = {}
            pipeline = [sys.executable, __file__, "--worker", "pipeline", "--run", str(args.run), "--input",
                        str(source), "--device", device]
            fp32 = ["--precision", "fp32"] if device == "cpu" else []  # on the CPU the fp32 row stays fp32
            contenders = [(f"mlcls predict ({batch})", [*mlcls, str(source), "--model", str(args.run), *fp32, "-o",
                                                        str(folder / "out.jsonl")])]
            if device == "cpu" and cpu_has_fast_bf16():  # bf16 on a CPU without native bf16: ~20x slower, no row
                contenders.append((f"mlcls predict --precision bf16 ({batch})",
                                   [*mlcls, str(source), "--model", str(args.run), "--precision", "bf16", "-o",
                                    str(folder / "out-bf16.jsonl")]))
            if device == "cpu":  # --int8 is a CPU mode (dynamic quantization)
                contenders.append((f"mlcls predict --int8 ({batch})", [*mlcls, str(source), "--model", str(args.run),
                                                                       "--int8", "-o", str(folder / "out-int8.jsonl")]))
            for export in args.onnx:  # ONNX Runtime: fp32 or int8 as exported (bf16 does not apply)
                kind = json.loads((export / "export.json").read_text()).get("quantize") or "fp32"
                contenders.append((f"mlcls predict, ONNX Runtime {kind} export",
                                   [*mlcls, str(source), "--model", str(export), "-o", str(folder / "out-onnx.jsonl")]))
            contenders.append(("pipeline, batch 32", [*pipeline, "--batch-size", "32"]))
            if device == "cuda":  # mlcls predict runs in bf16 on such a GPU: the pipeline gets the same chance
                contenders.append(("pipeline, batch 32, bf16",
                                   [*pipeline, "--batch-size", "32", "--dtype", "bfloat16"]))
            contenders.append(("pipeline, default batch (1)", [*pipeline, "--batch-size", "1"]))
            if device == "cpu":
                contenders.append(("floor: matrix products only", [sys.executable, __file__, "--worker", "floor",
                                                                   "--run", str(args.run), "--input", str(source)]))
            if args.only:
                contenders = [(n, c) for n, c in contenders if any(word in n for word in args.only)]
            for name, command in contenders:
                wall, peak = timed(command)
                results[name] = (wall, peak)
                print(f"{name}: {wall:.1f} s, {args.lines / wall:.1f} docs/s, peak RSS {peak:.0f} MiB", flush=True)
            ours = results.get(f"mlcls predict ({batch})", (None,))[0]
            int8 = results.get(f"mlcls predict --int8 ({batch})", (None,))[0]
            bf16 = results.get(f"mlcls predict --precision bf16 ({batch})", (None,))[0]
            lines += [f"Speed, {args.lines} lines:", "",
                      "| contender | wall s | docs/s | mlcls speed-up over it | mlcls bf16 speed-up | "
                      "mlcls --int8 speed-up | peak RSS MiB |",
                      "|---|---|---|---|---|---|---|"]
            for name, (wall, peak) in results.items():
                lines.append(f"| {name} | {wall:.1f} | {args.lines / wall:.1f} | "
                             f"{f'{wall / ours:.2f}x' if ours else '-'} | "
                             f"{f'{wall / bf16:.2f}x' if bf16 else '-'} | "
                             f"{f'{wall / int8:.2f}x' if int8 else '-'} | {peak:.0f} |")
            lines.append("")
        memory: list[str] = []
        if args.memory_lines:
            memory += [lines[0], "", f"Peak RSS of `mlcls predict{''.join(' ' + flag for flag in memory_flags)}`:", "",
                      "| input lines | wall s | peak RSS MiB |", "|---|---|---|"]
            for n in args.memory_lines:
                source = make_input(args.data, n, folder)
                wall, peak = timed([*mlcls, str(source), "--model", str(args.run), "-o", str(folder / "out.jsonl"),
                                    *memory_flags])
                print(f"{n} lines: {wall:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
                memory.append(f"| {n} | {wall:.1f} | {peak:.0f} |")
    # Two blocks, so that a memory-only run leaves the speed table alone and the other way round.
    suffix = "" if device == "cpu" else f":{device}"  # a GPU run keeps its own blocks beside the CPU ones
    # one block per precision (the int8 one kept its first name, bench_predict:memory)
    memory_name = f"bench_predict:memory{'' if memory_precision == 'int8' else '-' + memory_precision}{suffix}"
    speed_name = f"bench_predict{':onnx' if args.onnx else ''}{suffix}"  # ONNX rows: their own block
    if args.block:
        speed_name = f"bench_predict:{args.block}"
    for name, block in ((speed_name, lines), (memory_name, memory)):
        if len(block) > 2:
            print("\n".join(block))
            write_block(args.doc, name, "\n".join(block), "## Prediction speed and memory (`scripts/bench_predict.py`)")


if __name__ == "__main__":
    main()
