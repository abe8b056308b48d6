"""The popularity strategies, pure: the fallback when neither ALS nor transitions has anything.

An item's score is its trending score times ``1 + boost * share`` where ``share`` is the user's
share of affinity for the item's category; items the user has already interacted with are
removed. Users with no category affinity get plain trending (``popular``).
"""

from __future__ import annotations

from typing import Any, Optional

from ...popularity.trending import PopularityIndex
from ...profiles.profile import Profile, seen_items, top_categories
from ..items import Item, from_ranked, ranked_item
from ..strategies import STRATEGY_AFFINITY, STRATEGY_POPULAR



def popular_affinity(
    profile: Optional[Profile],
    index: PopularityIndex,
    n: int,
    *,
    boost: float = 1.0,
    n_categories: int = 3,
) -> tuple[list[Item], str]:
    """Up to ``n`` ranked items for this user and the strategy that produced them."""
    seen = seen_items(profile)
    cats = dict(top_categories(profile, n_categories))
    if not cats:
        return from_ranked(index.top(n, exclude=seen)), STRATEGY_POPULAR
    # Candidates: the overall head plus the head of each favourite category; an item outside
    # both cannot outrank them, because boosting only multiplies scores up.
    cands: dict[str, Any] = {}
    for r in index.top(n, exclude=seen):
        cands[r.product_id] = r
    for cat in cats:
        for r in index.top(n, category=cat, exclude=seen):
            cands[r.product_id] = r
    scored = []
    for pos, r in enumerate(sorted(cands.values(), key=lambda r: _rank_key(index, r))):
        share = cats.get(r.category, 0.0) if r.category else 0.0
        scored.append((round(r.score * (1.0 + boost * share), 6), pos, r))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [ranked_item(r.product_id, s, r.category) for s, _, r in scored[:n]], STRATEGY_AFFINITY


def _rank_key(index: PopularityIndex, r: Any) -> int:
    """The index's own order (trending score, all-time weight, id) breaks ties."""
    return index.rank_of(r.product_id)
