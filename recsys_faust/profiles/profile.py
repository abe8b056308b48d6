"""The user profile: a JSON-ready dict folded from a user's events, idempotently.

A profile is the value of the ``user_profiles`` table. It is a plain dict (not a Faust Record)
so the pure core needs no Faust and the stored JSON is readable by anything. Each update
records what it applied (the source offset per topic-partition; the event ids are in their
own table, profiles/dedup.py), so the replays Faust performs after a rebalance or crash change
nothing: state is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..events.model import Event, Source
from ..settings import EventWeights, Settings, default
from .windows import WindowSpec, add_to_windows, expire_windows, window_view

Profile = dict[str, Any]

#: A row of ``profile["recent"]``: a JSON array ``[product_id, kind, ts, category, rating]``.
#: An array rather than an object because it is on every changelog record of the user (the
#: keys would add about 45 bytes a row); read its fields by these names, never by bare index.
ROW_PRODUCT, ROW_KIND, ROW_TS, ROW_CATEGORY, ROW_RATING = range(5)


@dataclass(frozen=True)
class ProfileConfig:
    recent_items: int = default("profile_recent_items")
    tumbling: WindowSpec = WindowSpec(default("tumbling_window_s"), default("tumbling_window_s"),
                                      default("tumbling_expires_s"))
    hopping: WindowSpec = WindowSpec(default("hopping_window_s"), default("hopping_step_s"),
                                     default("hopping_expires_s"))
    weights: EventWeights = EventWeights()

    @classmethod
    def from_settings(cls, s: Settings) -> "ProfileConfig":
        return cls(
            recent_items=s.profiles.profile_recent_items,
            tumbling=WindowSpec(s.profiles.tumbling_window_s, s.profiles.tumbling_window_s, s.profiles.tumbling_expires_s),
            hopping=WindowSpec(s.profiles.hopping_window_s, s.profiles.hopping_step_s, s.profiles.hopping_expires_s),
            weights=s.popularity.weights,
        )


def new_profile(user_id: str) -> Profile:
    return {
        "user_id": user_id,
        "first_seen": None,
        "last_seen": None,
        "counts": {},
        "recent": [],
        "affinity": {},
        "tumbling": {},
        "hopping": {},
        "applied": {},
    }


APPLIED = "applied"
REPLAY = "replay"          # this source offset is already in (Faust's replay after a rebalance)
DUPLICATE = "duplicate"    # another record with the same event_id is already in


def check_applied(profile: Profile, event_id: str, source: Optional[Source]) -> Optional[str]:
    """REPLAY or DUPLICATE when this event is already in the profile, else None.

    Duplicates by event_id are the ``event_ids`` table's to find (profiles/dedup.py, checked
    before this); a profile written before that table existed still holds its last event ids,
    frozen, and they are still honoured.
    """
    if source is not None:
        topic, partition, offset = source
        last = profile["applied"].get(f"{topic}:{partition}")
        if last is not None and offset <= last:
            return REPLAY
    legacy = profile.get("ids")
    if legacy and event_id in legacy:
        return DUPLICATE
    return None


def apply_event(profile: Profile, event: Event, source: Optional[Source], cfg: ProfileConfig) -> str:
    """Fold ``event`` into ``profile`` in place; returns APPLIED, or REPLAY/DUPLICATE (no change)."""
    seen = check_applied(profile, event.event_id, source)
    if seen is not None:
        return seen
    if source is not None:
        topic, partition, offset = source
        profile["applied"][f"{topic}:{partition}"] = offset

    ts = event.ts
    previous_stream_time = profile["last_seen"]  # the windows were expired at it
    profile["first_seen"] = ts if profile["first_seen"] is None else min(profile["first_seen"], ts)
    profile["last_seen"] = ts if profile["last_seen"] is None else max(profile["last_seen"], ts)
    stream_time = profile["last_seen"]

    counter = event.event_type if event.kind == "user-event" else event.kind
    counts = profile["counts"]
    counts[counter] = counts.get(counter, 0) + 1
    add_to_windows(profile["tumbling"], cfg.tumbling, ts, counter, stream_time, previous_stream_time)
    add_to_windows(profile["hopping"], cfg.hopping, ts, counter, stream_time, previous_stream_time)

    if event.is_interaction:
        recent = profile["recent"]
        recent.append([event.product_id, event.kind, ts, event.category, event.rating])
        # Newest last by event time. Among equal times the order is the funnel's, then the
        # product's, never the arrival's: events of one instant come on different topics, so
        # their arrival order differs between a live run and a rebuild from the topics, and the
        # rebuilt profile (and the rows the bound keeps) must be the same.
        if len(recent) > 1 and (recent[-2][ROW_TS] > ts or recent[-2][ROW_TS] == ts
                                and row_order(recent[-2]) > row_order(recent[-1])):
            recent.sort(key=row_order)
        if len(recent) > cfg.recent_items:
            del recent[: len(recent) - cfg.recent_items]
        if event.category:
            w = cfg.weights.weight(event.kind, event.rating)
            aff = profile["affinity"]
            aff[event.category] = round(aff.get(event.category, 0.0) + w, 6)
    return APPLIED


def seen_items(profile: Optional[Profile]) -> set[str]:
    return {r[ROW_PRODUCT] for r in profile["recent"]} if profile else set()


#: Where a kind sorts among rows of the same instant: the funnel's order.
_FUNNEL = {"view": 0, "purchase": 1, "review": 2}


def row_order(row: list[Any]) -> tuple[float, int, str]:
    """The total order of recent rows: event time, then funnel step, then product."""
    return (row[ROW_TS], _FUNNEL.get(row[ROW_KIND], 3), row[ROW_PRODUCT])


def row_ts(row: list[Any]) -> float:
    """A recent row's event time (the key the rows are kept sorted by)."""
    return row[ROW_TS]


