"""Batched inference shared by training (validation), `eval` and `predict`.

Input is consumed in chunks: each chunk is tokenized, sorted by length into batches (little padding),
scored, and handed back in input order, so memory stays flat however long the input is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import IO

import numpy as np
import torch

from mlcls.batching import inference_batches, pad_batch, tokenize
from mlcls.data import Record
from mlcls.rundir import LoadedRun
from mlcls.thresholds import DecisionRule

CHUNK_RECORDS = 2048


@torch.inference_mode()
def score_token_ids(model, token_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device) -> np.ndarray:
    """Sigmoid scores (records, labels) in the order of `token_ids`."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(token_ids), model.head.out_features), dtype=np.float32)
    lengths = [len(ids) for ids in token_ids]
    for batch in inference_batches(lengths, batch_size):
        input_ids, attention_mask = pad_batch([token_ids[i] for i in batch], pad_id)
        with _inference_autocast(device):
            logits = model(input_ids.to(device), attention_mask.to(device))
        out[batch] = torch.sigmoid(logits.float()).cpu().numpy()
    model.train(was_training)
    return out


def _inference_autocast(device):
    # bf16 on GPUs that have it; on CPU we stay in fp32, because CPUs without AVX512-BF16 run bf16
    # matmuls many times slower than fp32 (measured: ~20x on this project's 2-core machines).
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def score_records(
    run: LoadedRun, records: Iterable[Record], batch_size: int
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Yield (records, scores) chunk by chunk, in input order."""
    iterator = iter(records)
    pad_id = run.tokenizer.pad_token_id or 0
    while chunk := list(islice(iterator, CHUNK_RECORDS)):
        ids = tokenize(run.tokenizer, [r.text for r in chunk], run.config.model.max_length)
        yield chunk, score_token_ids(run.model, ids, pad_id, batch_size, run.device)


def prediction_line(record: Record, scores: np.ndarray, chosen: np.ndarray, labels: list[str]) -> str:
    """One JSONL output line: the id, the predicted labels (highest score first) and their scores."""
    picked = sorted(np.flatnonzero(chosen), key=lambda i: -scores[i])
    return json.dumps(
        {
            "id": record.id,
            "labels": [labels[i] for i in picked],
            "scores": {labels[i]: round(float(scores[i]), 4) for i in picked},
        },
        ensure_ascii=False,
    )


def write_predictions(
    run: LoadedRun, records: Iterable[Record], out: IO[str], batch_size: int, rule: DecisionRule | None = None
) -> int:
    """Write one line per record to `out` (decisions by `rule`, default the run's); return the number written."""
    rule = rule or run.thresholds
    written = 0
    for chunk, scores in score_records(run, records, batch_size):
        chosen = rule.apply(scores, run.labels.labels)
        for row, record in enumerate(chunk):
            out.write(prediction_line(record, scores[row], chosen[row], run.labels.labels) + "\n")
            written += 1
    return written
