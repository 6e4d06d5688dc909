"""Iterative stratification of multi-label data: parts of given sizes in which every label keeps its share.

Used for the validation hold-out and the folds of cross-fitting (training/split.py), and for the held-out
comparison of decision rules (inference/decision.py).
"""

from __future__ import annotations

import numpy as np


def iterative_stratification(matrix: np.ndarray, proportions: list[float], seed: int) -> np.ndarray:
    """The part (0 .. len(proportions)-1) of every row, so that each label's positives are spread over the
    parts in the given proportions as far as the data allows (Sechidis et al. 2011, "On the stratification
    of multi-label data", Algorithm 1): the label with the fewest rows still unassigned goes first, each of
    its rows to the part that wants that label most (ties: the part that wants most rows, then chance).

    Written here rather than taken from the `iterative-stratification` package, which implements the same
    algorithm: that package installs a top-level `tests` module into site-packages, which shadows the
    `tests` package of any project installed beside it (it broke this project's own test suite)."""
    rng = np.random.default_rng(seed)
    n = len(matrix)
    positive = matrix.astype(bool)
    wanted_rows = np.array(proportions, dtype=np.float64) * n
    wanted = np.outer(proportions, positive.sum(axis=0)).astype(np.float64)  # (parts, labels)
    part = np.full(n, -1, dtype=np.int64)
    left = positive.copy()  # positives of rows not assigned yet

    def assign(row: int, by_label: int | None) -> None:
        score = np.stack([wanted[:, by_label] if by_label is not None else wanted_rows, wanted_rows,
                          rng.random(len(proportions))])
        best = np.lexsort(score[::-1])[-1]  # the largest by label, then by rows, then by chance
        part[row] = best
        wanted[best, positive[row]] -= 1
        wanted_rows[best] -= 1
        left[row] = False

    while left.any():
        counts = left.sum(axis=0).astype(np.float64)
        counts[counts == 0] = np.inf
        label = int(np.argmin(counts))
        for row in rng.permutation(np.flatnonzero(left[:, label])):
            assign(int(row), label)
    for row in rng.permutation(np.flatnonzero(part < 0)):  # rows with no label
        assign(int(row), None)
    return part