def top_categories(profile: Optional[Profile], n: int = 3) -> list[tuple[str, float]]:
    """The user's strongest categories with their share of the total affinity."""
    if not profile or not profile["affinity"]:
        return []
    total = sum(profile["affinity"].values()) or 1.0
    ranked = sorted(profile["affinity"].items(), key=lambda kv: (-kv[1], kv[0]))
    return [(cat, w / total) for cat, w in ranked[:n]]


def profile_view(profile: Profile, cfg: ProfileConfig) -> dict[str, Any]:
    """The public shape of a profile (GET /api/users/{id}/profile), bookkeeping left out."""
    stream_time = profile["last_seen"] or 0
    tumbling = {k: dict(v) for k, v in profile["tumbling"].items()}
    hopping = {k: dict(v) for k, v in profile["hopping"].items()}
    expire_windows(tumbling, cfg.tumbling, stream_time)
    expire_windows(hopping, cfg.hopping, stream_time)
    total = sum(profile["affinity"].values()) or 1.0
    return {
        "user_id": profile["user_id"],
        "first_seen": profile["first_seen"],
        "last_seen": profile["last_seen"],
        "counts": dict(profile["counts"]),
        "recent_items": [
            {"product_id": r[ROW_PRODUCT], "kind": r[ROW_KIND], "timestamp": r[ROW_TS],
             "category": r[ROW_CATEGORY]}
            for r in reversed(profile["recent"])
        ],
        "category_affinity": {
            c: round(w / total, 6)
            for c, w in sorted(profile["affinity"].items(), key=lambda kv: (-kv[1], kv[0]))
        },
        "windows": {
            "tumbling": {"size_s": cfg.tumbling.size, "windows": window_view(tumbling, cfg.tumbling)},
            "hopping": {
                "size_s": cfg.hopping.size,
                "step_s": cfg.hopping.step,
                "windows": window_view(hopping, cfg.hopping),
            },
        },
    }
