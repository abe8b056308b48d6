"""Why an item is recommended: each of the user's interactions' exact share of its ALS score.

After fold-in the user's vector is ``x = A^-1 sum_j c_j y_j`` with ``A = Y'Y + sum_j (c_j - 1)
y_j y_j' + reg I`` (ranking/maths/foldin.py), so an item's score ``y_i . x`` is the sum over the
user's interactions of ``c_j (y_i' A^-1 y_j)``: linear in them, and the split is exact. It is the
decomposition implicit's ``AlternatingLeastSquares.explain`` computes (tested against it), done
here for many items with one solve.
"""

from __future__ import annotations

import numpy as np

from .foldin import FoldIn


def als_shares(foldin: FoldIn, items: np.ndarray, weights: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``shares[t, j]``: interaction ``j``'s (item ``items[j]``, weight ``weights[j]``) part of
    item ``targets[t]``'s ALS score; each row sums to that score (``y_t . x``)."""
    items = np.asarray(items, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if len(items) == 0 or len(targets) == 0:
        return np.zeros((len(targets), len(items)))
    Yu = foldin.Y[items].astype(np.float64)                       # m x f
    c = foldin.alpha * np.asarray(weights, dtype=np.float64)
    f = foldin.Y.shape[1]
    A = foldin.YtY + (Yu.T * (c - 1.0)) @ Yu + foldin.reg * np.eye(f)
    W = np.linalg.solve(A, Yu.T)                                  # f x m: A^-1 y_j
    return (foldin.Y[targets].astype(np.float64) @ W) * c[None, :]
