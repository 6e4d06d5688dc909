"""Batched inference shared by training (validation), `eval`, `predict` and `serve`.

Input is consumed in chunks: each chunk is tokenized, sorted by length into batches (little padding),
scored, and handed back in input order, so memory stays flat however long the input is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch

from mlcls.data.batching import rows_by_length
from mlcls.data.records import Record
from mlcls.data.windows import WindowSpec, article_windows, flatten, pool_logits
from mlcls.inference.loading import LoadedRun

CHUNK_RECORDS = 2048


def score_windows(model, windows: Sequence[Sequence[Sequence[int]]], pad_id: int, batch_size: int, device,
                  precision: str | None = None, pooling: str = "max_logit") -> np.ndarray:
    """Sigmoid scores (articles, labels) in the order of `windows` (each article's encoder inputs: one, or
    several with model.long_text chunks, pooled by `pooling`), in `precision` (see _inference_autocast). The
    windows of all articles are scored together, length-sorted, as single texts are."""
    flat, counts = flatten(windows)

    def logits(input_ids, attention_mask):
        with _inference_autocast(device, precision):
            return model(input_ids, attention_mask).float()

    rows = rows_by_length(model, logits, flat, pad_id, batch_size, device, model.num_labels)
    return torch.sigmoid(pool_logits(torch.from_numpy(rows), counts, pooling)).numpy()


def _inference_autocast(device, precision: str | None = None):
    """bf16 autocast when `precision` is bf16 (on a GPU or a CPU), none otherwise (fp32; int8: the quantised
    layers run in int8 and the rest in fp32). None (training's validation, a LoadedRun built by hand): bf16 on
    GPUs that have it, fp32 on CPU, because CPUs without AVX512-BF16 run bf16 matmuls many times slower than
    fp32 (measured: ~20x on this project's 2-core machines). `mlcls predict` / `eval` / `serve` resolve
    --precision auto in loading.choose_inference_precision."""
    if precision is None:
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


# Records per forward pass when the user names none. On a CPU small batches win: the attention maps of 64
# articles x 128 tokens outgrow the caches (bundled MiniLM, bf16, 2-core EPYC, length-sorted Reuters articles:
# 191 articles/s at 16 against 165 at 64, medians of 3 alternating). A GPU wants the larger batch.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 64


def inference_batch_size(device, asked: int | None) -> int:
    """`asked` (--batch-size), or the default for `device`."""
    if asked is not None:
        return asked
    return GPU_BATCH_SIZE if torch.device(device).type == "cuda" else CPU_BATCH_SIZE


def score_records(
    run: LoadedRun, records: Iterable[Record], batch_size: int | None, chunk_records: int = CHUNK_RECORDS
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Yield (records, scores) chunk by chunk, in input order. `batch_size` None: the default for run.device.
    Counts the windows scored on `run.windows` (what the summaries of long-text modes report)."""
    batch_size = inference_batch_size(run.device, batch_size)
    iterator = iter(records)
    pad_id = run.tokenizer.pad_token_id or 0
    spec = WindowSpec.from_config(run.config.model)
    while chunk := list(islice(iterator, chunk_records)):
        windows = article_windows(run.tokenizer, [r.text for r in chunk], spec)
        run.windows.add(windows)
        scores = score_windows(run.model, windows, pad_id, batch_size, run.device, run.precision, spec.pooling)
        if run.lexical is not None:  # model.lexical: the blend the run's rule was tuned on
            scores = run.lexical.blend([r.text for r in chunk], scores)
        yield chunk, scores
