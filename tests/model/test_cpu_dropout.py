"""Dropout for training on a CPU (mlcls/model/cpu_dropout.py): the rate and scale of torch's dropout, in every
slice of every 64-bit draw, repeatable under a seed, and put in place of the model's dropouts by the CPU switch."""

from __future__ import annotations

import pytest
import torch

from mlcls.model.attention import use_training_attention
from mlcls.model.classifier import MultiLabelClassifier, load_encoder
from mlcls.model.cpu_dropout import CpuDropout, dropout, use_cpu_dropout


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_the_rate_and_the_scale_are_torchs(p):
    torch.manual_seed(0)
    x = torch.rand(400, 1000) + 0.5  # no zeros of its own
    out = dropout(x, p)
    dropped = out == 0
    # 400,000 units: the binomial's standard deviation is at most 0.0008, so 0.004 is five of them
    assert abs(dropped.float().mean().item() - p) < 0.004
    torch.testing.assert_close(out[~dropped], x[~dropped] / (1 - p))
    # each of the four 16-bit slices of a 64-bit draw drops at the rate: a slice one bit short would drop nothing
    by_slice = dropped.flatten().view(-1, 4).float().mean(0)
    assert torch.all((by_slice - p).abs() < 0.008), by_slice


@pytest.mark.parametrize("p", [1e-6, 0.001, 0.999, 0.999999, 1.0])
def test_a_p_that_steps_of_1_65536_cannot_hold_is_torchs_dropout(p):
    """Near 0 or 1 the 16-bit steps would drop at another rate than p (at 0.999999 none at all, every unit scaled by
    a million): torch's own dropout draws those, the same masks under the same seed."""
    x = torch.rand(1000, 100) + 0.5
    torch.manual_seed(5)
    expected = torch.nn.functional.dropout(x, p, True)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, p), expected)


def test_an_odd_count_and_bf16_and_the_edges():
    torch.manual_seed(0)
    x = torch.ones(3, 5, 7, dtype=torch.bfloat16)  # 105 units: not a multiple of four
    out = dropout(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.bfloat16
    assert set(out.unique().tolist()) <= {0.0, 2.0} and 0 < (out == 0).sum() < 105
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x


def test_a_seed_repeats_the_masks_and_gradients_follow_them():
    x = torch.rand(64, 64, requires_grad=True)
    torch.manual_seed(3)
    first = dropout(x, 0.3)
    torch.manual_seed(3)
    second = dropout(x, 0.3)
    assert torch.equal(first, second)
    assert not torch.equal(first, dropout(x, 0.3))  # the generator moved on: another mask
    first.sum().backward()
    torch.testing.assert_close(x.grad, (first != 0).float() / 0.7)


def test_the_cpu_switch_replaces_every_dropout_and_keeps_the_weights(tiny_encoder):
    encoder, _ = load_encoder(str(tiny_encoder))
    model = MultiLabelClassifier(encoder, num_labels=3, dropout=0.2)
    before = {n: type(m) for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    ps = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    keys = set(model.state_dict())
    assert use_training_attention(model, torch.device("cpu")) is not None
    after = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert set(after) == set(before) and len(after) > 3  # embeddings, each layer's two, the head's, ...
    assert all(type(m) is CpuDropout for m in after.values())
    assert {n: m.p for n, m in after.items()} == ps  # the same p where each was
    assert set(model.state_dict()) == keys
    assert use_cpu_dropout(model) == 0  # already replaced: nothing left to do


def test_attention_dropout_acts_in_training_only(tiny_encoder):
    """With the CPU kernel, the attention weights' dropout (model.attention_dropout) still drops: a model whose
    only dropout is on attention gives other logits in training, and the same as without the switch in eval."""
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 3, 0, 0]])
    mask = (ids != 0).long()

    def model_with(attention_dropout):
        encoder, _ = load_encoder(str(tiny_encoder), attention_dropout=attention_dropout)
        for name, module in encoder.named_modules():
            if isinstance(module, torch.nn.Dropout) and not name.endswith("attention.self.dropout"):
                module.p = 0.0
        torch.manual_seed(0)
        return MultiLabelClassifier(encoder, num_labels=3, dropout=0.0)

    plain = model_with(0.5).eval()
    model = model_with(0.5)
    use_training_attention(model, torch.device("cpu"))
    with torch.no_grad():
        expected = plain(ids, mask)
        torch.testing.assert_close(model.eval()(ids, mask), expected, atol=1e-5, rtol=1e-4)
        torch.manual_seed(1)
        assert not torch.allclose(model.train()(ids, mask), expected, atol=1e-3)
        off = model_with(0.0)
        use_training_attention(off, torch.device("cpu"))
        torch.testing.assert_close(off.train()(ids, mask), expected, atol=1e-5, rtol=1e-4)


def test_an_attention_that_is_not_berts_keeps_its_own_eager():
    """cpu_training_attention copies BERT's eager attention; a model whose own eager does more (here grouped-query
    heads: 4 query heads share 2 key/value heads) keeps its own, and still trains with cpu_dropout's modules."""
    from transformers import DistilBertConfig, DistilBertModel, Qwen3Config, Qwen3Model

    from mlcls.model.attention import CPU_TRAINING_ATTENTION, runs_berts_attention

    config = Qwen3Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=4, attention_dropout=0.1)
    torch.manual_seed(0)
    model = MultiLabelClassifier(Qwen3Model(config), num_labels=3, dropout=0.1).train()
    assert not runs_berts_attention(model.encoder)
    assert use_training_attention(model, torch.device("cpu")) == "eager"
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 3, 0, 0]])
    model(ids, (ids != 0).long()).sum().backward()  # BERT's arithmetic would fail here: 4 heads against 2
    assert type(model.dropout) is CpuDropout

    distil = DistilBertModel(DistilBertConfig(vocab_size=40, dim=16, hidden_dim=32, n_layers=1, n_heads=2))
    assert runs_berts_attention(distil)  # transformers' copy of BERT's function
    assert use_training_attention(MultiLabelClassifier(distil, num_labels=3), torch.device("cpu")) == \
        CPU_TRAINING_ATTENTION
