"""Answers from table state: the ready list when it serves the query, else computed live.

Shared by the HTTP views and the request/response agent so both give the same answer.
Tables are passed in as mappings (``.get``), which keeps this testable without Faust.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Optional

import numpy as np

from ..model.scoring import BatchQuery, BatchResult, score_batch
from ..model.serving import STRATEGY_ALS, ActiveModel, ModelHolder
from ..popularity.trending import PopularityIndex
from ..profiles.profile import seen_items
from ..settings import Settings
from .ready_values import Columns, columns_of
from .recommend import POPULARITY_MODEL_VERSION, answer, popular_affinity, select


def to_columns(items: list[dict]) -> Columns:
    return ([i["product_id"] for i in items], [i["score"] for i in items],
            [i.get("category") or "" for i in items])


def from_columns(ready: Mapping[str, Any]) -> Iterator[dict]:
    """The stored columns as item dicts, lazily: a query usually reads only the first few."""
    for pid, score, cat in zip(ready["ids"], ready["scores"], ready["categories"]):
        yield {"product_id": pid, "score": score, "category": cat}


class Recommender:
    def __init__(
        self,
        settings: Settings,
        profiles: Mapping[str, Any],
        ready_lists: Mapping[str, Any],
        index: PopularityIndex,
        models: Optional[ModelHolder] = None,
    ) -> None:
        self.settings = settings
        self.profiles = profiles
        self.ready_lists = ready_lists
        self.index = index
        self.models = models or ModelHolder()
        # Ready lists generated before this wall-clock time are not served (POST /api/clear-cache,
        # cluster-wide through the control topic); each is rebuilt on the user's next event.
        self.cache_epoch = 0.0

    def clear_cache(self, epoch: float) -> None:
        """Stop serving ready lists older than ``epoch`` (never moves back)."""
        self.cache_epoch = max(self.cache_epoch, float(epoch))

    @property
    def model_version(self) -> str:
        active = self.models.active
        return active.version if active is not None else POPULARITY_MODEL_VERSION

    def build_list(self, profile: Optional[dict], n: int, *, category: Optional[str] = None) -> tuple[list[dict], str]:
        """One user's list, live: ALS when a model knows the user's items, else popularity."""
        active = self.models.active
        if active is not None and profile:
            scored = self.als_lists(active, [profile], n=n, category=category)[0]
            if scored is not None:
                ids, scores, cats = scored[0]
                return ([{"product_id": i, "score": s, "category": c} for i, s, c in zip(ids, scores, cats)],
                        STRATEGY_ALS)
        if category:
            return self._category_list(profile, category, n)
        return popular_affinity(profile, self.index, n, boost=self.settings.affinity_boost)

    def pack(self, active: ActiveModel, profiles: list[dict], *, n: Optional[int] = None,
             category: Optional[str] = None) -> tuple[list[int], BatchQuery]:
        """The profiles the model can score (their positions) and their packed query."""
        index, weights = active.index, self.settings.weights
        rows: list[int] = []
        items: list[int] = []
        conf: list[float] = []
        offsets = [0]
        seen: list[int] = []
        seen_offsets = [0]
        get = index.get
        # ALS weight per (kind, rating): a handful of pairs, computed once per batch.
        weight_of: dict[tuple[str, Any], float] = {}
        for pos, p in enumerate(profiles):
            recent = p["recent"] if p else None
            if not recent:
                continue
            merged: dict[int, float] = {}
            for r in recent:
                i = get(r[0])
                if i is not None:
                    key = (r[1], r[4] if len(r) > 4 else None)
                    w = weight_of.get(key)
                    if w is None:
                        w = weight_of[key] = weights.als_weight(*key)
                    merged[i] = merged.get(i, 0.0) + w
            if not merged:
                continue
            rows.append(pos)
            items.extend(merged)
            conf.extend(merged.values())
            offsets.append(len(items))
            # Every recent item the model knows is in ``merged``: exactly the seen items to mask.
            seen.extend(merged)
            seen_offsets.append(len(seen))
        q = BatchQuery(np.asarray(items, dtype=np.int64), np.asarray(conf, dtype=np.float64),
                       np.asarray(offsets, dtype=np.int64), np.asarray(seen, dtype=np.int64),
                       np.asarray(seen_offsets, dtype=np.int64), n or self.settings.rec_list_size,
                       None if category is None else active.categories == category)
        return rows, q

    @staticmethod
    def unpack(active: ActiveModel, n_profiles: int, rows: list[int],
               result: BatchResult) -> list[Optional[tuple[Columns, list[float]]]]:
        """(columns, vector) per profile, None for those the model could not score."""
        out: list[Optional[tuple[Columns, list[float]]]] = [None] * n_profiles
        vectors = np.round(result.vectors.astype(np.float64), 6).tolist()
        for pos, columns, vector in zip(rows, columns_of(active.scoring.catalogue, result), vectors):
            out[pos] = (columns, vector)
        return out

    def als_lists(self, active: Optional[ActiveModel], profiles: list[dict], *, n: Optional[int] = None,
                  category: Optional[str] = None) -> list[Optional[tuple[Columns, list[float]]]]:
        """(columns, vector) per profile from ``active`` (None where it knows none of the items):
        a micro-batch's ready lists, or one live list (``n``, ``category``)."""
        if active is None:
            return [None] * len(profiles)
        rows, q = self.pack(active, profiles, n=n, category=category)
        if not rows:
            return [None] * len(profiles)
        return self.unpack(active, len(profiles), rows, score_batch(active.foldin, q))

    def popular_columns(self, profile: Optional[dict]) -> tuple[Columns, str]:
        """The popularity-based ready list of a user the model cannot score (event loop only)."""
        items, strategy = popular_affinity(profile, self.index, self.settings.rec_list_size,
                                          boost=self.settings.affinity_boost)
        return to_columns(items), strategy

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        category: Optional[str] = None,
        exclude: Iterable[str] = (),
    ) -> dict[str, Any]:
        exclude = tuple(exclude)
        ready = self.ready_lists.get(user_id)
        # An entry without "ids" predates the columnar format, one older than the cache epoch was
        # cleared: both are computed live below, like a miss.
        if (ready is not None and ready["model_version"] == self.model_version and "ids" in ready
                and ready["generated_at"] >= self.cache_epoch):
            # A list shorter than its size limit already held every candidate there was.
            holds_all = len(ready["ids"]) < self.settings.rec_list_size
            if not exclude and not category and (len(ready["ids"]) >= k or holds_all):
                # The common request: the head of the ranked list as it is stored.
                return {
                    "user_id": user_id,
                    "items": [{"product_id": p, "score": s} for p, s in zip(ready["ids"][:k], ready["scores"][:k])],
                    "model_version": ready["model_version"],
                    "strategy": ready["strategy"],
                    "generated_at": ready["generated_at"],
                }
            chosen = select(from_columns(ready), k, exclude=exclude, category=category)
            if len(chosen) >= k or (holds_all and not category):
                return answer(
                    user_id, chosen, strategy=ready["strategy"],
                    model_version=ready["model_version"], generated_at=ready["generated_at"],
                )
        # No ready list, one from an older model, or a filter it cannot serve: compute live.
        profile = self.profiles.get(user_id)
        need = max(k + len(exclude), self.settings.rec_list_size)
        items, strategy = self.build_list(profile, need, category=category)
        chosen = select(items, k, exclude=exclude, category=category)
        return answer(user_id, chosen, strategy=strategy, model_version=self.model_version)

    def _category_list(self, profile: Optional[dict], category: str, n: int) -> tuple[list[dict], str]:
        seen = seen_items(profile)
        ranked = self.index.top(n, category=category, exclude=seen)
        items = [{"product_id": r.product_id, "score": r.score, "category": r.category} for r in ranked]
        return items, ("popular_affinity" if profile and profile.get("affinity") else "popular")

    def similar(self, product_id: str, k: int) -> Optional[list[dict]]:
        active = self.models.active
        return None if active is None else active.similar(product_id, k)

    def trending(self, k: int = 10, category: Optional[str] = None) -> dict[str, Any]:
        ranked = self.index.top(k, category=category)
        return {
            "items": [
                {"product_id": r.product_id, "score": r.score, "category": r.category} for r in ranked
            ],
            "window_s": self.index.window_s,
            "window_end": self.index.clock,
            "category": category,
        }
