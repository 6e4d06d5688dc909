"""The unpadded forward (mlcls/model/unpadded.py) gives the model's own pooled vectors and scores, and is taken
only inside `enabled()`, in eval mode, without autograd and on a pass that has padding."""

from __future__ import annotations

import pytest
import torch

from mlcls.data.batching import pad_batch
from mlcls.model import unpadded
from mlcls.model.classifier import MultiLabelClassifier, load_encoder


@pytest.fixture(scope="module")
def classifier(tiny_encoder):
    encoder, _ = load_encoder(str(tiny_encoder))
    torch.manual_seed(0)
    return MultiLabelClassifier(encoder, num_labels=5).eval()


def ragged_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    lengths = [48, 3, 9, 1, 12, 30, 5, 19]  # 127 real tokens of 8 x 48: 128 rows computed (one fill), not 384
    texts = [[2, *torch.randint(5, vocab, (n - 2,), generator=generator).tolist(), 3] if n > 1 else [2]
             for n in lengths]
    return pad_batch(texts, 0, 16)


def test_unpadded_forward_gives_the_models_own_scores(classifier):
    input_ids, attention_mask = ragged_batch(classifier.encoder.config.vocab_size)
    with torch.inference_mode():
        own = classifier(input_ids, attention_mask)
        own_hidden = classifier.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        with unpadded.enabled():
            assert unpadded.applies(classifier.encoder, attention_mask)
            fast = classifier(input_ids, attention_mask)
            fast_hidden = unpadded.last_hidden_state(classifier.encoder, input_ids, attention_mask)
    real = attention_mask.bool()
    torch.testing.assert_close(fast, own, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_hidden[real], own_hidden[real], atol=1e-5, rtol=1e-5)
    assert not fast_hidden[~real].any()  # padded positions: zero, never read by the pooling


def test_unpadded_forward_under_bf16_autocast_is_close(classifier):
    input_ids, attention_mask = ragged_batch(classifier.encoder.config.vocab_size)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        own = classifier(input_ids, attention_mask).float()
        with unpadded.enabled():
            fast = classifier(input_ids, attention_mask).float()
    torch.testing.assert_close(fast, own, atol=0.05, rtol=0.05)


def test_unpadded_forward_with_the_layers_load_run_scores_with(tiny_encoder):
    """load_run casts the linear weights to bf16 (bf16 scoring) or quantises them (--int8); the forward calls the
    model's own modules, so it runs either. int8 quantises activations per call, over other rows here than in the
    padded pass, hence the looser bound."""
    import copy

    from mlcls.inference.loading import quantized_int8
    from mlcls.precision import linear_weights_in_bf16

    encoder, _ = load_encoder(str(tiny_encoder))
    torch.manual_seed(0)
    base = MultiLabelClassifier(encoder, num_labels=5).eval()
    input_ids, attention_mask = ragged_batch(encoder.config.vocab_size)
    cast = copy.deepcopy(base)
    assert linear_weights_in_bf16(cast) > 0
    int8 = copy.deepcopy(base)
    int8.replace_encoder(quantized_int8(int8.encoder))
    for model, autocast, bound in ((cast, True, 0.05), (int8, False, 0.05)):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            own = model(input_ids, attention_mask).float()
            with unpadded.enabled():
                assert unpadded.applies(model.encoder, attention_mask)
                fast = model(input_ids, attention_mask).float()
        assert (fast - own).abs().max() < bound
        assert not torch.equal(fast, torch.zeros_like(fast))


def test_not_taken_for_other_encoders(classifier):
    input_ids, attention_mask = ragged_batch(classifier.encoder.config.vocab_size)

    class LooksLikeBert(torch.nn.Module):  # a remote-code model whose config says "bert"
        config = classifier.encoder.config
        training = False

    with torch.inference_mode(), unpadded.enabled():
        assert unpadded.applies(classifier.encoder, attention_mask)
        assert not unpadded.applies(LooksLikeBert(), attention_mask)


def test_taken_only_where_safe_and_useful(classifier):
    encoder = classifier.encoder
    input_ids, attention_mask = ragged_batch(encoder.config.vocab_size)
    with torch.inference_mode():
        assert not unpadded.applies(encoder, attention_mask)  # not inside enabled(): exports, training
        with unpadded.enabled():
            assert unpadded.applies(encoder, attention_mask)
            assert not unpadded.applies(encoder, torch.ones_like(attention_mask))  # nothing to skip
            nearly_full = torch.ones_like(attention_mask)
            nearly_full[1:, -1] = 0  # 98% real: the gathers would cost what the padding saves
            assert not unpadded.applies(encoder, nearly_full)
            assert unpadded.packed_rows(attention_mask) == 128  # the real tokens, filled to a multiple of 8 rows x 16
            short = attention_mask.clone()
            short[0, 40:] = 0  # 119 real: still filled up to 128, a shape the padded forward has (8 x 16)
            assert unpadded.packed_rows(short) == 128
    with unpadded.enabled():
        assert not unpadded.applies(encoder, attention_mask)  # autograd on: training keeps the model's forward
        encoder.train()
        try:
            with torch.inference_mode():
                assert not unpadded.applies(encoder, attention_mask)
        finally:
            encoder.eval()


def test_the_scoring_step_takes_it_and_can_be_told_not_to(classifier, monkeypatch):
    from mlcls.inference.scoring import score_windows

    generator = torch.Generator().manual_seed(2)
    vocab = classifier.encoder.config.vocab_size
    windows = [[[2, *torch.randint(5, vocab, (n,), generator=generator).tolist(), 3] for n in article]
               for article in ([44], [2, 1], [1], [30, 20, 5], [3])]  # a first pass of 4 x 48 with 107 real
    calls = []
    original = unpadded.last_hidden_state
    monkeypatch.setattr(unpadded, "last_hidden_state", lambda *a: calls.append(1) or original(*a))
    try:
        unpadded.set_unpadded_scoring(False)
        own = score_windows(classifier, windows, 0, 4, torch.device("cpu"), "fp32")
        assert not calls
        unpadded.set_unpadded_scoring(True)
        fast = score_windows(classifier, windows, 0, 4, torch.device("cpu"), "fp32")
    finally:
        unpadded.set_unpadded_scoring(True)
    assert calls  # the passes with padding went through it
    assert abs(fast - own).max() < 1e-5
