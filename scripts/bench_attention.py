"""Training steps on a CPU: the encoder's attention kernel (transformers' default, sdpa; eager; and mlcls's, eager
with dropout masks cut from 64-bit draws in every dropout of the model) crossed with its attention dropout (the
encoder's own 0.1 against 0: model.attention_dropout), side by side in one process.

Six copies of the same classifier (the bundled MiniLM unless --encoder, mlcls's linear head) take turns, one
optimizer step each (forward, BCE, backward, AdamW), on the same token ids: a pass of --rows windows of --width
tokens, a third of them padded from 3/4 of the width on (as the last window of a chunked article is). Medians of
--steps steps after --warmup. sdpa with dropout 0.1 is what a step of transformers' Trainer runs on this model; it
was mlcls's step too before model/attention.py; "mlcls" is what `mlcls train` runs on a CPU now
(model/attention.py and model/cpu_dropout.py). Written to docs/benchmarks.md (block bench_attention).

    python scripts/bench_attention.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs

HEADING = "## Attention in training on the CPU (`scripts/bench_attention.py`)"
ARMS = [("sdpa", 0.1), ("eager", 0.1), ("mlcls", 0.1), ("sdpa", 0.0), ("eager", 0.0), ("mlcls", 0.0)]
WHAT = {("sdpa", 0.1): " (transformers' default: the Trainer's step, and mlcls's before 2026-12-07)",
        ("eager", 0.1): " (transformers' eager: mlcls's step on 2026-12-07)",
        ("mlcls", 0.1): " (eager, masks from 64-bit draws: mlcls's step now)"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default=None, help="hub name or folder (default: the bundled MiniLM)")
    parser.add_argument("--rows", type=int, default=60, help="windows per step (32 chunked articles: ~60)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from mlcls.api import CPU_TRAINING_ATTENTION, build_model, load_config, use_training_attention

    config = load_config(None, overrides=[f"model.encoder={args.encoder}"] if args.encoder else [])
    encoder_name = config.model.encoder
    torch.manual_seed(0)
    base, _ = build_model(config.model, [f"label{i}" for i in range(90)])  # mlcls's linear head, dropout 0.1
    base.train()
    encoder = base.encoder
    cpu = torch.device("cpu")
    arms = {}
    for kernel, p in ARMS:
        model = copy.deepcopy(base)
        for name, module in model.named_modules():
            if name.endswith("attention.self"):  # BERT's attention-weight dropout (what the config key sets)
                module.dropout.p = p
        if kernel == "eager":
            model.encoder.set_attn_implementation("eager")
        elif kernel == "mlcls":
            assert use_training_attention(model, cpu) == CPU_TRAINING_ATTENTION
        arms[(kernel, p)] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5))

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, encoder.config.vocab_size, (args.rows, args.width), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, args.width * 3 // 4:] = 0
    targets = torch.zeros(args.rows, 90)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step(model, optimizer) -> float:
        started = time.perf_counter()
        with autocast:
            logits = model(ids, mask)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    times: dict[tuple[str, float], list[float]] = {arm: [] for arm in arms}
    for repeat in range(args.warmup + args.steps):
        for arm, (model, optimizer) in arms.items():  # alternating, so that drift hits every arm
            seconds = step(model, optimizer)
            if repeat >= args.warmup:
                times[arm].append(seconds)
    base_median = statistics.median(times[ARMS[0]])
    rows = []
    for kernel, p in ARMS:
        median = statistics.median(times[(kernel, p)])
        what = WHAT.get((kernel, p), "")
        rows.append(f"| {kernel}{what} | {p} | {median:.3f} | {base_median / median:.2f}x |")
        print(rows[-1], flush=True)
    command = "python scripts/bench_attention.py" + (f" --encoder {args.encoder}" if args.encoder else "")
    table = "\n".join([
        f"Machine: {machine()}, {torch.get_num_threads()} threads. Encoder `{encoder_name}`, {args.precision}; a step "
        f"of {args.rows} windows x {args.width} tokens (a third padded from {args.width * 3 // 4}); medians of "
        f"{args.steps} steps per arm, the arms alternating. Command: `{command}`.", "",
        "| attention kernel | attention dropout | s per step | speed-up |", "|---|---|---|---|", *rows, ""])
    print(table)
    if not args.no_doc:
        write_block(args.doc, "bench_attention", table, HEADING)


if __name__ == "__main__":
    main()
