"""Fold-in, the blend with transitions and top-k on index arrays: the one implementation of
model scoring.

``ranking/policy/ranker.py`` packs users' histories and transition candidates into a ``BatchQuery``
(product ids -> item indices), ``score_batch`` does the maths with NumPy, and
``ready_values.py`` maps the indices of the ``BatchResult`` back to product ids. The ingest path
scores a micro-batch of users at once; a live query (a category filter, or a user without a
ready list) is a batch of one.

The blend is ``transitions.blend`` computed without a dense transitions matrix: a user's
transition scores are a few hundred candidates and zeros elsewhere, so their mean and
deviation over the catalogue come from the candidates' sums, and the zeros' common z-score is
one constant per row. The candidates themselves are assembled here, for the whole batch in a few
NumPy calls: per query item the streamed counts summed over partitions, the larger of those and
the counts shipped with the model per successor, summed over the user's query items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

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
    # Transitions, None = no user has any. Per user, query slots (the items of their latest
    # day); per slot, the item's index in the model (-1 if it has none: streamed counts only)
    # and its streamed successors as (item index, count), every partition's entry back to back.
    trans_query: Optional[np.ndarray] = None          # int64 per slot
    trans_query_offsets: Optional[np.ndarray] = None  # int64, len users + 1, into trans_query
    trans_items: Optional[np.ndarray] = None          # int32 streamed successors, all slots
    trans_scores: Optional[np.ndarray] = None         # float32, aligned with trans_items (half
    # the bytes of 64-bit arrays on the way to the scoring process)
    trans_slot_offsets: Optional[np.ndarray] = None   # int64, len slots + 1, into trans_items
    blend_weights: tuple[float, float] = (1.0, 0.75)  # (ALS, transitions) on z-scores

    @property
    def users(self) -> int:
        return len(self.offsets) - 1

    def has_als(self) -> np.ndarray:
        """Per user: whether the model knows any of their items (bool array)."""
        return np.diff(self.offsets) > 0

    def has_transitions(self) -> np.ndarray:
        """Per user: whether they have transition candidates (a slot is packed only with some)."""
        if self.trans_query_offsets is None:
            return np.zeros(self.users, dtype=bool)
        return np.diff(self.trans_query_offsets) > 0


@dataclass(frozen=True)
class BatchResult:
    vectors: np.ndarray       # float32 users x factors
    best: np.ndarray          # int32 users x min(n, items), -1 where a user has fewer candidates
    scores: np.ndarray        # float32, aligned with ``best`` (0 where it is -1)


#: Users scored per matrix product. A whole micro-batch at once (up to 2,000 users) made a
#: users x catalogue score matrix of 70 MB on the Amazon catalogue, plus its temporaries, in
#: the scoring process; 256 users keep that under 10 MB at the same speed per user.
CHUNK_USERS = 256


def score_batch(foldin: FoldIn, q: BatchQuery, *, shipped: Optional[sp.csr_matrix] = None,
                chunk_users: int = CHUNK_USERS) -> BatchResult:
    """Fold-in, blend, exclusions and top-k for all users of ``q`` in whole-chunk NumPy calls;
    ``shipped`` is the model's transition counts (items x items, rows = from), if it has any."""
    vectors = foldin.user_vectors(q.items, q.weights, q.offsets)
    if q.users <= chunk_users:
        best, values = _top_k(vectors, foldin.Y, q, 0, q.users, shipped)
    else:
        parts = [_top_k(vectors, foldin.Y, q, lo, min(lo + chunk_users, q.users), shipped)
                 for lo in range(0, q.users, chunk_users)]
        best = np.concatenate([b for b, _ in parts])
        values = np.concatenate([v for _, v in parts])
    return BatchResult(vectors, best, values)


def _top_k(vectors: np.ndarray, Y: np.ndarray, q: BatchQuery, lo: int, hi: int,
           shipped: Optional[sp.csr_matrix]) -> tuple[np.ndarray, np.ndarray]:
    """Scores, exclusions and top-k of users ``lo`` to ``hi`` of ``q``."""
    scores = vectors[lo:hi] @ Y.T
    rescale: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
    if q.trans_query_offsets is not None and q.trans_query_offsets[hi] > q.trans_query_offsets[lo]:
        rescale = _blend(scores, *transition_candidates(q, lo, hi, shipped, Y.shape[0]), q.blend_weights)
    if q.allowed is not None:
        scores[:, ~q.allowed] = -np.inf
    start, end = q.seen_offsets[lo], q.seen_offsets[hi]
    if end > start:
        rows = np.repeat(np.arange(hi - lo), np.diff(q.seen_offsets[lo:hi + 1]))
        scores[rows, q.seen[start:end]] = -np.inf
    best, values = top_k_rows(scores, q.n)
    if rescale is not None:
        blended, gain, offset = rescale
        found = best[blended] >= 0
        values[blended] = np.where(found, gain[:, None] * values[blended] + offset[:, None], 0.0)
    return best, values


