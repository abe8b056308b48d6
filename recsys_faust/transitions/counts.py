"""Item transitions: "users who took item i went on to take item j", counted from histories.

Why: on the Amazon grocery data (leave-last-out, NDCG@10) the items a user takes next are far
better predicted by what other users took right after the same items than by the ALS factors
(0.057 against 0.038, measured by ``training/evaluate.py``), and a count is cheap to keep up to
date on every event, which a batch-trained factor model is not.

The pairs counted for one user's history, with ``day`` the event time at day resolution (the
Amazon timestamps have no finer grain, so the order of one day's items is unknown):
- i and j on the same day: (i -> j) and (j -> i);
- i on the user's previous active day, j on the next: (i -> j).
A user is scored from the items of their latest active day: the successors of those items,
plus ``reverse_weight`` times their predecessors.

Pure NumPy/SciPy: the same counts are built offline (``counts_from_histories``) and
folded event by event in the stream (``transition_index.successor_updates``, the same counts
whatever order the events arrive in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

DAY_S = 86_400

#: Weight of an item's predecessors beside its successors. Chosen on a validation split of the
#: training data (each user's last training item held out; NDCG@10): predecessors at 0.5 lift
#: transitions alone (0.0561 -> 0.0583) but lower the blend with ALS (0.0640 -> 0.0625), and the
#: blend is what is served; at 0 the stream needs no predecessor index either.
REVERSE_WEIGHT = 0.0


@dataclass(frozen=True)
class TransitionParams:
    """How pairs are counted and scored (defaults chosen with ``evaluate`` on a validation split
    of the training data)."""

    day_s: int = DAY_S
    reverse_weight: float = REVERSE_WEIGHT


def pairs_for_event(history: Sequence[tuple[int, float]], item: int, ts: float,
                    day_s: int = DAY_S) -> list[tuple[int, int]]:
    """The (earlier -> later) pairs one new event adds, given the user's history before it.

    ``history`` is (item, ts) in time order. Same-day items pair both ways; the items of the
    latest active day before this event's day pair towards this item.
    """
    day = int(ts // day_s)
    same = [i for i, t in history if int(t // day_s) == day and i != item]
    earlier_days = [int(t // day_s) for _, t in history if int(t // day_s) < day]
    out = [(i, item) for i in same] + [(item, i) for i in same]
    if earlier_days:
        prev = max(earlier_days)
        out += [(i, item) for i, t in history if int(t // day_s) == prev and i != item]
    return out


def user_histories(users: np.ndarray, items: np.ndarray,
                   ts: np.ndarray) -> Iterator[tuple[int, list[int], list[float]]]:
    """(user, items, times) per user, each history in the rows' order (interactions come in
    time order, ties in arrival order)."""
    order = np.lexsort((np.arange(len(users)), users))  # by user, the rows' order kept within
    u, i, t = users[order], items[order], ts[order]
    bounds = np.flatnonzero(np.diff(u)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(u)]):
        if hi > lo:
            yield int(u[lo]), i[lo:hi].tolist(), t[lo:hi].tolist()


def counts_from_histories(users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_items: int,
                          params: TransitionParams = TransitionParams()) -> sp.csr_matrix:
    """items x items CSR of transition counts from interactions in time order.

    Folding ``pairs_for_event`` over each user's events in order gives the same counts (tested),
    but in whole-array NumPy rather than an event loop over the history before each event (that
    loop was a third of ``train`` on the Amazon data): per (user, day) group of events, every
    earlier event of the group pairs with each later one both ways, and every event of the
    user's previous active day leads to each event of the group; pairs of one item are dropped.
    """
    users, items, ts = np.asarray(users), np.asarray(items, dtype=np.int64), np.asarray(ts, dtype=np.float64)
    if len(users) == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    order = np.lexsort((np.arange(len(users)), users))     # by user, each history in the rows' order
    u, i = users[order], items[order]
    day = np.floor(ts[order] / params.day_s).astype(np.int64)
    n = len(u)
    new_group = np.r_[True, (u[1:] != u[:-1]) | (day[1:] != day[:-1])]
    group_start = np.flatnonzero(new_group)
    group_of = np.cumsum(new_group) - 1                      # per event
    start_of = group_start[group_of]                         # per event: its group's first event
    # same day: event k pairs with each earlier event j of its group (j in [start, k))
    same_n = np.arange(n) - start_of
    k_same = np.repeat(np.arange(n), same_n)
    j_same = _ragged_from(start_of, same_n)
    # the previous active day: the user's previous group, all of it, leads to event k
    prev_group = group_of - 1
    has_prev = (prev_group >= 0) & (u[group_start[np.maximum(prev_group, 0)]] == u)
    prev_start = group_start[np.maximum(prev_group, 0)]
    prev_n = np.where(has_prev, start_of - prev_start, 0)
    k_prev = np.repeat(np.arange(n), prev_n)
    j_prev = _ragged_from(prev_start, prev_n)
    src = np.concatenate([i[j_same], i[k_same], i[j_prev]])
    dst = np.concatenate([i[k_same], i[j_same], i[k_prev]])
    keep = src != dst
    m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (src[keep], dst[keep])),
                      shape=(n_items, n_items), dtype=np.float32)
    m.sum_duplicates()
    return m


def _ragged_from(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total)


def latest_day_items(history: Iterable[tuple[int, float]], day_s: int = DAY_S) -> list[int]:
    """The items of a user's latest active day: what their transitions are scored from."""
    history = list(history)
    if not history:
        return []
    last = max(int(t // day_s) for _, t in history)
    return sorted({i for i, t in history if int(t // day_s) == last})


def score_matrix(queries: sp.csr_matrix, counts: sp.csr_matrix,
                 params: TransitionParams = TransitionParams()) -> np.ndarray:
    """Dense users x items transition scores: successors of the query items plus
    ``reverse_weight`` times their predecessors (``queries`` is users x items, 1 per query item)."""
    s = queries @ counts
    if params.reverse_weight:
        s = s + params.reverse_weight * (queries @ counts.T)
    return np.asarray(s.todense(), dtype=np.float64)


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit deviation over the whole catalogue (a flat row: 0).

    Why z-scores: ALS scores and transition counts live on unrelated scales that also differ
    from user to user; standardising each user's row makes one pair of blend weights fit all.
    Excluded entries (-inf) are left out of the statistics and stay -inf.
    """
    finite = np.isfinite(scores)
    x = np.where(finite, scores, 0.0)
    n = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    mean = x.sum(axis=1, keepdims=True) / n
    var = np.where(finite, (x - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n
    std = np.sqrt(var)
    z = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(finite, z, -np.inf)


def blend(als: np.ndarray, transitions: np.ndarray, *, als_weight: float, transitions_weight: float) -> np.ndarray:
    """The per-user blend of two score matrices of the same shape (rows z-scored, then weighted)."""
    return als_weight * zscore_rows(als) + transitions_weight * zscore_rows(transitions)
