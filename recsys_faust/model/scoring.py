"""Fold-in and top-k on index arrays: the one implementation of ALS scoring.

The serving layer packs users' histories into a ``BatchQuery`` (product ids -> item indices),
``score_batch`` does the maths with NumPy, and the serving layer maps the indices of the
``BatchResult`` back to product ids. The ingest path scores a micro-batch of users at once; a
live query (a category filter, or a user without a ready list) is a batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .als import FoldIn, top_k_rows


@dataclass(frozen=True)
class BatchQuery:
    """Users' histories and seen items as concatenated index arrays."""

    items: np.ndarray         # int64 item indices, all users' histories back to back
    weights: np.ndarray       # float64 confidence weights, aligned with ``items``
    offsets: np.ndarray       # int64, len users + 1
    seen: np.ndarray          # int64 item indices to exclude, back to back
    seen_offsets: np.ndarray  # int64, len users + 1
    n: int                    # list length
    allowed: Optional[np.ndarray] = None  # bool per item (a category filter), None = all

    @property
    def users(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class BatchResult:
    vectors: np.ndarray       # float32 users x factors
    best: np.ndarray          # int32 users x n, -1 where a user has fewer candidates
    scores: np.ndarray        # float32 users x n


def score_batch(foldin: FoldIn, q: BatchQuery) -> BatchResult:
    Y = foldin.Y
    histories = [(q.items[a:b], q.weights[a:b]) for a, b in zip(q.offsets[:-1], q.offsets[1:])]
    vectors = foldin.user_vectors(histories)
    scores = vectors @ Y.T
    if q.allowed is not None:
        scores[:, ~q.allowed] = -np.inf
    for u, (a, b) in enumerate(zip(q.seen_offsets[:-1], q.seen_offsets[1:])):
        if b > a:
            scores[u, q.seen[a:b]] = -np.inf
    best = np.full((q.users, q.n), -1, dtype=np.int32)
    vals = np.zeros((q.users, q.n), dtype=np.float32)
    for u, (idx, v) in enumerate(top_k_rows(scores, q.n)):
        best[u, :len(idx)] = idx
        vals[u, :len(v)] = v
    return BatchResult(vectors, best, vals)
