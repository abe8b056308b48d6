"""Validated event records: what the rest of the system may assume about an input event.

Pure data, no Faust: every agent, view, producer and test speaks these types, and the
validator is the only way to build one from untrusted bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

# The contract's topic names, fixed.
TOPIC_USER_EVENTS = "amazon-user-events"
TOPIC_VIEWS = "amazon-product-views"
TOPIC_PURCHASES = "amazon-purchases"
TOPIC_REVIEWS = "amazon-reviews"
TOPIC_REQUESTS = "amazon-recommendation-requests"
TOPIC_RESPONSES = "amazon-recommendation-responses"
TOPIC_MODEL_UPDATES = "amazon-model-updates"
TOPIC_MODEL_METRICS = "amazon-model-metrics"
TOPIC_SYSTEM_METRICS = "amazon-system-metrics"
TOPIC_DATA_DRIFT = "amazon-data-drift"
TOPIC_DEAD_LETTERS = "amazon-dead-letters"
TOPIC_CONTROL = "recsys-control"  # internal: cluster-wide admin state (the cache epoch)
#: internal: one record per answer served (HTTP and the responses topic), keyed by user_id and
#: co-partitioned with the inputs, folded into the user's profile for the online metrics.
TOPIC_SERVED = "recsys-served"
#: internal: one record per erased user (DELETE /api/users/{id}, ``users forget``), keyed by
#: user_id and co-partitioned with the inputs, so the user's owner applies it in order with
#: their events (erasure/, ingest/erase.py).
TOPIC_ERASURES = "recsys-erasures"
#: internal: the catalogue rules, keyed by product_id, compacted; every worker holds all of it
#: (catalogue/).
TOPIC_CATALOGUE = "recsys-catalogue"

#: Interaction kinds and the topic each is produced to.
KIND_TOPICS: dict[str, str] = {
    "view": TOPIC_VIEWS,
    "purchase": TOPIC_PURCHASES,
    "review": TOPIC_REVIEWS,
    "user-event": TOPIC_USER_EVENTS,
}
TOPIC_KINDS: dict[str, str] = {topic: kind for kind, topic in KIND_TOPICS.items()}

#: The per-user input topics, all keyed by user_id and co-partitioned.
INPUT_TOPICS: tuple[str, ...] = (TOPIC_USER_EVENTS, TOPIC_VIEWS, TOPIC_PURCHASES, TOPIC_REVIEWS)

USER_EVENT_TYPES = frozenset({"login", "logout", "signup", "profile_update"})


@dataclass(frozen=True, slots=True)
class Event:
    """One valid user event (interaction or account event), normalised.

    ``ts`` is always float epoch seconds, whatever form the producer used. ``payload`` is the
    producer's object as received, unknown fields included, so the sink can keep them.
    """

    kind: str  # view | purchase | review | user-event
    event_id: str
    user_id: str
    ts: float
    product_id: Optional[str] = None
    category: Optional[str] = None
    rating: Optional[float] = None
    quantity: Optional[int] = None
    price: Optional[float] = None
    event_type: Optional[str] = None  # for user-event
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_interaction(self) -> bool:
        return self.product_id is not None

    @property
    def topic(self) -> str:
        return KIND_TOPICS[self.kind]


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    request_id: str
    user_id: str
    k: int = 10
    exclude: tuple[str, ...] = ()
    category: Optional[str] = None
    ts: Optional[float] = None


@dataclass(frozen=True, slots=True)
class Served:
    """One answer as served (a record of ``recsys-served``): what online metrics attribute to."""

    user_id: str
    served_at: float
    model_version: str
    strategy: str
    items: tuple[str, ...]
    variant: str = ""
    via: str = "http"      # http | kafka
    stale: bool = False    # ranked live for want of a ready list of the serving model: rank the user again


@dataclass(frozen=True)
class Erasure:
    """One user to forget: every state of theirs, and every record of theirs whose event time is
    before ``erased_at`` read from now on (erasure/)."""

    user_id: str
    erased_at: float
    requested_by: str = ""


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a record was refused: a short machine code plus a human sentence."""

    code: str  # not_json | not_object | missing_field | wrong_type | out_of_range | too_large | ...
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class Source(NamedTuple):
    """Where an event came from: what every piece of state records as applied."""
    topic: str
    partition: int
    offset: int


def mark_applied(applied: dict[str, int], source: Optional[Source]) -> bool:
    """Record ``source`` in ``applied`` (the newest offset applied per ``"topic:partition"``);
    False, and nothing recorded, when it is not newer: the replay Faust performs after a
    rebalance or a crash. Every piece of state folded from a partition keeps its own such map,
    so it is exact under at-least-once delivery whichever of its writes survived."""
    if source is None:
        return True
    topic, partition, offset = source
    tp = f"{topic}:{partition}"
    if applied.get(tp, -1) >= offset:
        return False
    applied[tp] = offset
    return True


def is_older(applied: dict[str, int], than: dict[str, int]) -> bool:
    """Whether state that applied ``applied`` is an older copy of state that applied ``than``:
    everything it applied, the other has too. A changelog record read back after a newer local
    write is one; putting it back would undo that write until the key changes again. (No
    offsets at all, as in offline use, is never older.)"""
    return bool(applied) and all(than.get(tp, -1) >= offset for tp, offset in applied.items())


def metric_record(metric: str, value: float, *, timestamp: float, labels: Optional[dict[str, Any]] = None,
                  **source: str) -> dict[str, Any]:
    """A record of amazon-system-metrics (``worker=...``) or amazon-model-metrics
    (``model_version=...``), in the contract's shape: the one builder of it."""
    return {"metric": metric, "value": value, **source, "timestamp": timestamp, **({"labels": labels} if labels else {})}
