"""The categorical features the drift detector watches, extracted from one valid event.

Each feature maps an event to one bucket label (or None when the feature does not apply, for
example ``rating`` for a view). Buckets are few and stable so distributions compare across
windows: prices in powers of two, categories as sent (the detector caps how many it keeps).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from ..events.model import Event

FeatureFn = Callable[[Event], Optional[str]]


def kind(ev: Event) -> Optional[str]:
    """Event mix: view / purchase / review, and account events by type."""
    if ev.kind == "user-event":
        return f"user-event:{ev.event_type}"
    return ev.kind


def category(ev: Event) -> Optional[str]:
    if not ev.is_interaction:
        return None
    return ev.category or "(none)"


def rating(ev: Event) -> Optional[str]:
    return None if ev.rating is None else str(int(round(ev.rating)))


def price(ev: Event) -> Optional[str]:
    """Power-of-two price bands: "<1", "1-2", "2-4", ... ">=1024"."""
    if ev.price is None:
        return None
    if ev.price < 1:
        return "<1"
    if ev.price >= 1024:
        return ">=1024"
    low = 2 ** int(math.floor(math.log2(ev.price)))
    return f"{low}-{low * 2}"


FEATURES: dict[str, FeatureFn] = {"kind": kind, "category": category, "rating": rating, "price": price}
