"""What one forward pass costs, by rows and padded width, and whether splitting a call's passes by length pays.

`mlcls predict`, `eval` and `serve` score windows sorted by length in passes of at most the default batch size
(mlcls.data.batching.inference_batches: fixed cuts). Where a group's lengths are mixed (the windows of the few
articles a server call holds: full 128-token windows and short tails), one pass pads every window to the
longest; cutting the sorted windows where the width drops costs another call but fewer pad tokens. Whether that
pays depends on what a call costs beside its tokens. This script
  1. times the run's model (its precision, its device) on random token ids at each (rows, width), medians of
     --repeats, and fits  seconds = call + per_token * rows * width  by least squares: a call's cost in tokens;
  2. with --data, draws --calls random calls of K articles of that file (K in --articles), windows them as the
     run does, and compares fixed cuts with the cheapest cuts under that cost (dynamic programming over the
     sorted windows): padded tokens per article, passes per call, and the modelled cost ratio.

    python scripts/bench_batch_cost.py --run runs/NAME --data data/reuters/test.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 96, 128])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", help="JSONL articles: compare fixed and cheapest cuts on random calls of them")
    parser.add_argument("--articles", type=int, nargs="+", default=[8, 16], help="articles per simulated call")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)

    import torch

    from mlcls.api import load_run

    run = load_run(args.run)
    model = run.model.eval()
    vocab = run.tokenizer.vocab_size
    rng = np.random.default_rng(0)
    points = []
    with torch.inference_mode():
        for rows in args.rows:
            for width in args.widths:
                ids = torch.from_numpy(rng.integers(1000, vocab, size=(rows, width)))
                mask = torch.ones_like(ids)
                times = []
                for repeat in range(args.repeats + 1):
                    start = time.perf_counter()
                    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
                        model(ids.to(run.device), mask.to(run.device))
                    if repeat:  # the first pass of a shape pays oneDNN's kernel creation
                        times.append(time.perf_counter() - start)
                seconds = statistics.median(times)
                points.append((rows, width, seconds))
                print(f"rows {rows:3d} width {width:4d}: {1000 * seconds:7.2f} ms "
                      f"({1e6 * seconds / (rows * width):6.1f} us per token)", flush=True)
    tokens = np.array([rows * width for rows, width, _ in points], dtype=float)
    seconds = np.array([s for _, _, s in points])
    design = np.stack([np.ones_like(tokens), tokens], axis=1)
    (call, per_token), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    print(f"device {run.device}, precision {run.precision}: a call costs {1000 * call:.2f} ms, a token "
          f"{1e6 * per_token:.1f} us: a call is worth {call / per_token:.0f} tokens")
    if args.data:
        compare_cuts(run, args.data, args.articles, args.calls, call / per_token)


def padded(width: int) -> int:
    from mlcls.api import INFERENCE_PAD_MULTIPLE

    return -(-width // INFERENCE_PAD_MULTIPLE) * INFERENCE_PAD_MULTIPLE


def fixed_cuts(lengths: list[int], size: int) -> list[tuple[int, int]]:
    """(rows, padded width) of each pass as inference_batches cuts the sorted windows."""
    ordered = sorted(lengths, reverse=True)
    return [(len(ordered[i:i + size]), padded(ordered[i])) for i in range(0, len(ordered), size)]


def cheapest_cuts(lengths: list[int], size: int, call_tokens: float) -> list[tuple[int, int]]:
    """The passes (at most `size` rows each) over the sorted windows that minimise calls * call_tokens + padded
    tokens."""
    ordered = sorted(lengths, reverse=True)
    best, cut = [0.0] + [float("inf")] * len(ordered), [0] * (len(ordered) + 1)
    for end in range(1, len(ordered) + 1):
        for start in range(max(0, end - size), end):
            cost = best[start] + call_tokens + (end - start) * padded(ordered[start])
            if cost < best[end]:
                best[end], cut[end] = cost, start
    passes, end = [], len(ordered)
    while end:
        passes.append((end - cut[end], padded(ordered[cut[end]])))
        end = cut[end]
    return passes[::-1]


def compare_cuts(run, data: str, articles: list[int], calls: int, call_tokens: float) -> None:
    from mlcls.api import FieldSpec, WindowSpec, article_windows, inference_batch_size, read_records

    texts = [r.text for r in read_records(data, FieldSpec.from_config(run.config.data), require_labels=False)]
    windows = [[len(w) for w in article] for article in
               article_windows(run.tokenizer, texts, WindowSpec.from_config(run.config.model))]
    size = inference_batch_size(run.device, None)
    rng = np.random.default_rng(0)
    for k in articles:
        totals = {"fixed": [0, 0, 0.0], "cheapest": [0, 0, 0.0]}
        for _ in range(calls):
            lengths = [n for i in rng.choice(len(windows), k, replace=False) for n in windows[i]]
            for name, passes in (("fixed", fixed_cuts(lengths, size)),
                                 ("cheapest", cheapest_cuts(lengths, size, call_tokens))):
                tokens = sum(rows * width for rows, width in passes)
                totals[name][0] += tokens
                totals[name][1] += len(passes)
                totals[name][2] += tokens + call_tokens * len(passes)
        fixed, cheapest = totals["fixed"], totals["cheapest"]
        print(f"calls of {k} articles: fixed cuts {fixed[0] / calls / k:.1f} padded tokens per article, "
              f"{fixed[1] / calls:.2f} passes; cheapest cuts {cheapest[0] / calls / k:.1f}, "
              f"{cheapest[1] / calls:.2f} passes; modelled cost {cheapest[2] / fixed[2]:.3f}x")


if __name__ == "__main__":
    main()
