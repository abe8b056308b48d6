"""A user's state -> a ranked list: the one place the strategies are chosen and combined.

The event processor asks it for a micro-batch's query (``pack``: scored in the scoring process)
and for the lists of users the model cannot score (``fallback``); the read path asks it for a
live list (``build_list``: a category filter, or a user without a ready list). Both therefore
rank exactly alike. Strategies, in order (``strategies.py``): the blend of the ALS fold-in and
the user's transitions, either alone, then popularity x category affinity, then popularity.
"""

from __future__ import annotations

from typing import Optional


from ...popularity.trending import PopularityIndex
from ...profiles.profile import Profile, seen_items
from ...settings import Settings
from ..model.active import ActiveModel, ModelHolder
from ..items import Item, from_ranked, ranked_item
from .popular import popular_affinity
from ..runtime.ready_values import Columns, columns_of, row_strategies, score_model
from ..runtime.pack import PackSpec, pack_profiles
from ..maths.scores import BatchQuery
from ..strategies import STRATEGY_AFFINITY, STRATEGY_POPULAR, STRATEGY_TRANSITIONS
from ...transitions.index import TransitionIndex, query_items
from .variants import Variant, assign

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
        self.blend_weights = (settings.ranking.blend_als_weight, settings.ranking.blend_transitions_weight)
        self.variants: tuple[Variant, ...] = settings.ranking.variants  # an A/B test (ranking/policy/variants.py), or ()

    def variant_of(self, user_id: Optional[str]) -> Optional[Variant]:
        """The user's A/B variant; None when no test runs."""
        return assign(user_id, self.variants) if self.variants and user_id is not None else None

    def weights_for(self, user_id: Optional[str]) -> tuple[float, float]:
        """The (ALS, transitions) blend weights the user's lists are ranked with."""
        variant = self.variant_of(user_id)
        return self.blend_weights if variant is None else variant.blend_weights(self.blend_weights)

    # -- the model path: fold-in + transitions + blend ------------------------------------------
    def pack_spec(self, *, n: Optional[int] = None, blend_weights: Optional[tuple[float, float]] = None) -> PackSpec:
        return PackSpec(self.settings.popularity.weights, n or self.settings.ranking.rec_list_size, blend_weights or self.blend_weights)

    def pack(self, active: ActiveModel, profiles: list[Optional[Profile]], *, n: Optional[int] = None,
             category: Optional[str] = None, blend_weights: Optional[tuple[float, float]] = None
             ) -> tuple[list[int], BatchQuery]:
        """The profiles the model can score (their positions) and their packed query
        (``pack.pack_profiles``, against this worker's transition index)."""
        item_arrays = self.transitions.item_arrays
        return pack_profiles(
            profiles, self.pack_spec(n=n, blend_weights=blend_weights), index=active.index,
            shipped_indptr=active.transitions.matrix.indptr if active.transitions is not None else None,
            item_arrays=lambda pid: item_arrays(pid, active),
            allowed=None if category is None else active.categories == category)

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
        n = n or self.settings.ranking.rec_list_size
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
        return popular_affinity(profile, self.popularity, n, boost=self.settings.ranking.affinity_boost)

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
