"""Each loss against an independent formula written out here (log-sigmoid terms), not our own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlcls.data.labels import LabelStats
from mlcls.errors import ConfigError
from mlcls.loss_specs import LOSSES, check_loss_params
from mlcls.model.losses import build_loss

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


def test_registry_rejects_unknown_names_and_parameters():
    with pytest.raises(ConfigError, match=r"unknown loss .focal2. \(valid: bce, weighted, confidence, focal, asl, cb"):
        build_loss("focal2", {}, stats())
    with pytest.raises(ConfigError, match=r"loss 'bce' has no parameter 'gamma' \(it takes: no parameters\)"):
        check_loss_params("bce", {"gamma": 2})
    assert check_loss_params("weighted", {}) == {"mode": "sqrt_inverse", "weights": None, "beta": 0.999,
                                                 "pos_weight": "none"}


# --------------------------------------------------------------------------- the imbalance-aware family
# Each reference below is written from the paper's equations, independently of mlcls.losses.

ALL_LOSSES = list(LOSSES)


def ref_focal(x, y, gamma, alpha=-1.0):
    """torchvision.ops.sigmoid_focal_loss, element-wise."""
    p = torch.sigmoid(x)
    ce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def ref_asl(x, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05):
    """Ridnik et al. 2021, eq. (7)-(8): L+ = (1-p)^g+ log p, L- = p_m^g- log(1-p_m), p_m = max(p - m, 0)."""
    p = torch.sigmoid(x)
    p_m = torch.clamp(p - clip, min=0)
    return -(y * (1 - p) ** gamma_pos * torch.log(p) + (1 - y) * p_m**gamma_neg * torch.log(1 - p_m))


def ref_db(x, y, n, num_records, alpha=0.1, beta=10.0, mu=0.9, kappa=0.05, lam=2.0, gamma=2.0, reweight=True):
    """Wu et al. 2020, written out row by row: r_ij = (1/n_j) / sum_{k in y_i} (1/n_k), r^ = alpha +
    sigmoid(beta (r - mu)); NTR logits z + kappa * logit(prior_j), negatives scaled by lambda (Wu et al.'s
    formula and Huang et al.'s code: the shift is not divided by lambda)."""
    out = torch.zeros_like(x)
    # the prior is the smoothed share of positives (0.5 added), from the raw counts: [8, 3, 0] in these tests
    prior = (torch.tensor([8.0, 3.0, 0.0], dtype=x.dtype) + 0.5) / (num_records + 1.0)
    shift = kappa * torch.log(prior / (1 - prior))
    for i in range(x.shape[0]):
        instance = sum(y[i, k] / n[k] for k in range(x.shape[1]))
        for j in range(x.shape[1]):
            r = (1 / n[j]) / instance if instance > 0 else torch.tensor(1.0, dtype=x.dtype)
            w = alpha + torch.sigmoid(beta * (r - mu)) if reweight else 1.0
            z = x[i, j] + shift[j]
            pos = -torch.log(torch.sigmoid(z)) * (1 - torch.sigmoid(z)) ** gamma
            neg = torch.log(1 + torch.exp(lam * z)) / lam * torch.sigmoid(lam * z) ** gamma
            out[i, j] = w * (y[i, j] * pos + (1 - y[i, j]) * neg)
    return out


def masked_mean(per, mask):
    return (per * mask).sum() / mask.sum()


@pytest.mark.parametrize("gamma,alpha", [(2.0, -1.0), (2.0, 0.25), (0.5, 0.6)])
def test_focal_matches_torchvision_formula(batch, gamma, alpha):
    logits, targets, mask = batch
    soft = targets * 0.8 + 0.1  # soft targets go through the same formula
    for y in (targets, soft):
        value = build_loss("focal", {"gamma": gamma, "alpha": alpha}, stats())(logits, y, mask)
        assert torch.allclose(value.double(), masked_mean(ref_focal(logits, y, gamma, alpha), mask), atol=1e-6)


def test_focal_with_gamma_zero_is_bce(batch):
    logits, targets, mask = batch
    focal = build_loss("focal", {"gamma": 0.0}, stats())(logits, targets, mask)
    assert torch.allclose(focal, build_loss("bce", {}, stats())(logits, targets, mask))


def test_asl_matches_the_paper(batch):
    logits, targets, mask = batch
    value = build_loss("asl", {}, stats())(logits, targets, mask)
    assert torch.allclose(value.double(), masked_mean(ref_asl(logits, targets), mask), atol=1e-6)
    custom = build_loss("asl", {"gamma_pos": 0.0, "gamma_neg": 2.0, "clip": 0.0}, stats())(logits, targets, mask)
    assert torch.allclose(custom.double(), masked_mean(ref_asl(logits, targets, 0.0, 2.0, 0.0), mask), atol=1e-6)


def test_asl_discards_easy_negatives():
    # negatives with p < clip (0.05) cost nothing; the positive is masked out
    logits, targets = torch.tensor([[-5.0, 2.0, -6.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    assert build_loss("asl", {}, stats())(logits, targets, torch.tensor([[1.0, 0.0, 1.0]])).item() == 0.0


def test_cb_weights_from_effective_numbers(batch):
    logits, targets, mask = batch
    n = np.maximum(np.array([8.0, 3.0, 0.0]), 1)
    raw = (1 - 0.99) / (1 - 0.99**n)
    w = torch.tensor(raw / raw.mean())
    value = build_loss("cb", {"beta": 0.99, "gamma": 0.0}, stats())(logits, targets, mask)
    assert torch.allclose(value.double(), masked_mean(ref_focal(logits, targets, 0.0) * w, mask), atol=1e-6)
    focal = build_loss("cb", {"beta": 0.99}, stats())(logits, targets, mask)  # gamma 2: Huang et al.'s "CB"
    assert torch.allclose(focal.double(), masked_mean(ref_focal(logits, targets, 2.0) * w, mask), atol=1e-6)
    # weighted's effective_number mode is the same weighting on plain BCE
    same = build_loss("weighted", {"mode": "effective_number", "beta": 0.99}, stats())(logits, targets, mask)
    assert torch.allclose(same, build_loss("cb", {"beta": 0.99, "gamma": 0.0}, stats())(logits, targets, mask))


def test_weighted_pos_weight_matches_torch(batch):
    logits, targets, _ = batch
    full = torch.ones_like(targets)
    ratio = (np.full(3, 10.0) - [8.0, 3.0, 0.0]) / np.maximum([8.0, 3.0, 0.0], 1)
    for mode, pw in (("ratio", ratio), ("sqrt_ratio", np.sqrt(ratio))):
        loss = build_loss("weighted", {"pos_weight": mode, "weights": {}}, stats())(logits, targets, full)
        ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw))(logits, targets)
        assert torch.allclose(loss.double(), ref, atol=1e-6)


@pytest.mark.parametrize("name,reweight", [("db", True), ("ntr_focal", False)])
def test_db_matches_a_row_by_row_reimplementation(batch, name, reweight):
    logits, targets, mask = batch
    n = torch.tensor([8.0, 3.0, 1.0], dtype=torch.float64)  # counts clamp at 1 for a label never seen
    value = build_loss(name, {}, stats())(logits, targets, mask)
    # a not-annotated entry is no positive, also not in the row's instance-level sampling rate
    expected = masked_mean(ref_db(logits, targets * mask, n, 10, reweight=reweight), mask)
    assert torch.allclose(value.double(), expected, atol=1e-5)


def test_db_parameters_reach_the_formula(batch):
    logits, targets, mask = batch
    n = torch.tensor([8.0, 3.0, 1.0], dtype=torch.float64)
    params = {"alpha": 0.3, "beta": 5.0, "mu": 0.5, "kappa": 0.2, "lambda": 3.0, "gamma": 1.0}
    value = build_loss("db", params, stats())(logits, targets, mask)
    expected = masked_mean(ref_db(logits, targets * mask, n, 10, 0.3, 5.0, 0.5, 0.2, 3.0, 1.0), mask)
    assert torch.allclose(value.double(), expected, atol=1e-5)


def test_cb_ntr_uses_class_balanced_weights(batch):
    logits, targets, mask = batch
    n = torch.tensor([8.0, 3.0, 1.0], dtype=torch.float64)
    raw = (1 - 0.9) / (1 - 0.9 ** n)  # cb_beta 0.9, the default of Huang et al.'s Reuters code
    w = raw / raw.mean()
    unweighted = ref_db(logits, targets, n, 10, reweight=False)
    value = build_loss("cb_ntr", {}, stats())(logits, targets, mask)
    assert torch.allclose(value.double(), masked_mean(unweighted * w, mask), atol=1e-5)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_gradchecks_in_float64(batch, name):
    logits, targets, mask = batch
    y = targets if name in ("bce", "weighted") else targets * 0.7 + 0.1  # hard-label losses round soft targets
    loss_fn = build_loss(name, {}, stats())

    def f(x):  # forward() casts to float32; gradcheck wants float64 end to end, so check the formula it wraps
        return loss_fn.elementwise(x, y).mul(mask).sum() / mask.sum()

    assert torch.autograd.gradcheck(f, (logits.clone().requires_grad_(True),))


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_respects_masks_and_no_label_rows(batch, name):
    logits, targets, mask = batch
    loss_fn = build_loss(name, {}, stats())
    x = logits.clone().requires_grad_(True)
    value = loss_fn(x, targets, mask)
    value.backward()
    assert torch.isfinite(value) and value.dtype == torch.float32
    assert torch.all(x.grad[mask == 0] == 0)
    # Moving a masked logit or flipping its target changes neither the loss nor the other gradients.
    x2 = logits.clone()
    x2[mask == 0] -= 3.0
    x2.requires_grad_(True)
    flipped = targets.clone()
    flipped[mask == 0] = 1 - flipped[mask == 0]
    value2 = loss_fn(x2, flipped, mask)
    value2.backward()
    assert torch.allclose(value, value2) and torch.allclose(x.grad, x2.grad)
    # a batch of label-less rows only is finite and pushes every score down
    empty = torch.zeros_like(targets)
    x3 = logits.clone().requires_grad_(True)
    loss_fn(x3, empty, torch.ones_like(targets)).backward()
    assert torch.all(x3.grad >= 0) and torch.isfinite(x3.grad).all()


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_confidences_of_exactly_0_and_1_equal_the_hard_list(tmp_path, name):
    from mlcls.data.labels import LabelSpace
    from mlcls.data.records import read_records
    from tests.conftest import write_jsonl

    hard = write_jsonl(tmp_path / "h.jsonl", [{"text": "x", "labels": ["a", "c"]}, {"text": "y", "labels": []}])
    soft = write_jsonl(tmp_path / "s.jsonl", [{"text": "x", "labels": {"a": 1.0, "b": 0.0, "c": 1}},
                                              {"text": "y", "labels": {"a": 0.0}}])
    space = LabelSpace(LABELS)
    a, b = space.encode(list(read_records(hard))), space.encode(list(read_records(soft)))
    logits = torch.randn(2, 3)
    loss_fn = build_loss(name, {}, stats())
    value_hard = loss_fn(logits, torch.from_numpy(a.targets), torch.from_numpy(a.mask))
    value_soft = loss_fn(logits, torch.from_numpy(b.targets), torch.from_numpy(b.mask))
    assert torch.equal(value_hard, value_soft)