def _unique_sum(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=values, minlength=len(uniq))


def transition_candidates(q: BatchQuery, lo: int, hi: int, shipped: Optional[sp.csr_matrix],
                          n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, item, score) of every transition candidate of users ``lo`` to ``hi``, one per pair:
    per query item, streamed counts summed over partitions; per successor the larger of that and
    the shipped count; summed over the user's query items."""
    assert q.trans_query is not None and q.trans_query_offsets is not None
    assert q.trans_items is not None and q.trans_scores is not None and q.trans_slot_offsets is not None
    qs, qe = int(q.trans_query_offsets[lo]), int(q.trans_query_offsets[hi])
    slot_row = np.repeat(np.arange(hi - lo), np.diff(q.trans_query_offsets[lo:hi + 1]))  # per slot
    # streamed: per (slot, item), summed over the partitions' entries
    es, ee = int(q.trans_slot_offsets[qs]), int(q.trans_slot_offsets[qe])
    entry_slot = np.repeat(np.arange(qe - qs), np.diff(q.trans_slot_offsets[qs:qe + 1]))
    keys, values = _unique_sum(entry_slot * n_items + q.trans_items[es:ee].astype(np.int64),
                               q.trans_scores[es:ee].astype(np.float64))
    if shipped is not None:
        query = q.trans_query[qs:qe]
        known = np.flatnonzero(query >= 0)
        starts, ends = shipped.indptr[query[known]], shipped.indptr[query[known] + 1]
        lengths = ends - starts
        if lengths.sum():
            at = np.repeat(starts - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
            s_keys = np.repeat(known, lengths) * n_items + shipped.indices[at]
            s_values = shipped.data[at].astype(np.float64)
            # the larger per (slot, item): sort by key, then by value, keep each key's last
            all_keys = np.concatenate([keys, s_keys])
            all_values = np.concatenate([values, s_values])
            order = np.lexsort((all_values, all_keys))
            all_keys, all_values = all_keys[order], all_values[order]
            last = np.r_[all_keys[1:] != all_keys[:-1], True]
            keys, values = all_keys[last], all_values[last]
    slot, item = np.divmod(keys, n_items)
    # summed over the user's query items
    keys, values = _unique_sum(slot_row[slot] * n_items + item, values)
    rows, cols = np.divmod(keys, n_items)
    return rows, cols, values


def _blend(als: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
           weights: tuple[float, float]) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rank rows with transition candidates by ``wa * z(als) + wt * z(transitions)``, z-scored
    over the whole catalogue before any exclusion, as ``transitions.blend`` does offline; the
    other rows keep their ALS scores. ``rows, cols`` are unique pairs.

    Per row the blend is ``gain * (als + beta * t) + offset`` with gain = wa / sd(als) and beta =
    (wt / sd(t)) / gain: a positive affine map of ``als + beta * t``, so only the candidates'
    entries change here (in place) and the top-k's scores are mapped afterwards; returned as
    (blended rows, gain, offset). Two read passes over a row instead of five written ones: this
    runs in the scoring process for every user of every micro-batch. A user the model cannot
    fold in has a zero vector (sd 0): ranked by transitions alone, gain 1.
    """
    wa, wt = weights
    n_rows, n_items = als.shape
    s1 = np.bincount(rows, weights=values, minlength=n_rows)
    s2 = np.bincount(rows, weights=values * values, minlength=n_rows)
    t_mean = s1 / n_items
    t_std = np.sqrt(np.maximum(s2 / n_items - t_mean * t_mean, 0.0))
    blended = np.flatnonzero(t_std > 0)
    if not len(blended):
        return None
    sub = als[blended] if len(blended) < n_rows else als
    # float32 sums (a product with ones, einsum): 6 us a row less than float64 reductions, and
    # the deviation only scales the blend weights
    a_mean = (sub @ np.ones(n_items, dtype=np.float32)).astype(np.float64) / n_items
    a_var = np.maximum(np.einsum("ij,ij->i", sub, sub).astype(np.float64) / n_items - a_mean * a_mean, 0.0)
    a_std = np.sqrt(a_var)
    if wa > 0:
        gain = np.where(a_std > 0, wa / np.where(a_std > 0, a_std, 1.0), 1.0)
        a_mean = np.where(a_std > 0, a_mean, 0.0)
    else:  # transitions only: the ALS scores must not rank
        als[blended] = 0.0
        gain, a_mean = np.ones(len(blended)), np.zeros(len(blended))
    t_b, s_b = t_mean[blended], t_std[blended]
    row_gain = np.zeros(n_rows)
    row_gain[blended] = gain
    take = t_std[rows] > 0
    r = rows[take]
    als[r, cols[take]] += (values[take] * (wt / np.where(t_std > 0, t_std, 1.0))[r] / row_gain[r]).astype(np.float32)
    # z(als) * wa + wt * z(t) = gain * (v - mean(als)) - wt * mean(t) / sd(t)
    return blended, gain, -gain * a_mean - wt * t_b / s_b
