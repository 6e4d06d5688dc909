"""Padding: inference batches are rounded up to a multiple of 16 tokens and score exactly what tight ones do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlcls.data.batching
from mlcls.data.batching import bucket_rows, pad_batch, rows_by_length, tokenize
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


@pytest.mark.parametrize(("rows", "batch_size", "bucket"), [
    (1, 16, 1), (2, 16, 2), (3, 16, 4), (5, 16, 8), (9, 16, 16), (16, 16, 16),  # powers of two up to the batch
    (17, 24, 24), (13, 24, 16), (30, 24, 30),  # a batch size that is none: capped at it; a full pass as it is
])
def test_a_partial_pass_is_filled_up_to_a_power_of_two_rows(rows, batch_size, bucket):
    assert bucket_rows(rows, batch_size) == bucket


def test_the_rows_filling_a_pass_change_no_score(tiny_encoder):
    from mlcls.model.classifier import MultiLabelClassifier, load_encoder

    encoder, tokenizer = load_encoder(str(tiny_encoder))
    torch.manual_seed(0)
    model = MultiLabelClassifier(encoder, 3).eval()
    ids = tokenize(tokenizer, [r["text"] for r in TINY_RECORDS], 32)[:7]  # passes of 4: 4, then 3 filled to 4
    shapes = []

    def compute(input_ids, attention_mask):
        shapes.append(tuple(input_ids.shape))
        return torch.sigmoid(model(input_ids, attention_mask))

    batched = rows_by_length(model, compute, ids, 0, 4, "cpu", 3)
    alone = np.concatenate([rows_by_length(model, compute, [one], 0, 1, "cpu", 3) for one in ids])
    assert [rows for rows, _ in shapes[:2]] == [4, 4]
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6)


def test_scoring_runs_in_eval_mode_and_leaves_the_mode_as_it_found_it(tiny_encoder, monkeypatch):
    """A model in training (validation between epochs) is scored in eval mode and handed back training; a model in
    eval mode already (a loaded run: every served call) is not switched at all, since switching walks every
    submodule; one submodule left training is still switched off for the call."""
    from mlcls.model.classifier import MultiLabelClassifier, load_encoder

    encoder, tokenizer = load_encoder(str(tiny_encoder))
    model = MultiLabelClassifier(encoder, 3)
    ids = tokenize(tokenizer, [r["text"] for r in TINY_RECORDS], 32)[:5]
    seen = []

    def compute(input_ids, attention_mask):
        seen.append(any(module.training for module in model.modules()))
        return model(input_ids, attention_mask)

    switches = []
    real_train = type(model).train
    monkeypatch.setattr(type(model), "train", lambda self, mode=True: switches.append(mode) or real_train(self, mode))

    model.train()
    switches.clear()
    rows_by_length(model, compute, ids, 0, 4, "cpu", 3)
    assert not any(seen) and switches == [False, True] and model.training and model.encoder.training

    model.eval()
    switches.clear(), seen.clear()
    rows_by_length(model, compute, ids, 0, 4, "cpu", 3)
    assert not any(seen) and switches == [] and not model.training

    model.encoder.encoder.layer[0].train()  # one submodule left training under an eval-mode model
    switches.clear(), seen.clear()
    rows_by_length(model, compute, ids, 0, 4, "cpu", 3)
    assert not any(seen) and switches == [False, False]
    assert not any(module.training for module in model.modules())


def _padded(lengths, passes) -> int:
    return sum(max(lengths[i] for i in rows) * len(rows) for rows in passes if len(rows))


@pytest.mark.parametrize("lengths", [[128, 128, 40, 128, 30, 50, 128, 12], [128, 7, 128, 128, 128, 128, 9, 64]])
def test_a_batch_of_full_and_short_windows_takes_two_passes_that_pad_least(lengths):
    from mlcls.data.batching import MIN_SPLIT_SAVING, training_passes

    passes = training_passes(lengths)
    assert len(passes) == 2
    assert sorted(np.concatenate(passes).tolist()) == list(range(len(lengths)))  # every row once
    by_length = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    least = min(_padded(lengths, [by_length[:cut], by_length[cut:]]) for cut in range(1, len(lengths)))
    assert _padded(lengths, passes) == least  # no cut of the sorted rows pads fewer tokens
    assert least <= (1 - MIN_SPLIT_SAVING) * max(lengths) * len(lengths)


@pytest.mark.parametrize("lengths", [[128, 120, 126, 127], [30], [], [64, 64]])
def test_a_batch_that_pads_little_stays_one_pass_in_its_own_order(lengths):
    from mlcls.data.batching import training_passes

    passes = training_passes(lengths)
    assert len(passes) == 1 and passes[0].tolist() == list(range(len(lengths)))


def test_a_split_is_taken_only_where_it_saves_the_share_asked():
    from mlcls.data.batching import MIN_SPLIT_SAVING, training_passes

    lengths = [100] * 15 + [50]  # in two passes: 1,550 tokens instead of 1,600, 3.1% fewer
    assert len(training_passes(lengths, 0.03)) == 2
    assert len(training_passes(lengths, 0.0315)) == 1
    assert len(training_passes(lengths, 0.1)) == 1
    assert len(training_passes(lengths)) == (2 if MIN_SPLIT_SAVING <= 0.03125 else 1)
