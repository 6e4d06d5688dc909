"""The one scoring step that `predict`, `eval` and `serve` share (scoring.score_chunk): an article's windows sorted
by length into forward passes of the default batch size, padded to INFERENCE_PAD_MULTIPLE, pooled per article
and answered in input order; `score_records` is that step over chunks of the input. On the tiny run in fp32,
read as chunks of 8 tokens so that articles have one to four windows.

    pytest -q tests/inference/test_scoring.py
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from mlcls.data import batching
from mlcls.data.records import Record
from mlcls.data.windows import WindowSpec, article_windows
from mlcls.inference import scoring
from tests.conftest import TINY_RECORDS

WORDS = sorted({w for r in TINY_RECORDS for w in re.findall(r"[a-z]+", r["text"])})


def mixed_records(n: int, seed: int = 3) -> list[Record]:
    rng = random.Random(seed)
    return [Record(id=f"m{i}", text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 24))), labels=None,
                   line=i + 1) for i in range(n)]


@pytest.fixture(scope="module")
def chunked_run(trained):
    """The tiny run, read as chunks of 8 tokens (2 shared, at most 4): several windows per article."""
    from mlcls.inference.loading import load_run

    folder, _, _ = trained
    run = load_run(folder / "runs" / "tiny", precision="fp32")
    model = run.config.model
    model.long_text, model.max_length, model.chunk_overlap, model.max_chunks = "chunks", 8, 2, 4
    model.chunk_pooling = "max_logit"
    return run


class Recorder:
    """A run's model, with each forward pass's shape and its rows' real lengths written down."""

    def __init__(self, model):
        self.model, self.passes = model, []

    def __getattr__(self, name):  # num_labels, training, eval(), train(): the model's own
        return getattr(self.model, name)

    def __call__(self, input_ids, attention_mask):
        self.passes.append((tuple(input_ids.shape), attention_mask.sum(dim=1).tolist()))
        return self.model(input_ids, attention_mask)


def test_a_chunk_is_scored_in_length_sorted_passes_of_the_default_size_and_answered_in_order(chunked_run,
                                                                                          monkeypatch):
    records = mixed_records(40)
    windows = article_windows(chunked_run.tokenizer, [r.text for r in records],
                              WindowSpec.from_config(chunked_run.config.model))
    assert max(len(w) for w in windows) > 1 and min(len(w) for w in windows) == 1
    alone = np.concatenate([scoring.score_chunk(chunked_run, [record]) for record in records])
    recorder = Recorder(chunked_run.model)
    monkeypatch.setattr(chunked_run, "model", recorder)
    scores = scoring.score_chunk(chunked_run, records)

    size = scoring.inference_batch_size(chunked_run.device, None)  # 16 on a CPU, 64 on a GPU: predict's
    rows = [n for (n, _), _ in recorder.passes]
    total = sum(len(w) for w in windows)
    assert total % size and rows[:-1] == [size] * (len(rows) - 1)  # full passes, then a partial one
    assert rows[-1] == batching.bucket_rows(total % size, size)  # filled up to a power of two rows
    lengths = [length for _, real in recorder.passes for length in real]
    assert lengths[:total] == sorted(lengths[:total], reverse=True)  # every window once, longest first
    assert set(lengths[total:]) <= {1}  # then rows of one token that fill the pass
    multiple = batching.INFERENCE_PAD_MULTIPLE
    for (_, width), real in recorder.passes:  # padded to the pass's longest, rounded up to the multiple
        assert width % multiple == 0 and width - multiple < max(real) <= width
    np.testing.assert_allclose(scores, alone, atol=1e-6)  # each article's own score, in input order


def test_score_records_is_the_same_step_chunk_by_chunk(chunked_run, monkeypatch):
    records = mixed_records(16, seed=5)
    whole = scoring.score_chunk(chunked_run, records)
    calls: list[int] = []
    real = scoring.score_chunk

    def counted(run, chunk, *args, **kwargs):
        calls.append(len(chunk))
        return real(run, chunk, *args, **kwargs)

    monkeypatch.setattr(scoring, "score_chunk", counted)
    parts = list(scoring.score_records(chunked_run, iter(records), None, chunk_records=7))
    assert calls == [7, 7, 2]
    assert [r.id for chunk, _ in parts for r in chunk] == [r.id for r in records]
    np.testing.assert_allclose(np.concatenate([s for _, s in parts]), whole, atol=1e-6)


def test_the_windows_scored_are_counted_and_an_empty_chunk_is_no_rows(chunked_run):
    before = chunked_run.windows.windows, chunked_run.windows.articles
    records = mixed_records(5, seed=9)
    windows = article_windows(chunked_run.tokenizer, [r.text for r in records],
                              WindowSpec.from_config(chunked_run.config.model))
    scoring.score_chunk(chunked_run, records)
    assert chunked_run.windows.windows - before[0] == sum(len(w) for w in windows)
    assert chunked_run.windows.articles - before[1] == 5
    empty = scoring.score_chunk(chunked_run, [])
    assert empty.shape == (0, len(chunked_run.labels)) and chunked_run.windows.articles - before[1] == 5
