"""Long-text modes (model.long_text): the windows an article is read as, and pooling windows into the article."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from mlcls.data.windows import WindowSpec, article_windows, flatten, pool_logits

LONG = " ".join(["cocoa beans harvest"] * 6 + ["crude oil barrel refinery"] * 6)  # 42 words, all in the vocabulary


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


def _content(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_truncate_is_the_tokenizers_own_truncation(tokenizer):
    texts = [LONG, "cocoa", ""]
    windows = article_windows(tokenizer, texts, WindowSpec("truncate", 16))
    expected = tokenizer(texts, truncation=True, max_length=16)["input_ids"]
    assert windows == [[row] for row in expected]


def test_head_tail_keeps_the_start_and_the_end(tokenizer):
    content = _content(tokenizer, LONG)
    (window,), = article_windows(tokenizer, [LONG], WindowSpec("head_tail", 16, head_tokens=4))
    assert len(window) == 16 and window[0] == tokenizer.cls_token_id and window[-1] == tokenizer.sep_token_id
    assert window[1:-1] == content[:4] + content[-10:]  # 14 tokens of content: 4 from the head, 10 from the tail
    (short,), = article_windows(tokenizer, ["cocoa beans"], WindowSpec("head_tail", 16))
    assert short == tokenizer("cocoa beans")["input_ids"]  # a text that fits is read whole, as truncate reads it


def test_head_tail_default_head_is_a_quarter(tokenizer):
    content = _content(tokenizer, LONG)
    (window,), = article_windows(tokenizer, [LONG], WindowSpec("head_tail", 18))
    assert window[1:-1] == content[:4] + content[-12:]  # 16 content tokens: 16 // 4 from the head


def test_chunks_cover_the_text_with_overlap_up_to_max_chunks(tokenizer):
    content = _content(tokenizer, LONG)
    windows, = article_windows(tokenizer, [LONG], WindowSpec("chunks", 12, overlap=2, max_chunks=20))
    parts = [w[1:-1] for w in windows]
    assert all(len(w) <= 12 for w in windows) and all(w[0] == tokenizer.cls_token_id for w in windows)
    assert [len(p) for p in parts[:-1]] == [10] * (len(parts) - 1)
    assert parts[0] == content[:10] and parts[1][:2] == content[8:10]  # consecutive windows share 2 tokens
    assert parts[-1][-1] == content[-1]  # the whole text is read
    capped, = article_windows(tokenizer, [LONG], WindowSpec("chunks", 12, overlap=2, max_chunks=3))
    assert capped == windows[:3]
    (empty,), = article_windows(tokenizer, [""], WindowSpec("chunks", 12))
    assert empty == [tokenizer.cls_token_id, tokenizer.sep_token_id]


def test_flatten_keeps_articles_apart(tokenizer):
    windows = article_windows(tokenizer, [LONG, "cocoa"], WindowSpec("chunks", 12, overlap=2))
    flat, counts = flatten(windows)
    assert counts[1] == 1 and sum(counts) == len(flat) and counts[0] > 1


@pytest.mark.parametrize(("pooling", "expected"), [
    ("max_logit", [[1.0, 0.0], [3.0, -1.0]]),
    ("mean_logit", [[0.0, -1.0], [3.0, -1.0]]),
])
def test_pooling_of_logits(pooling, expected):
    logits = torch.tensor([[1.0, -2.0], [-1.0, 0.0], [3.0, -1.0]])
    np.testing.assert_allclose(pool_logits(logits, [2, 1], pooling).numpy(), expected)


def test_mean_prob_pooling_is_the_logit_of_the_mean_probability():
    logits = torch.tensor([[2.0], [-2.0], [0.5]], requires_grad=True)
    pooled = pool_logits(logits, [2, 1], "mean_prob")
    probs = torch.sigmoid(logits.detach())
    np.testing.assert_allclose(torch.sigmoid(pooled).detach().numpy(),
                               [[float(probs[:2].mean())], [float(probs[2])]], rtol=1e-6)
    pooled.sum().backward()  # the loss on the article's pooled score reaches every window
    assert (logits.grad != 0).all()


def test_one_window_per_article_is_left_as_it_is():
    logits = torch.randn(3, 2)
    assert pool_logits(logits, [1, 1, 1], "mean_prob") is logits
