"""Answers from table state: the ready list when it serves the query, else computed live.

Shared by the HTTP views and the request/response agent so both give the same answer.
Tables are passed in as mappings (``.get``), which keeps this testable without Faust. Lists are
ranked by ``ranking.Ranker``; this module only reads.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional

from ..catalogue.rules import Rules
from ..ranking.items import answered, answered_item, from_ranked, ranked_item
from ..ranking.policy.ranker import Ranker
from ..ranking.strategies import POPULARITY_MODEL_VERSION
from ..settings import RankingSettings
from .recommend import answer, select

#: The kinds of ``GET /api/products/{id}/similar``: factor similarity, and what users took next.
SIMILAR_KINDS = ("factors", "next")
#: The most candidates asked for to fill k items past hidden ones (explicit: a catalogue hiding
#: most items makes answers shorter rather than unbounded work).
MAX_CANDIDATES = 10_000


def take_visible(fetch: Callable[[int], list[dict]], k: int, rules: Rules,
                 category: Optional[str] = None) -> list[dict]:
    """The first ``k`` items of ``fetch(n)`` left by the rules (of ``category`` by the rules'
    categories, if given), asking for more while fewer than ``k`` are left and more exist."""
    n = k
    while True:
        items = fetch(n)
        kept = rules.apply(items)
        if category:
            kept = [it for it in kept if it.get("category") == category]
        if len(kept) >= k or len(items) < n or n >= MAX_CANDIDATES:
            return kept[:k]
        n = min(MAX_CANDIDATES, n * 4)


def from_columns(ready: Mapping[str, Any]) -> Iterator[dict]:
    """The stored columns as item dicts, lazily: a query usually reads only the first few."""
    for pid, score, cat in zip(ready["ids"], ready["scores"], ready["categories"]):
        yield ranked_item(pid, score, cat)


class Answer(NamedTuple):
    """An answer, and ``stale``: the user had no ready list of the serving model (none yet, an
    older model's, or one cleared), so the answer was ranked live and ranking the user again
    would make one. (A filter the ready list cannot serve is ranked live too, but not stale.)"""

    body: dict[str, Any]
    stale: bool


class Recommender:
    def __init__(
        self,
        ranking: RankingSettings,
        profiles: Mapping[str, Any],
        ready_lists: Mapping[str, Any],
        ranker: Ranker,
        rules: Optional[Rules] = None,
    ) -> None:
        # catalogue/rules.py: applied to every answer at answer time (fed by recsys-catalogue)
        self.rules = rules if rules is not None else Rules()
        self.list_size = ranking.rec_list_size  # ready lists hold this many items
        self.profiles = profiles
        self.ready_lists = ready_lists
        self.ranker = ranker
        self.models = ranker.models
        self.index = ranker.popularity
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

    def recommend(self, user_id: str, k: int = 10, *, category: Optional[str] = None,
                  exclude: Iterable[str] = ()) -> dict[str, Any]:
        """The contract's answer; with an A/B test running, it names the user's ``variant``."""
        return self.answer(user_id, k, category=category, exclude=exclude).body

    def answer(self, user_id: str, k: int = 10, *, category: Optional[str] = None,
               exclude: Iterable[str] = ()) -> Answer:
        """``recommend`` and whether the user's ready list was stale. A stale answer's served
        record asks the user's owner to rank the user again (ingest/fold_profiles.py): after a
        model switch, a user who only reads costs one live ranking, not one per request."""
        result, stale = self._recommend(user_id, k, category=category, exclude=exclude)
        variant = self.ranker.variant_of(user_id)
        if variant is not None:
            result["variant"] = variant.name
        return Answer(result, stale)

    def _recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        category: Optional[str] = None,
        exclude: Iterable[str] = (),
    ) -> tuple[dict[str, Any], bool]:
        exclude = tuple(exclude)
        if self.rules.active:
            return self._recommend_by_rules(user_id, k, category, exclude)
        ready = self._fresh(user_id)
        if ready is not None:
            # A list shorter than its size limit already held every candidate there was.
            holds_all = len(ready["ids"]) < self.list_size
            if not exclude and not category and (len(ready["ids"]) >= k or holds_all):
                # The common request: the head of the ranked list as it is stored.
                return {
                    "user_id": user_id,
                    "items": [answered_item(p, s) for p, s in zip(ready["ids"][:k], ready["scores"][:k])],
                    "model_version": ready["model_version"],
                    "strategy": ready["strategy"],
                    "generated_at": ready["generated_at"],
                }, False
            chosen = select(from_columns(ready), k, exclude=exclude, category=category)
            if len(chosen) >= k or (holds_all and not category):
                return answer(
                    user_id, chosen, strategy=ready["strategy"],
                    model_version=ready["model_version"], generated_at=ready["generated_at"],
                ), False
        # No ready list, one from an older model, or a filter it cannot serve: compute live.
        profile = self.profiles.get(user_id)
        need = max(k + len(exclude), self.list_size)
        items, strategy = self.ranker.build_list(profile, need, category=category)
        chosen = select(items, k, exclude=exclude, category=category)
        return answer(user_id, chosen, strategy=strategy, model_version=self.model_version), ready is None

    def _fresh(self, user_id: str) -> Optional[Mapping[str, Any]]:
        """The user's ready list if it may be served: one from an older model, or older than the
        cache epoch (cleared), is computed live instead, like a miss."""
        ready = self.ready_lists.get(user_id)
        if (ready is not None and ready["model_version"] == self.model_version
                and ready["generated_at"] >= self.cache_epoch):
            return ready
        return None

    def _recommend_by_rules(self, user_id: str, k: int, category: Optional[str],
                            exclude: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
        """``_recommend`` with catalogue rules in force: the ready list (or a live one) through
        ``rules.apply``, then the exclusions and the category (the catalogue's, where it has one)."""
        ready = self._fresh(user_id)
        if ready is not None:
            chosen = select(self.rules.apply(from_columns(ready)), k, exclude=exclude, category=category)
            if len(chosen) >= k or (len(ready["ids"]) < self.list_size and not category):
                return answer(user_id, chosen, strategy=ready["strategy"], model_version=ready["model_version"],
                              generated_at=ready["generated_at"]), False
        profile = self.profiles.get(user_id)
        # the category is the catalogue's now: filtered after the rules, not by the ranker
        strategy = ""

        def fetch(n: int) -> list[dict]:
            nonlocal strategy
            items, strategy = self.ranker.build_list(profile, n)
            return items

        kept = take_visible(fetch, max(k + len(exclude), self.list_size), self.rules, category)
        chosen = select(kept, k, exclude=exclude)
        return answer(user_id, chosen, strategy=strategy, model_version=self.model_version), ready is None

    def explain(self, user_id: str, result: dict[str, Any]) -> None:
        """Add to each answered item the user's items that brought it (``because``) and its ALS
        score (ranking/policy/explain.py), in place."""
        from ..ranking.policy.explain import explain

        found = explain([it["product_id"] for it in result["items"]], self.profiles.get(user_id),
                        self.models.active, self.ranker.transitions, self.ranker.settings.popularity.weights)
        for it in result["items"]:
            it.update(found.get(it["product_id"], {"because": []}))

    def fallback(self, user_id: str, k: int, reason: str, *, category: Optional[str] = None,
                 exclude: Iterable[str] = ()) -> dict[str, Any]:
        """The answer of a worker that cannot reach the user's owner: the popular items every
        worker holds, marked ``degraded`` with the reason (the contract's cold-start shape)."""
        exclude = tuple(exclude)
        need = max(k + len(exclude), self.list_size)
        if self.rules.active:
            strategy = ""

            def fetch(n: int) -> list[dict]:
                nonlocal strategy
                items, strategy = self.ranker.build_list(None, n)
                return items

            chosen = select(take_visible(fetch, need, self.rules, category), k, exclude=exclude)
        else:
            items, strategy = self.ranker.build_list(None, need, category=category)
            chosen = select(items, k, exclude=exclude, category=category)
        result = answer(user_id, chosen, strategy=strategy, model_version=self.model_version)
        result["degraded"] = reason
        return result

    def similar(self, product_id: str, k: int, kind: str = "factors") -> Optional[dict[str, Any]]:
        """Items like ``product_id`` by ``kind`` (``SIMILAR_KINDS``); None for an unknown item.

        ``factors``: cosine similarity of the item factors (needs a model). ``next``: what users
        took after the item, from the transitions (shipped with the model and streamed).
        """
        active = self.models.active
        if kind == "next":
            known = self.ranker.transitions.knows(product_id) or (active is not None and product_id in active.index)
            if not known:
                return None
            def nexts(n: int) -> list[dict]:
                return [answered_item(p, round(c, 6)) for p, c in self.ranker.transitions.next_items(product_id, active, n)]

            items = take_visible(nexts, k, self.rules) if self.rules.active else nexts(k)
            return {"items": answered(items), "model_version": self.model_version}
        if active is None:
            raise LookupError("no ALS model is loaded yet (train --publish one)")
        if not self.rules.active:
            items = active.similar(product_id, k)
            return None if items is None else {"items": items, "model_version": active.version}
        if product_id not in active.index:
            return None
        items = take_visible(lambda n: active.similar(product_id, n) or [], k, self.rules)
        return {"items": answered(items), "model_version": active.version}

    def trending(self, k: int = 10, category: Optional[str] = None) -> dict[str, Any]:
        if self.rules.active:
            # the category filter is the catalogue's too: over the rules' categories
            items = take_visible(lambda n: from_ranked(self.index.top(n)), k, self.rules, category)
        else:
            items = from_ranked(self.index.top(k, category=category))
        return {
            "items": items,
            "window_s": self.index.window_s,
            "window_end": self.index.clock,
            "category": category,
        }
