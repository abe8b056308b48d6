"""Offline quality: leave-last-out, full-catalogue ranking, seen items removed.

ALS against two baselines computed on the same split: most-popular and the streaming core's
first strategy (popularity x category affinity, ``serving.recommend.popular_affinity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..events.model import Event
from ..popularity.trending import PopularityIndex, apply_to_entry, new_entry
from ..profiles.profile import ProfileConfig, apply_event, new_profile
from ..serving.recommend import popular_affinity
from .als import ALSParams, train_als
from .dataset import Interactions, leave_last_out

K = 10
BATCH = 1024


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
    out = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), BATCH):
        chunk = users[start:start + BATCH]
        scores = user_vecs[chunk] @ item_factors.T
        for row, u in enumerate(chunk):
            scores[row, seen[u]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        out[start:start + len(chunk)] = np.take_along_axis(part, order, axis=1)
    return out


def evaluate(data: Interactions, params: ALSParams, *, progress: Optional[Callable[[str], None]] = None,
             kind: str = "purchase") -> tuple[list[Quality], float]:
    say = progress or (lambda s: None)
    train, test_row = leave_last_out(data)
    users = np.flatnonzero(test_row >= 0)
    target = data.items[test_row[users]]
    seen = _seen_lists(data, train)

    say(f"training ALS ({params.factors} factors, {params.iterations} iterations) on {int(train.sum())} interactions")
    user_f, item_f, seconds = train_als(data.matrix(train), params, show_progress=progress is not None)
    results = [_metrics("als", rank_by_scores(user_f, item_f, seen, users), target, data.n_items)]

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
    index.put_many((f"{data.item_ids[i]}@0", e) for i, e in entries.items())
    item_index = {pid: i for i, pid in enumerate(data.item_ids)}
    ranked = np.full((len(users), K), -1, dtype=np.int64)
    for row, u in enumerate(users):
        items, _ = popular_affinity(profiles.get(int(u)), index, K)
        ranked[row, : len(items)] = [item_index[it["product_id"]] for it in items]
    return ranked
