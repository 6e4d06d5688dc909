"""Padding: inference batches are rounded up to a multiple of 16 tokens and score exactly what tight ones do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlcls.data.batching
from mlcls.data.batching import pad_batch, rows_by_length, tokenize
from tests.conftest import TINY_RECORDS


def test_pad_batch_rounds_the_width_up_and_masks_the_extra():
    input_ids, attention_mask = pad_batch([[5, 6, 7], [8]], pad_id=0, multiple=4)
    assert input_ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert pad_batch([[1] * 8], pad_id=0, multiple=4)[0].shape == (1, 8)  # already a multiple: unchanged
    assert pad_batch([[1, 2, 3]], pad_id=0)[0].shape == (1, 3)  # default: the longest text


def test_scores_do_not_change_when_batches_are_padded_to_a_multiple(tiny_encoder, monkeypatch):
    from mlcls.model.classifier import MultiLabelClassifier, load_encoder

    encoder, tokenizer = load_encoder(str(tiny_encoder))
    torch.manual_seed(0)
    model = MultiLabelClassifier(encoder, 3).eval()
    ids = tokenize(tokenizer, [r["text"] for r in TINY_RECORDS], 32)
    assert len({len(i) for i in ids}) > 1  # texts of several lengths, so rounding adds padding

    def score():
        widths = []

        def compute(input_ids, attention_mask):
            widths.append(input_ids.shape[1])
            return torch.sigmoid(model(input_ids, attention_mask))

        return rows_by_length(model, compute, ids, 0, 4, "cpu", 3), widths

    monkeypatch.setattr(mlcls.data.batching, "INFERENCE_PAD_MULTIPLE", 1)
    tight, tight_widths = score()
    monkeypatch.setattr(mlcls.data.batching, "INFERENCE_PAD_MULTIPLE", 16)
    padded, padded_widths = score()
    assert all(w % 16 == 0 for w in padded_widths) and padded_widths != tight_widths
    np.testing.assert_allclose(padded, tight, rtol=0, atol=1e-6)
    assert not np.allclose(padded, 0.5)  # a real model's scores, not a constant


@pytest.mark.parametrize("multiple", [0, -2])
def test_pad_batch_needs_a_positive_multiple(multiple):
    with pytest.raises(ValueError, match="at least 1"):
        pad_batch([[1, 2]], pad_id=0, multiple=multiple)
