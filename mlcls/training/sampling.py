"""Which training articles an epoch visits: each once, or rare topics' articles more often (train.repeat_threshold).

Repeat-factor sampling (Gupta et al., LVIS, CVPR 2019; detectron2's RepeatFactorTrainingSampler): a label
carried by a share f of the training articles has the factor max(1, sqrt(t / f)), and an article is seen as
many times an epoch as the largest factor among its labels (1 for an article with no label). Topics rarer than
t are oversampled, the rarest most (on Reuters at t = 0.01 a one-article topic is seen about 9 times an epoch),
and the other articles are seen once, as before. The epoch grows by the mean factor, which the training
summary says.

Not a torch `WeightedRandomSampler`: that draws every article with replacement, so a common article may be
missed in an epoch and the epoch's length is a choice; here every article is seen at least once and the epoch
has a fixed length, so the learning-rate schedule and a resumed run's step count are known in advance. The
fractional parts of the factors are drawn (systematic sampling) from the epoch's generator, the batch order's,
so an epoch's articles are reproducible and `train --resume` continues the same epoch.
"""

from __future__ import annotations

import numpy as np

from mlcls.data.labels import LabelStats, carried


def repeat_factors(stats: LabelStats, targets: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """Each training article's factor (>= 1). A label's share f: the training articles that carry it (`stats`,
    of the same targets) among those annotated for it; a label no article carries has the factor 1."""
    share = stats.article_counts() / np.maximum(stats.annotated, 1)
    label_factor = np.maximum(np.sqrt(threshold / np.where(share > 0, share, threshold)), 1.0)
    return np.where(carried(targets, mask), label_factor[None, :], 1.0).max(axis=1, initial=1.0)


def epoch_size(factors: np.ndarray) -> int:
    """Articles an epoch visits: the factors' sum, rounded (at least one visit per article)."""
    return max(len(factors), int(round(float(factors.sum()))))


def epoch_articles(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The article indices of one epoch, in index order (the batches shuffle them): each article floor(factor)
    times, plus the `epoch_size - sum of floors` extra visits, drawn by systematic sampling (articles in random
    order, their fractional parts laid end to end, one visit at each of the points u, u + 1, ...; u uniform
    in [0, 1)): an article's chance of the extra visit is its fractional part, scaled by the same factor for
    all so that the extras fill the epoch's fixed length exactly (a rounding of at most half a visit in all)."""
    whole = np.floor(factors).astype(np.int64)
    extra = epoch_size(factors) - int(whole.sum())
    fraction = factors - whole
    if extra > 0 and fraction.sum() > 0:
        order = rng.permutation(len(factors))
        ends = np.cumsum(fraction[order])
        ends *= extra / ends[-1]
        starts = np.concatenate(([0.0], ends[:-1]))
        u = rng.random()
        whole[order] += (np.ceil(ends - u) - np.ceil(starts - u)).astype(np.int64)
    return np.repeat(np.arange(len(factors)), whole)
