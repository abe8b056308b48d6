"""The features the drift detector watches, extracted from one valid event.

Categorical features map an event to one bucket label and are compared by PSI: buckets are few
and stable so distributions compare across windows (categories as sent; the detector caps how
many it keeps). Numeric features map an event to a number and are compared by a two-sample
Kolmogorov-Smirnov test, which needs no bucketing: a shift of prices inside one power-of-two
band, invisible to banded PSI, still moves the empirical distribution. Either returns None when
the feature does not apply (``rating`` for a view). ``events_per_user`` is numeric too, but per
user and window rather than per event: the detector counts it itself.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from ..events.model import Event

FeatureFn = Callable[[Event], Optional[str]]
NumericFn = Callable[[Event], Optional[float]]


def kind(ev: Event) -> Optional[str]:
    """Event mix: view / purchase / review, and account events by type."""
    if ev.kind == "user-event":
        return f"user-event:{ev.event_type}"
    return ev.kind


def category(ev: Event) -> Optional[str]:
    if not ev.is_interaction:
        return None
    return ev.category or "(none)"


def rating(ev: Event) -> Optional[float]:
    return None if ev.rating is None else float(ev.rating)


def price(ev: Event) -> Optional[float]:
    return None if ev.price is None or not math.isfinite(ev.price) else float(ev.price)


def price_band(ev: Event) -> Optional[str]:
    """Power-of-two price bands: "<1", "1-2", "2-4", ... ">=1024" (for reading a window's prices
    in an alert's details; the test itself is on the values)."""
    if ev.price is None:
        return None
    if ev.price < 1:
        return "<1"
    if ev.price >= 1024:
        return ">=1024"
    low = 2 ** int(math.floor(math.log2(ev.price)))
    return f"{low}-{low * 2}"


FEATURES: dict[str, FeatureFn] = {"kind": kind, "category": category}
NUMERIC: dict[str, NumericFn] = {"rating": rating, "price": price}
EVENTS_PER_USER = "events_per_user"
