"""The ranked item: the one shape every list, answer and similar-items query is built from.

A ranked list is held as dicts ``{"product_id", "score", "category"}`` while it is filtered
(``category`` is what the category filter reads) and answered as ``{"product_id", "score"}``
(the contract's item shape, docs/contract.md). Both are built here so that a field added to the
contract is added in one place.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

Item = dict[str, Any]  # {"product_id": str, "score": float, "category": str}


def ranked_item(product_id: str, score: float, category: Optional[str] = None) -> Item:
    """An item of a ranked list (stored columns turn a missing category into ``""``)."""
    return {"product_id": product_id, "score": score, "category": category}


def answered_item(product_id: str, score: float) -> Item:
    """An item as the contract answers it."""
    return {"product_id": product_id, "score": score}


def answered(items: Iterable[Item]) -> list[Item]:
    return [{"product_id": i["product_id"], "score": i["score"]} for i in items]


def from_ranked(ranked: Iterable[Any]) -> list[Item]:
    """Items from ``PopularityIndex.top``'s ``Ranked`` tuples."""
    return [ranked_item(r.product_id, r.score, r.category) for r in ranked]
