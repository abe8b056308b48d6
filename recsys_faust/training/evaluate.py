"""Offline quality: leave-last-out, full-catalogue ranking, seen items removed.

ALS, item transitions (``transitions/counts.py``, capped per item as the stream and the
shipped counts are) and their per-user blend, against two baselines computed on the same split:
most-popular and the popularity fallback (popularity x category affinity,
``ranking.popular.popular_affinity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp

from ..events.model import Event
from ..popularity.trending import PopularityIndex, apply_to_entry, entry_key, new_entry
from ..profiles.profile import ProfileConfig, apply_event, new_profile
from ..ranking.policy.popular import popular_affinity
from ..transitions.counts import (
    TransitionParams, blend, counts_from_histories, latest_day_items, score_matrix, user_histories,
)
from ..transitions.index import MAX_SUCCESSORS, TransitionCounts
from ..ranking.maths.topk import top_k_rows
from .als import ALSParams, train_als
from .dataset import Interactions, leave_last_out

K = 10
BATCH = 1024

#: Blend weights of the z-scored ALS and transition scores: the defaults of the settings
#: RECSYS_BLEND_ALS_WEIGHT and RECSYS_BLEND_TRANSITIONS_WEIGHT. Chosen on a validation split
#: carved from the training data (each user's last training interaction held out), never on the
#: test items; the grid and its figures are in docs/architecture.md ("Item transitions").
BLEND_ALS_WEIGHT = 1.0
BLEND_TRANSITIONS_WEIGHT = 0.75


@dataclass
class Quality:
    name: str
    ndcg: float
    hr: float
    coverage: float
    users: int


def _metrics(name: str, ranked: np.ndarray, target: np.ndarray, n_items: int) -> Quality:
    hits = ranked == target[:, None]
    pos = np.argmax(hits, axis=1)
    hit = hits.any(axis=1)
    ndcg = np.where(hit, 1.0 / np.log2(pos + 2), 0.0)
    coverage = len(np.unique(ranked[ranked >= 0])) / n_items
    return Quality(name, float(ndcg.mean()), float(hit.mean()), coverage, len(target))


def _seen_lists(data: Interactions, train: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(data.users[train], kind="stable")
    users, items = data.users[train][order], data.items[train][order]
    bounds = np.searchsorted(users, np.arange(data.n_users + 1))
    return [items[bounds[u]:bounds[u + 1]] for u in range(data.n_users)]


def rank_by_scores(user_vecs: np.ndarray, item_factors: np.ndarray, seen: list[np.ndarray],
                   users: np.ndarray, k: int = K) -> np.ndarray:
    """Top-k per user of the factor scores, seen removed."""
    return rank_matrix(lambda chunk: user_vecs[chunk] @ item_factors.T, seen, users, k)


def rank_matrix(score_rows: Callable[[np.ndarray], np.ndarray], seen: list[np.ndarray],
                users: np.ndarray, k: int = K) -> np.ndarray:
    """Top-k per user of any scorer (``score_rows(users chunk) -> dense scores``), seen removed."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), BATCH):
        chunk = users[start:start + BATCH]
        scores = np.array(score_rows(chunk), dtype=np.float64)
        for row, u in enumerate(chunk):
            scores[row, seen[u]] = -np.inf
        best, _ = top_k_rows(scores, k)   # the serving path's own top-k: one definition
        out[start:start + len(chunk), :best.shape[1]] = best
    return out


def transition_queries(data: Interactions, train: np.ndarray, tp: TransitionParams) -> sp.csr_matrix:
    """users x items: 1 for each item of the user's latest active training day."""
    rows: list[int] = []
    cols: list[int] = []
    for user, items, times in user_histories(data.users[train], data.items[train], data.ts[train]):
        latest = latest_day_items(zip(items, times), tp.day_s)
        rows.extend([user] * len(latest))
        cols.extend(latest)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                         shape=(data.n_users, data.n_items))


