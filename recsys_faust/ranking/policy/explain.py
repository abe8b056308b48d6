"""``?explain=true``: each recommended item with the user's items that brought it.

- ``als``: the user's interactions with the largest exact shares of the item's ALS score
  (ranking/maths/explain.py); the shares of all of them sum to ``als_score``.
- ``transitions``: the items of the user's latest active day whose successor counts (streamed,
  or shipped with the model: the larger, as the ranking takes them) include the item.

Computed at answer time for the items answered (a few), never stored: off by default, and its
cost is measured by the bench's explain row.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ...profiles.profile import ROW_KIND, ROW_PRODUCT, ROW_RATING, Profile
from ...settings import EventWeights
from ...transitions.index import TransitionIndex, query_items
from ..maths.explain import als_shares
from ..model.active import ActiveModel

#: Reasons given per item and per kind (explicit: an answer stays small).
REASONS = 2


def explain(items: Sequence[str], profile: Optional[Profile], active: Optional[ActiveModel],
            transitions: TransitionIndex, weights: EventWeights) -> dict[str, dict[str, Any]]:
    """``{product_id: {"because": [...], "als_score": float}}`` for each of ``items``."""
    out: dict[str, dict[str, Any]] = {pid: {"because": []} for pid in items}
    recent = (profile or {}).get("recent") or []
    if not recent:
        return out
    if active is not None:
        _als(out, items, recent, active, weights)
    _transitions(out, items, recent, active, transitions)
    return out


def _als(out: dict[str, dict[str, Any]], items: Sequence[str], recent: list, active: ActiveModel,
         weights: EventWeights) -> None:
    merged: dict[int, float] = {}    # as ranking/runtime/pack.py merges a profile's rows
    kinds: dict[int, str] = {}
    for r in recent:
        i = active.index.get(r[ROW_PRODUCT])
        if i is not None:
            merged[i] = merged.get(i, 0.0) + weights.als_weight(r[ROW_KIND], r[ROW_RATING])
            kinds[i] = r[ROW_KIND]
    targets = [(pid, active.index[pid]) for pid in items if pid in active.index]
    if not merged or not targets:
        return
    idx = np.fromiter(merged, dtype=np.int64)
    shares = als_shares(active.foldin, idx, np.fromiter(merged.values(), dtype=np.float64),
                        np.asarray([t for _, t in targets]))
    for (pid, _), row in zip(targets, shares):
        out[pid]["als_score"] = round(float(row.sum()), 6)
        for j in np.argsort(-row)[:REASONS]:
            if row[j] > 0:
                out[pid]["because"].append({"product_id": str(active.item_ids[idx[j]]), "via": "als",
                                            "kind": kinds[int(idx[j])], "share": round(float(row[j]), 6)})


def _transitions(out: dict[str, dict[str, Any]], items: Sequence[str], recent: list,
                 active: Optional[ActiveModel], transitions: TransitionIndex) -> None:
    shipped = active.transitions if active is not None else None
    found: dict[str, list[tuple[int, str]]] = {}
    for q in query_items(recent):
        counts = dict(transitions.successors(q))
        qi = active.index.get(q) if active is not None else None
        if shipped is not None and qi is not None:
            cols, values = shipped.row(qi)
            for c, v in zip(cols.tolist(), values.tolist()):
                pid = str(active.item_ids[c])
                counts[pid] = max(counts.get(pid, 0), int(v))
        for pid in items:
            n = counts.get(pid, 0)
            if n > 0:
                found.setdefault(pid, []).append((n, q))
    for pid, reasons in found.items():
        for n, q in sorted(reasons, key=lambda r: (-r[0], r[1]))[:REASONS]:
            out[pid]["because"].append({"product_id": q, "via": "transitions", "count": n})
