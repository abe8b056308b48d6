"""Events and answers -> rows of the schema (pure)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from ..events.model import Event

INTERACTION_COLUMNS = ("event_id", "kind", "user_id", "product_id", "ts", "category", "rating", "quantity",
                       "price", "payload", "source_topic", "source_partition", "source_offset")
USER_EVENT_COLUMNS = ("event_id", "user_id", "event_type", "ts", "payload", "source_topic", "source_partition",
                      "source_offset")
RESPONSE_COLUMNS = ("request_id", "user_id", "items", "model_version", "strategy", "ts")


def ts(value: float) -> datetime:
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def event_row(ev: Event, source: Optional[tuple[str, int, int]],
              payload_obj: Optional[dict[str, Any]] = None) -> tuple[str, tuple]:
    """('interactions' | 'user_events', row) for one valid event (``payload_obj``: the payload to
    store instead of the event's own, e.g. with its sensitive fields sealed)."""
    topic, partition, offset = source if source else (None, None, None)
    payload = json.dumps(ev.payload if payload_obj is None else payload_obj, separators=(",", ":"))
    if ev.kind == "user-event":
        return "user_events", (ev.event_id, ev.user_id, ev.event_type, ts(ev.ts), payload, topic, partition, offset)
    return "interactions", (ev.event_id, ev.kind, ev.user_id, ev.product_id, ts(ev.ts), ev.category, ev.rating,
                            ev.quantity, ev.price, payload, topic, partition, offset)


def response_row(obj: dict[str, Any]) -> Optional[tuple]:
    try:
        return (str(obj["request_id"]), str(obj["user_id"]), json.dumps(obj.get("items", [])),
                str(obj.get("model_version", "")), str(obj.get("strategy", "")), ts(obj.get("timestamp") or 0))
    except (KeyError, TypeError, ValueError):
        return None