def evaluate(data: Interactions, params: ALSParams, *, progress: Optional[Callable[[str], None]] = None,
             transitions: TransitionParams = TransitionParams(),
             blend_weights: tuple[float, float] = (BLEND_ALS_WEIGHT, BLEND_TRANSITIONS_WEIGHT),
             max_successors: int = MAX_SUCCESSORS,
             ) -> tuple[list[Quality], float]:
    say = progress or (lambda s: None)
    train, test_row = leave_last_out(data)
    users = np.flatnonzero(test_row >= 0)
    target = data.items[test_row[users]]
    seen = _seen_lists(data, train)

    say(f"training ALS ({params.factors} factors, {params.iterations} iterations) on {int(train.sum())} interactions")
    user_f, item_f, seconds = train_als(data.matrix(train), params, show_progress=progress is not None)
    results = [_metrics("als", rank_by_scores(user_f, item_f, seen, users), target, data.n_items)]

    say("item transitions from the training histories")
    counts = TransitionCounts.capped(counts_from_histories(
        data.users[train], data.items[train], data.ts[train], data.n_items, transitions), max_successors).matrix
    queries = transition_queries(data, train, transitions)

    def trans_rows(chunk: np.ndarray) -> np.ndarray:
        return score_matrix(queries[chunk], counts, transitions)

    results.append(_metrics("transitions", rank_matrix(trans_rows, seen, users), target, data.n_items))
    wa, wt = blend_weights

    def blend_rows(chunk: np.ndarray) -> np.ndarray:
        return blend(user_f[chunk] @ item_f.T, trans_rows(chunk), als_weight=wa, transitions_weight=wt)

    results.append(_metrics("als+transitions", rank_matrix(blend_rows, seen, users), target, data.n_items))

    say("most popular")
    counts = np.bincount(data.items[train], weights=data.weights[train], minlength=data.n_items)
    pop_order = np.argsort(-counts, kind="stable")
    ranked = np.full((len(users), K), -1, dtype=np.int64)
    for row, u in enumerate(users):
        s = set(seen[u].tolist())
        ranked[row] = [i for i in pop_order[: K + len(s)] if i not in s][:K]
    results.append(_metrics("most_popular", ranked, target, data.n_items))

    say("popularity x category affinity (the streaming core's first strategy)")
    results.append(_metrics("popular_affinity", _affinity_ranking(data, train, users), target, data.n_items))
    return results, seconds


def _affinity_ranking(data: Interactions, train: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Run the real strategy: profiles and a popularity index folded from the training events."""
    cfg = ProfileConfig()
    index = PopularityIndex(window_s=10**12, bucket_s=10**12, refresh_s=0)
    entries: dict[int, dict] = {}
    profiles: dict[int, dict] = {}
    rows = np.flatnonzero(train)
    for n, r in enumerate(rows):
        u, i = int(data.users[r]), int(data.items[r])
        pid, cat = data.item_ids[i], data.item_category[i]
        ev = Event("purchase", f"e{r}", data.user_ids[u], float(data.ts[r]), product_id=pid, category=cat)
        prof = profiles.setdefault(u, new_profile(data.user_ids[u]))
        apply_event(prof, ev, None, cfg)
        entry = entries.setdefault(i, new_entry(pid))
        apply_to_entry(entry, ts=0.0, weight=float(data.weights[r]), category=cat, source=None,
                       bucket_s=10**12, retention_s=10**12)
    index.put_many((entry_key(data.item_ids[i], 0), e) for i, e in entries.items())
    item_index = {pid: i for i, pid in enumerate(data.item_ids)}
    ranked = np.full((len(users), K), -1, dtype=np.int64)
    for row, u in enumerate(users):
        items, _ = popular_affinity(profiles.get(int(u)), index, K)
        ranked[row, : len(items)] = [item_index[it["product_id"]] for it in items]
    return ranked
