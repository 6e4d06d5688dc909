"""Batched inference shared by training (validation), `eval`, `predict` and `serve`.

One scoring step, `score_chunk`: a list of records is tokenized into windows, the windows sorted by length into
forward passes of `inference_batch_size` (little padding), scored, pooled per article, blended with the lexical
model where the run has one, and handed back in input order. `predict` and `eval` run it over their input a
chunk of CHUNK_RECORDS at a time (`score_records`: memory stays flat however long the input is); `serve` runs it
on each dynamic batch of requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch

from mlcls.data.batching import rows_by_length
from mlcls.data.records import Record
from mlcls.data.windows import WindowSpec, article_windows, flatten, pool_logits
from mlcls.errors import MlclsError
from mlcls.inference.loading import LoadedRun
from mlcls.model import unpadded

CHUNK_RECORDS = 2048


def score_windows(model, windows: Sequence[Sequence[Sequence[int]]], pad_id: int, batch_size: int, device,
                  precision: str | None = None, pooling: str = "max_logit") -> np.ndarray:
    """Sigmoid scores (articles, labels) in the order of `windows` (each article's encoder inputs: one, or
    several with model.long_text chunks, pooled by `pooling`), in `precision` (see _inference_autocast). The
    windows of all articles are scored together, length-sorted, as single texts are."""
    flat, counts = flatten(windows)

    def logits(input_ids, attention_mask):
        with _inference_autocast(device, precision), unpadded.enabled():  # real tokens only where it pays
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


def _at_least_one(name: str, value: int) -> int:
    """`value`, refused in one line unless it is an integer of at least 1 (a caller of the API can pass anything)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MlclsError(f"{name} must be an integer of at least 1, got {value!r}")
    return value


def inference_batch_size(device, asked: int | None) -> int:
    """`asked` (--batch-size), or the default for `device`. The CLI refuses a size below 1; so does this, for
    the API (-1 left every score at 0.5: no batch filled the zeroed result)."""
    if asked is not None:
        return _at_least_one("batch_size", asked)
    return GPU_BATCH_SIZE if torch.device(device).type == "cuda" else CPU_BATCH_SIZE


def score_chunk(run: LoadedRun, records: Sequence[Record], batch_size: int | None = None) -> np.ndarray:
    """Probabilities (records, labels) of `records`, in their order: the one scoring step of predict, eval and
    serve. `batch_size` None: the default for run.device. Counts the windows scored on `run.windows` (what the
    summaries of long-text modes report)."""
    texts = [record.text for record in records]
    if not texts:
        return np.zeros((0, len(run.labels)), dtype=np.float32)
    spec = WindowSpec.from_config(run.config.model)
    windows = article_windows(run.tokenizer, texts, spec)
    run.windows.add(windows)
    scores = score_windows(run.model, windows, run.tokenizer.pad_token_id or 0,
                           inference_batch_size(run.device, batch_size), run.device, run.precision, spec.pooling)
    if run.lexical is not None:  # model.lexical: the blend the run's rule was tuned on
        scores = run.lexical.blend(texts, scores)
    return scores


def score_records(
    run: LoadedRun, records: Iterable[Record], batch_size: int | None, chunk_records: int = CHUNK_RECORDS
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Yield (records, scores) chunk by chunk (`chunk_records` at a time), in input order (score_chunk)."""
    _at_least_one("chunk_records", chunk_records)  # 0 scored none
    iterator = iter(records)
    while chunk := list(islice(iterator, chunk_records)):
        yield chunk, score_chunk(run, chunk, batch_size)
