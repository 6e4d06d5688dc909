"""Repeat-factor sampling (train.repeat_threshold): the factors, an epoch's visits, and a training that uses them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.console import Console

from mlcls.config import load_config
from mlcls.data.labels import LabelStats
from mlcls.errors import ConfigError
from mlcls.training.entry import train
from mlcls.training.sampling import epoch_articles, epoch_size, repeat_factors
from tests.conftest import tiny_config, write_jsonl

# 10 articles: label 0 on 5 (share 0.5), label 1 on 1 (0.1), label 2 on 2 (0.2); article 9 has none.
TARGETS = np.zeros((10, 3), dtype=np.float32)
TARGETS[[0, 1, 2, 3, 4], 0] = 1
TARGETS[4, 1] = 1
TARGETS[[5, 6], 2] = 1
TARGETS[[7, 8], 0] = 0  # negatives
MASK = np.ones_like(TARGETS)


def factors_of(targets: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    stats = LabelStats.from_encoded([f"l{i}" for i in range(targets.shape[1])], targets, mask)
    return repeat_factors(stats, targets, mask, threshold)


def test_an_article_takes_the_largest_factor_among_its_labels():
    factors = factors_of(TARGETS, MASK, 0.4)
    label = [1.0, math.sqrt(0.4 / 0.1), math.sqrt(0.4 / 0.2)]  # share 0.5 > t: no repeat
    np.testing.assert_allclose(factors, [1, 1, 1, 1, label[1], label[2], label[2], 1, 1, 1], rtol=1e-6)


def test_a_threshold_below_every_share_repeats_nothing():
    np.testing.assert_array_equal(factors_of(TARGETS, MASK, 0.05), np.ones(10))


def test_soft_targets_below_a_half_and_unannotated_entries_do_not_count():
    targets, mask = TARGETS.copy(), MASK.copy()
    targets[5, 2] = 0.3  # a confidence below 0.5: not carried
    mask[7:, 2] = 0  # label 2 annotated on 7 articles: its share is 1 / 7
    factors = factors_of(targets, mask, 0.4)
    assert factors[5] == 1.0
    assert factors[6] == pytest.approx(math.sqrt(0.4 / (1 / 7)))


def test_an_epoch_visits_every_article_floor_or_ceil_of_its_factor_times_at_a_fixed_length():
    factors = np.array([1.0, 1.0, 2.5, 1.3, 3.0, 1.2])  # fractional parts sum to 1: one extra visit an epoch
    assert epoch_size(factors) == 10
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(4000):
        visits = epoch_articles(factors, rng)
        assert len(visits) == 10
        count = np.bincount(visits, minlength=len(factors))
        assert np.all(count >= np.floor(factors)) and np.all(count <= np.ceil(factors))
        counts.append(count)
    # An article's chance of the extra visit is its fractional part: the mean number of visits is its factor.
    np.testing.assert_allclose(np.mean(counts, axis=0), factors, atol=0.03)


def test_the_extras_fill_the_epoch_when_the_fractional_parts_do_not_sum_to_a_whole_number():
    factors = np.array([1.4, 1.4, 1.4, 2.9, 1.0])  # 8.1 visits: 8 an epoch, the extras scaled by 2 / 2.1
    rng = np.random.default_rng(1)
    counts = np.array([np.bincount(epoch_articles(factors, rng), minlength=5) for _ in range(4000)])
    assert (counts.sum(axis=1) == 8).all()
    np.testing.assert_allclose(counts.mean(axis=0), np.floor(factors) + (factors % 1) * 2 / 2.1, atol=0.03)


def test_an_epoch_is_reproducible_from_the_generator_state():
    factors = factors_of(TARGETS, MASK, 0.4)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(epoch_articles(factors, a), epoch_articles(factors, b))


def test_factors_of_one_are_one_visit_each_and_draw_nothing():
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    np.testing.assert_array_equal(epoch_articles(np.ones(4), rng), np.arange(4))
    assert rng.bit_generator.state == before


def test_the_threshold_is_checked():
    with pytest.raises(ConfigError, match="train.repeat_threshold"):
        load_config(None, ["train.repeat_threshold=1.5"])


def test_a_training_with_rare_topics_oversampled_says_so_and_records_the_epoch_length(tmp_path, tiny_encoder):
    # One "rare" topic on 2 of 16 training articles: at t = 0.5 they are seen sqrt(0.5 / (2 / 16)) = 2 times.
    records = [{"id": f"c{i}", "text": f"cocoa beans harvest number {i}", "labels": ["cocoa"]} for i in range(14)]
    records += [{"id": f"z{i}", "text": f"zinc mine output {i}", "labels": ["cocoa", "zinc"]} for i in range(2)]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    config = load_config(tiny_config(tmp_path, tiny_encoder, data),
                         ["train.epochs=1", "train.batch_size=4",
                          "train.repeat_threshold=0.5", f"train.cache_dir={tmp_path / 'cache'}"],
                         {"output.name": "rare"})
    console = Console(record=True, width=200)
    run = train(config, console).run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["article_visits_per_epoch"] == 18
    said = console.export_text()
    assert "18 article visits an epoch for 16 articles (1.12 each)" in said
    assert "1 epochs x 5 steps" in said  # 18 visits in batches of 4 (16 articles: 4 steps)
