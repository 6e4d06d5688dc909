"""Training steps on a CPU: a batch's windows in one pass against two passes each padded to its own width
(mlcls/data/batching.py, training_passes), side by side in one process, on real Reuters training batches.

Two copies of the same classifier (the bundled MiniLM, mlcls's linear head, the CPU training attention and
dropout `mlcls train` sets) take turns, one optimizer step each (forward under bf16 autocast where the CPU has
native bf16, BCE, backward, AdamW), on the same batches: Reuters ApteMod-90's training articles read as the config
reads them (configs/reuters.yaml: chunks of 128 tokens; --set model.long_text=truncate for one window an article),
in the length-grouped batches of 32 articles `mlcls train` draws. The first --warmup batches are not timed; the
arm that goes first rotates. Split passes meet more matrix shapes, and oneDNN builds a kernel the first time it
meets one, inside the timed batches too: the speed-up measured is if anything low. The loss is taken per window
here (the product pools the windows first; that is a few small ops either way). Two passes where they save a
--savings share of the tokens; several shares, several arms (the first is one pass). Written to
docs/benchmarks.md (block bench_training_passes:<mode>).

    python scripts/bench_training_passes.py
    python scripts/bench_training_passes.py --set model.long_text=truncate
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from benchlib import machine, write_block  # scripts/ is on sys.path when a script runs

HEADING = "## Training passes split by width on the CPU (`scripts/bench_training_passes.py`)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/reuters.yaml"))
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, key=value")
    parser.add_argument("--savings", type=float, nargs="+", default=None,
                        help="arms splitting where a split saves this share of the tokens (default: mlcls's own)")
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from mlcls.api import (
        MIN_SPLIT_SAVING,
        FieldSpec,
        WindowSpec,
        article_windows,
        build_model,
        cpu_has_fast_bf16,
        keep_freed_memory,
        length_grouped_batches,
        load_config,
        pad_batch,
        read_records,
        resolve_encoder,
        training_passes,
        use_training_attention,
    )

    keep_freed_memory()  # what `mlcls train` does before training
    config = load_config(args.config, overrides=args.sets)
    spec = WindowSpec.from_config(config.model)
    texts = [r.text for r in read_records(config.data.train, FieldSpec.from_config(config.data))]  # as train reads
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(config.model.encoder))
    windows = article_windows(tokenizer, texts, spec)
    pad_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    base, _ = build_model(config.model, [f"label{i}" for i in range(90)])
    base.train()
    cpu = torch.device("cpu")
    # None: one pass; a share: two passes where they save that share of the tokens
    savings = [None, *(args.savings or [MIN_SPLIT_SAVING])]
    arms = {}
    for saving in savings:
        model = copy.deepcopy(base)
        use_training_attention(model, cpu)
        arms[saving] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5))
    bf16 = cpu_has_fast_bf16()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def passes_of(flat, saving: float | None):
        return [np.arange(len(flat))] if saving is None else training_passes([len(w) for w in flat], saving)

    def step(model, optimizer, flat, saving: float | None) -> float:
        started = time.perf_counter()
        passes = passes_of(flat, saving)
        with autocast:
            parts = [model(*pad_batch([flat[i] for i in rows], pad_id)) for rows in passes]
        logits = torch.cat(parts)[torch.from_numpy(np.argsort(np.concatenate(passes)))]
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), torch.zeros(logits.shape)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    lengths = [sum(len(w) for w in article) for article in windows]
    batches = length_grouped_batches(lengths, config.train.batch_size, np.random.default_rng(args.seed))
    seconds = dict.fromkeys(savings, 0.0)
    real, padded, split_batches = 0, dict.fromkeys(savings, 0), dict.fromkeys(savings, 0)
    for number, batch in enumerate(batches[: args.warmup + args.batches]):
        flat = [w for i in batch for w in windows[i]]
        turn = savings[number % len(savings):] + savings[: number % len(savings)]  # who goes first rotates
        for saving in turn:
            took = step(*arms[saving], flat, saving)
            if number >= args.warmup:
                seconds[saving] += took
        if number >= args.warmup:
            real += sum(len(w) for w in flat)
            for saving in savings:
                passes = passes_of(flat, saving)
                padded[saving] += sum(max(len(flat[i]) for i in rows) * len(rows) for rows in passes)
                split_batches[saving] += len(passes) == 2
    command = "python scripts/bench_training_passes.py" + "".join(f" --set {s}" for s in args.sets) + (
        f" --savings {' '.join(map(str, args.savings))}" if args.savings else "")
    table = "\n".join([
        f"Machine: {machine()}, {torch.get_num_threads()} threads; {'bf16 autocast' if bf16 else 'fp32'}. "
        f"{spec.describe()}; {args.batches} length-grouped batches of {config.train.batch_size} Reuters training "
        f"articles (after {args.warmup} untimed), each arm one optimizer step a batch, taking turns. "
        f"Command: `{command}`.", "",
        "| passes | batches in two passes | real share of the tokens computed | s for the batches | speed-up |",
        "|---|---|---|---|---|",
        *(f"| {'one' if saving is None else f'two where that saves {saving:.0%} of the tokens'}"
          f"{' (mlcls train)' if saving == MIN_SPLIT_SAVING else ''} | {split_batches[saving]} of {args.batches} | "
          f"{real / padded[saving]:.1%} | {seconds[saving]:.1f} | {seconds[None] / seconds[saving]:.2f}x |"
          for saving in savings), ""])
    print(table)
    if not args.no_doc:
        write_block(args.doc, f"bench_training_passes:{spec.mode}", table, HEADING)


if __name__ == "__main__":
    main()
