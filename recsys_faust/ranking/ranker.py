"""A user's state -> a ranked list: the one place the strategies are chosen and combined.

The event processor asks it for a micro-batch's query (``pack``: scored in the scoring process)
and for the lists of users the model cannot score (``fallback``); the read path asks it for a
live list (``build_list``: a category filter, or a user without a ready list). Both therefore
rank exactly alike. Strategies, in order (``strategies.py``): the blend of the ALS fold-in and
the user's transitions, either alone, then popularity x category affinity, then popularity.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..popularity.trending import PopularityIndex
from ..profiles.profile import ROW_KIND, ROW_PRODUCT, ROW_RATING, Profile, seen_items
from ..settings import Settings
from .active import ActiveModel, ModelHolder
from .items import Item, from_ranked, ranked_item
from .popular import popular_affinity
from .ready_values import Columns, columns_of, row_strategies, score_model
from .scoring import BatchQuery
from .strategies import STRATEGY_AFFINITY, STRATEGY_POPULAR, STRATEGY_TRANSITIONS
from .transition_index import TransitionIndex, query_items
from .variants import Variant, assign

_EMPTY_I = np.zeros(0, dtype=np.int32)
_EMPTY_F = np.zeros(0, dtype=np.float32)


def to_columns(items: list[Item]) -> Columns:
    return ([i["product_id"] for i in items], [i["score"] for i in items],
            [i.get("category") or "" for i in items])


def to_items(columns: Columns) -> list[Item]:
    return [ranked_item(p, s, c) for p, s, c in zip(*columns)]


class Ranker:
    def __init__(self, settings: Settings, popularity: PopularityIndex, transitions: TransitionIndex,
                 models: ModelHolder) -> None:
        self.settings = settings
        self.popularity = popularity
        self.transitions = transitions
        self.models = models
        self.blend_weights = (settings.blend_als_weight, settings.blend_transitions_weight)
        self.variants: tuple[Variant, ...] = settings.variants  # an A/B test (ranking/variants.py), or ()

    def variant_of(self, user_id: Optional[str]) -> Optional[Variant]:
        """The user's A/B variant; None when no test runs."""
        return assign(user_id, self.variants) if self.variants and user_id is not None else None

    def weights_for(self, user_id: Optional[str]) -> tuple[float, float]:
        """The (ALS, transitions) blend weights the user's lists are ranked with."""
        variant = self.variant_of(user_id)
        return self.blend_weights if variant is None else variant.blend_weights(self.blend_weights)

    # -- the model path: fold-in + transitions + blend ------------------------------------------
    def pack(self, active: ActiveModel, profiles: list[Optional[Profile]], *, n: Optional[int] = None,
             category: Optional[str] = None, blend_weights: Optional[tuple[float, float]] = None
             ) -> tuple[list[int], BatchQuery]:
        """The profiles the model can score (their positions) and their packed query.

        A profile is scored when the model knows one of its items (fold-in) or one of its
        latest day's items has successors (shipped with the model or streamed) in the catalogue.
        """
        index, weights = active.index, self.settings.weights
        blend = blend_weights or self.blend_weights
        use_transitions = blend[1] > 0
        shipped_ptr = active.transitions.matrix.indptr if active.transitions is not None else None
        item_arrays = self.transitions.item_arrays
        rows: list[int] = []
        items: list[int] = []
        conf: list[float] = []
        offsets = [0]
        seen: list[int] = []
        seen_offsets = [0]
        t_query: list[int] = []
        t_query_offsets = [0]
        t_items: list[np.ndarray] = []
        t_scores: list[np.ndarray] = []
        t_slot_offsets = [0]
        streamed = 0
        get = index.get
        # ALS weight per (kind, rating): a handful of pairs, computed once per batch.
        weight_of: dict[tuple[str, Any], float] = {}
        for pos, p in enumerate(profiles):
            recent = p["recent"] if p else None
            if not recent:
                continue
            merged: dict[int, float] = {}
            for r in recent:
                i = get(r[ROW_PRODUCT])
                if i is not None:
                    key = (r[ROW_KIND], r[ROW_RATING])
                    w = weight_of.get(key)
                    if w is None:
                        w = weight_of[key] = weights.als_weight(*key)
                    merged[i] = merged.get(i, 0.0) + w
            slots = len(t_query)
            if use_transitions:
                for pid in query_items(recent):
                    i = get(pid)
                    has = shipped_ptr is not None and i is not None and shipped_ptr[i + 1] > shipped_ptr[i]
                    idx, counts = item_arrays(pid, active)
                    if len(idx):
                        t_items.append(idx)
                        t_scores.append(counts)
                        streamed += len(idx)
                        has = True
                    if has:
                        t_query.append(-1 if i is None else i)
                        t_slot_offsets.append(streamed)
            if not merged and len(t_query) == slots:
                continue
            rows.append(pos)
            items.extend(merged)
            conf.extend(merged.values())
            offsets.append(len(items))
            # Every recent item the model knows is in ``merged``: exactly the seen items to mask.
            seen.extend(merged)
            seen_offsets.append(len(seen))
            t_query_offsets.append(len(t_query))
        has_t = bool(t_query)
        q = BatchQuery(np.asarray(items, dtype=np.int64), np.asarray(conf, dtype=np.float64),
                       np.asarray(offsets, dtype=np.int64), np.asarray(seen, dtype=np.int64),
                       np.asarray(seen_offsets, dtype=np.int64), n or self.settings.rec_list_size,
                       None if category is None else active.categories == category,
                       trans_query=np.asarray(t_query, dtype=np.int64) if has_t else None,
                       trans_query_offsets=np.asarray(t_query_offsets, dtype=np.int64) if has_t else None,
                       trans_items=np.concatenate(t_items) if t_items else (_EMPTY_I if has_t else None),
                       trans_scores=np.concatenate(t_scores) if t_scores else (_EMPTY_F if has_t else None),
                       trans_slot_offsets=np.asarray(t_slot_offsets, dtype=np.int64) if has_t else None,
                       blend_weights=blend)
        return rows, q

    def score(self, active: ActiveModel, profiles: list[Optional[Profile]], *, n: Optional[int] = None,
              category: Optional[str] = None, blend_weights: Optional[tuple[float, float]] = None
              ) -> list[Optional[tuple[Columns, str]]]:
        """(columns, strategy) per profile from ``active``, here and now (None where it has
        nothing for the profile): a live list, or a test's reference for the scorers."""
        out: list[Optional[tuple[Columns, str]]] = [None] * len(profiles)
        rows, q = self.pack(active, profiles, n=n, category=category, blend_weights=blend_weights)
        if rows:
            result = score_model(active.scoring, q)
            for pos, columns, strategy in zip(rows, columns_of(active.scoring.catalogue, result), row_strategies(q)):
                out[pos] = (columns, strategy)
        return out

    # -- without the model -----------------------------------------------------------------------
    def fallback(self, profile: Optional[Profile], n: Optional[int] = None,
                 category: Optional[str] = None, blend_weights: Optional[tuple[float, float]] = None
                 ) -> tuple[Columns, str]:
        """The list of a user the model cannot score (event loop only): their transitions over
        every streamed item (with no model, or for items the model lacks), the rest of the list
        filled from popularity with score 0 (so a user with three successors still gets a full
        list, ranked transitions first); popularity alone when there are no transitions."""
        n = n or self.settings.rec_list_size
        seen = seen_items(profile)
        popular, strategy = self._popular(profile, n, category, seen)
        if profile and profile["recent"] and (blend_weights or self.blend_weights)[1] > 0:
            scores: dict[str, float] = {}
            for pid in query_items(profile["recent"]):
                for item, count in self.transitions.successors(pid).items():
                    if item not in seen:
                        scores[item] = scores.get(item, 0) + count
            if scores:
                cat_of = self.popularity.category_of
                ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
                chosen = [ranked_item(pid, float(c), cat_of(pid))
                          for pid, c in ranked if category is None or cat_of(pid) == category][:n]
                if chosen:
                    taken = {i["product_id"] for i in chosen}
                    chosen += [{**i, "score": 0.0} for i in popular if i["product_id"] not in taken]
                    return to_columns(chosen[:n]), STRATEGY_TRANSITIONS
        return to_columns(popular), strategy

    def _popular(self, profile: Optional[Profile], n: int, category: Optional[str],
                 seen: set[str]) -> tuple[list[Item], str]:
        if category:
            ranked = self.popularity.top(n, category=category, exclude=seen)
            return (from_ranked(ranked),
                    STRATEGY_AFFINITY if profile and profile.get("affinity") else STRATEGY_POPULAR)
        return popular_affinity(profile, self.popularity, n, boost=self.settings.affinity_boost)

    def build_list(self, profile: Optional[Profile], n: int, *,
                   category: Optional[str] = None) -> tuple[list[Item], str]:
        """One user's list, live, by the strategies in order (those of the user's A/B variant)."""
        active = self.models.active
        variant = self.variant_of(profile["user_id"]) if profile else None
        weights = variant.blend_weights(self.blend_weights) if variant is not None else None
        if active is not None and profile and (variant is None or variant.uses_model):
            scored = self.score(active, [profile], n=n, category=category, blend_weights=weights)[0]
            if scored is not None:
                return to_items(scored[0]), scored[1]
        columns, strategy = self.fallback(profile, n, category, blend_weights=weights)
        return to_items(columns), strategy
