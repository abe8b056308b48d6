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
    best: np.ndarray          # int32 users x min(n, items), -1 where a user has fewer candidates
    scores: np.ndarray        # float32, aligned with ``best`` (0 where it is -1)


def score_batch(foldin: FoldIn, q: BatchQuery) -> BatchResult:
    """Fold-in, scores, exclusions and top-k for all users of ``q`` in whole-batch NumPy calls."""
    vectors = foldin.user_vectors(q.items, q.weights, q.offsets)
    scores = vectors @ foldin.Y.T
    if q.allowed is not None:
        scores[:, ~q.allowed] = -np.inf
    if len(q.seen):
        scores[np.repeat(np.arange(q.users), np.diff(q.seen_offsets)), q.seen] = -np.inf
    best, values = top_k_rows(scores, q.n)
    return BatchResult(vectors, best, values)
