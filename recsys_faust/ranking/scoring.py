"""Fold-in, the blend with transitions and top-k on index arrays: the one implementation of
model scoring.

``ranking/ranker.py`` packs users' histories and transition candidates into a ``BatchQuery``
(product ids -> item indices), ``score_batch`` does the maths with NumPy, and
``ready_values.py`` maps the indices of the ``BatchResult`` back to product ids. The ingest path
scores a micro-batch of users at once; a live query (a category filter, or a user without a
ready list) is a batch of one.

The blend is ``transitions.blend`` computed without a dense transitions matrix: a user's
transition scores are a few hundred candidates and zeros elsewhere, so their mean and
deviation over the catalogue come from the candidates' sums, and the zeros' common z-score is
one constant per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .foldin import FoldIn
from .topk import top_k_rows


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
    # Transition candidates (item index, count) per user, back to back (an item may repeat: its
    # counts add up); None = no user has any.
    trans_items: Optional[np.ndarray] = None   # int64
    trans_scores: Optional[np.ndarray] = None  # float64
    trans_offsets: Optional[np.ndarray] = None  # int64, len users + 1
    blend_weights: tuple[float, float] = (1.0, 0.75)  # (ALS, transitions) on z-scores

    @property
    def users(self) -> int:
        return len(self.offsets) - 1

    def has_als(self) -> np.ndarray:
        """Per user: whether the model knows any of their items (bool array)."""
        return np.diff(self.offsets) > 0

    def has_transitions(self) -> np.ndarray:
        """Per user: whether they have transition candidates in the catalogue (bool array)."""
        if self.trans_offsets is None:
            return np.zeros(self.users, dtype=bool)
        return np.diff(self.trans_offsets) > 0


@dataclass(frozen=True)
class BatchResult:
    vectors: np.ndarray       # float32 users x factors
    best: np.ndarray          # int32 users x min(n, items), -1 where a user has fewer candidates
    scores: np.ndarray        # float32, aligned with ``best`` (0 where it is -1)


#: Users scored per matrix product. A whole micro-batch at once (up to 2,000 users) made a
#: users x catalogue score matrix of 70 MB on the Amazon catalogue, plus its temporaries, in
#: the scoring process; 256 users keep that under 10 MB at the same speed per user.
CHUNK_USERS = 256


def score_batch(foldin: FoldIn, q: BatchQuery, *, chunk_users: int = CHUNK_USERS) -> BatchResult:
    """Fold-in, scores, exclusions and top-k for all users of ``q`` in whole-chunk NumPy calls."""
    vectors = foldin.user_vectors(q.items, q.weights, q.offsets)
    if q.users <= chunk_users:
        best, values = _top_k(vectors, foldin.Y, q, 0, q.users)
    else:
        parts = [_top_k(vectors, foldin.Y, q, lo, min(lo + chunk_users, q.users))
                 for lo in range(0, q.users, chunk_users)]
        best = np.concatenate([b for b, _ in parts])
        values = np.concatenate([v for _, v in parts])
    return BatchResult(vectors, best, values)


def _top_k(vectors: np.ndarray, Y: np.ndarray, q: BatchQuery, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores, exclusions and top-k of users ``lo`` to ``hi`` of ``q``."""
    scores = vectors[lo:hi] @ Y.T
    if q.trans_offsets is not None and q.trans_offsets[hi] > q.trans_offsets[lo]:
        scores = _blend(scores, q, lo, hi)
    if q.allowed is not None:
        scores[:, ~q.allowed] = -np.inf
    start, end = q.seen_offsets[lo], q.seen_offsets[hi]
    if end > start:
        rows = np.repeat(np.arange(hi - lo), np.diff(q.seen_offsets[lo:hi + 1]))
        scores[rows, q.seen[start:end]] = -np.inf
    return top_k_rows(scores, q.n)


def _blend(als: np.ndarray, q: BatchQuery, lo: int, hi: int) -> np.ndarray:
    """Rows with transition candidates become ``wa * z(als) + wt * z(transitions)``, z-scored
    over the whole catalogue before any exclusion, as ``transitions.blend`` does offline; the
    other rows keep their ALS scores. A user the model cannot fold in has a zero vector, so
    their ALS z-scores are 0 and the blend ranks by transitions alone."""
    wa, wt = q.blend_weights
    n_items = als.shape[1]
    assert q.trans_items is not None and q.trans_scores is not None and q.trans_offsets is not None
    start, end = q.trans_offsets[lo], q.trans_offsets[hi]
    rows = np.repeat(np.arange(hi - lo), np.diff(q.trans_offsets[lo:hi + 1]))
    # Each user's candidates summed per item: one unique over (row, item) keys.
    keys, inverse = np.unique(rows * n_items + q.trans_items[start:end], return_inverse=True)
    values = np.bincount(inverse, weights=q.trans_scores[start:end], minlength=len(keys))
    rows, cols = np.divmod(keys, n_items)
    s1 = np.bincount(rows, weights=values, minlength=hi - lo)
    s2 = np.bincount(rows, weights=values * values, minlength=hi - lo)
    t_mean = s1 / n_items
    t_std = np.sqrt(np.maximum(s2 / n_items - t_mean * t_mean, 0.0))
    blended = np.flatnonzero(t_std > 0)
    if not len(blended):
        return als
    out = als.astype(np.float64)
    sub = out[blended]
    a_mean = sub.mean(axis=1, keepdims=True)
    a_std = sub.std(axis=1, keepdims=True)
    scale = np.where(a_std > 0, wa / np.where(a_std > 0, a_std, 1.0), 0.0)
    inv_t = wt / np.where(t_std > 0, t_std, 1.0)
    # z(als) * wa, plus the transitions' z-score of a zero (the same for every non-candidate)
    out[blended] = (sub - a_mean) * scale - (wt * t_mean[blended] / t_std[blended])[:, None]
    take = t_std[rows] > 0
    out[rows[take], cols[take]] += values[take] * inv_t[rows[take]]
    return out.astype(np.float32)
