"""Each loss against an independent formula written out here (log-sigmoid terms), not our own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlcls.errors import ConfigError
from mlcls.losses import LOSSES, LabelStats, build_loss, check_loss_params

LABELS = ["a", "b", "c"]


def stats(positives=(8.0, 3.0, 0.0), records=10) -> LabelStats:
    return LabelStats(LABELS, np.array(positives), np.full(3, float(records)), records)


def reference_bce(logits, targets, weights=None, mask=None):
    """-[y log s(x) + (1-y) log(1-s(x))], weighted per label, averaged over annotated entries."""
    per = -(targets * torch.log(torch.sigmoid(logits)) + (1 - targets) * torch.log(1 - torch.sigmoid(logits)))
    if weights is not None:
        per = per * weights
    mask = torch.ones_like(per) if mask is None else mask
    return (per * mask).sum() / mask.sum()


@pytest.fixture()
def batch():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, dtype=torch.float64)
    # row 2 has no label at all: an ordinary row of negatives
    targets = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=torch.float64)
    return logits, targets, mask


def test_bce_matches_formula_and_torch(batch):
    logits, targets, _ = batch
    loss = build_loss("bce", {}, stats())
    full = torch.ones_like(targets)
    assert torch.allclose(loss(logits, targets, full).double(), reference_bce(logits, targets), atol=1e-6)
    torch_ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(loss(logits, targets, full).double(), torch_ref, atol=1e-6)


@pytest.mark.parametrize("name", ["bce", "weighted", "confidence"])
def test_masked_entries_contribute_nothing(batch, name):
    logits, targets, mask = batch
    loss_fn = build_loss(name, {}, stats())
    x = logits.clone().requires_grad_(True)
    value = loss_fn(x, targets, mask)
    value.backward()
    assert torch.all(x.grad[mask == 0] == 0)
    # Moving a masked logit or flipping its target changes neither the loss nor the other gradients.
    x2 = logits.clone()
    x2[mask == 0] += 5.0
    t2 = targets.clone()
    t2[mask == 0] = 1 - t2[mask == 0]
    x2.requires_grad_(True)
    value2 = loss_fn(x2, t2, mask)
    value2.backward()
    assert torch.allclose(value, value2)
    assert torch.allclose(x.grad, x2.grad)


def test_masked_mean_is_over_annotated_entries(batch):
    logits, targets, mask = batch
    value = build_loss("bce", {}, stats())(logits, targets, mask)
    assert torch.allclose(value.double(), reference_bce(logits, targets, mask=mask), atol=1e-6)


def test_all_masked_batch_is_zero_not_nan(batch):
    logits, targets, _ = batch
    for name in LOSSES:
        assert build_loss(name, {}, stats())(logits, targets, torch.zeros_like(targets)).item() == 0.0


def test_weighted_default_weights_are_normalised_sqrt_inverse_frequency(batch):
    logits, targets, mask = batch
    raw = 1 / np.sqrt(np.array([8.0, 3.0, 0.0]) + 1)
    expected_w = torch.tensor(raw / raw.mean())
    value = build_loss("weighted", {}, stats())(logits, targets, mask)
    assert torch.allclose(value.double(), reference_bce(logits, targets, expected_w, mask), atol=1e-6)
    # the same through torch's own weighted BCE when nothing is masked
    full = torch.ones_like(targets)
    torch_ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, weight=expected_w)
    assert torch.allclose(build_loss("weighted", {}, stats())(logits, targets, full).double(), torch_ref, atol=1e-6)


def test_weighted_inverse_mode_and_explicit_mapping(batch):
    logits, targets, _ = batch
    full = torch.ones_like(targets)
    raw = 1 / (np.array([8.0, 3.0, 0.0]) + 1)
    inverse = build_loss("weighted", {"mode": "inverse"}, stats())(logits, targets, full)
    assert torch.allclose(inverse.double(), reference_bce(logits, targets, torch.tensor(raw / raw.mean())), atol=1e-6)

    explicit = build_loss("weighted", {"weights": {"a": 2.0, "c": 0.5}}, stats())(logits, targets, full)
    w = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)  # unnamed labels keep weight 1
    assert torch.allclose(explicit.double(), reference_bce(logits, targets, w), atol=1e-6)

    with pytest.raises(ConfigError, match="labels the training data lacks: zebra"):
        build_loss("weighted", {"weights": {"zebra": 1.0}}, stats())
    with pytest.raises(ConfigError, match="loss.mode: 'log' is not one of"):
        check_loss_params("weighted", {"mode": "log"})


def test_confidence_uses_soft_targets_and_bce_rounds_them():
    logits = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    soft = torch.tensor([[0.6, 0.2, 1.0]], dtype=torch.float64)
    full = torch.ones_like(soft)
    conf = build_loss("confidence", {}, stats())(logits, soft, full)
    assert torch.allclose(conf.double(), reference_bce(logits, soft), atol=1e-6)
    bce = build_loss("bce", {}, stats())(logits, soft, full)
    assert torch.allclose(bce.double(), reference_bce(logits, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)),
                          atol=1e-6)
    assert not torch.allclose(conf, bce)


@pytest.mark.parametrize("name", ["bce", "weighted", "confidence"])
def test_soft_targets_of_exactly_0_and_1_equal_the_hard_case(batch, name):
    logits, targets, mask = batch
    expected = reference_bce(logits, targets, mask=mask)
    value = build_loss(name, {}, stats(positives=(1, 1, 1)))(logits, targets, mask)  # equal counts: weights 1
    assert torch.allclose(value.double(), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["bce", "weighted", "confidence"])
def test_loss_is_float32_under_half_precision_inputs(batch, name):
    logits, targets, mask = batch
    value = build_loss(name, {}, stats())(logits.to(torch.bfloat16), targets, mask)
    assert value.dtype == torch.float32


def test_confidence_gradcheck_float64(batch):
    logits, targets, mask = batch
    soft = targets * 0.7 + 0.1
    loss_fn = build_loss("confidence", {}, stats())

    def f(x):  # the module casts to float32; gradcheck needs float64 end to end, so use the formula it wraps
        return loss_fn.elementwise(x, soft).mul(mask).sum() / mask.sum()

    assert torch.autograd.gradcheck(f, (logits.clone().requires_grad_(True),))


def test_registry_rejects_unknown_names_and_parameters():
    with pytest.raises(ConfigError, match=r"unknown loss 'focal2' \(valid: bce, weighted, confidence\)"):
        build_loss("focal2", {}, stats())
    with pytest.raises(ConfigError, match=r"loss 'bce' has no parameter 'gamma' \(it takes: no parameters\)"):
        check_loss_params("bce", {"gamma": 2})
    assert check_loss_params("weighted", {}) == {"mode": "sqrt_inverse", "weights": None}
