"""What erasing one user changes: the mark that outlives them, and their contributions to the
item state (transition counts exactly, popularity where the buckets still hold them).

Pure functions of the user's profile and transition history, so the write path applies them as
it applies events (ingest/erase.py) and the tests check them against independent counts.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Optional

from ..popularity.trending import entry_key as popularity_key
from ..profiles.profile import ROW_KIND, ROW_PRODUCT, ROW_RATING, ROW_TS
from ..settings import EventWeights
from ..transitions import index as tix

#: The mark's key prefix in the ``erasures`` table (one key per erased user, on their partition).
MARK_PREFIX = "e\x1f"
MARK_END = "e\x20"
#: Interaction kinds a profile row may hold (the others never reach popularity or transitions).
_INTERACTIONS = ("view", "purchase", "review")


def user_hash(user_id: str) -> str:
    """The user id's SHA-256 (hex): what the mark and the sink's audit row keep instead of the id,
    so no table holds the erased id itself."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def mark_key(user_id: str) -> str:
    return MARK_PREFIX + user_hash(user_id)


def erased_before(mark: Optional[float], ts: float) -> bool:
    """Whether a record of event time ``ts`` is the erased user's old one (dropped, never applied)."""
    return mark is not None and ts < mark


def transition_changes(history: Optional[Mapping[str, Any]], partition: int,
                       day_s: int = tix.DAY_S) -> dict[str, dict[str, int]]:
    """The count changes that take the user's history back out: ``{entry key: {successor: -n}}``."""
    if not history:
        return {}
    out: dict[str, dict[str, int]] = {}
    for src, dsts in tix.contributions(history, day_s).items():
        out[tix.entry_key(src, partition)] = {dst: -n for dst, n in dsts.items()}
    return out


def popularity_removals(profile: Optional[Mapping[str, Any]], partition: int,
                        weights: EventWeights) -> dict[str, list[tuple[float, float]]]:
    """``{popularity entry key: [(ts, weight), ...]}`` of the interactions the profile still
    holds (its newest ``profile_recent_items``): what can be taken back out of popularity."""
    out: dict[str, list[tuple[float, float]]] = {}
    for row in (profile or {}).get("recent") or ():
        kind = row[ROW_KIND]
        if kind not in _INTERACTIONS:
            continue
        rating = row[ROW_RATING] if len(row) > ROW_RATING else None
        out.setdefault(popularity_key(row[ROW_PRODUCT], partition), []).append(
            (float(row[ROW_TS]), weights.weight(kind, rating)))
    return out
