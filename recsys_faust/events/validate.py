"""Validation of untrusted event bytes against the contract.

Returns a value (``Event`` / ``RecommendationRequest``) or an ``Invalid`` with a reason, never
raises on bad input: the agent turns an ``Invalid`` into a dead-letter record, the HTTP view
into a 400, the client producers into an exception. One function per topic shape, shared by all.
"""

from __future__ import annotations

import orjson
import math
import time
from datetime import datetime, timezone
from typing import Any, Optional, Union

from ..settings import default
from .protect import is_sealed
from .model import (
    TOPIC_KINDS,
    USER_EVENT_TYPES,
    Erasure,
    Event,
    Invalid,
    Served,
    RecommendationRequest,
)

MAX_ID_LEN = 256
MAX_EXCLUDE = 1_000
_MAX_FUTURE_SKEW_S = default("max_future_skew_s")  # requests: the events' default


class _Reject(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.invalid = Invalid(code, detail)


def decode_json_object(raw: Union[bytes, str, dict], max_bytes: int) -> dict[str, Any]:
    """Bytes -> dict, or ``_Reject`` naming what is wrong."""
    if isinstance(raw, dict):
        return raw
    if raw is None:
        raise _Reject("empty", "the record has no value")
    size = len(raw)
    if size > max_bytes:
        raise _Reject("too_large", f"payload is {size} bytes, the limit is {max_bytes}")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Reject("not_utf8", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})")
    else:
        text = raw
    try:
        obj = orjson.loads(text)  # strict JSON: NaN, Infinity and >64-bit integers are rejected
    except ValueError as exc:
        raise _Reject("not_json", f"payload is not JSON: {exc}")
    if not isinstance(obj, dict):
        raise _Reject("not_object", f"payload must be a JSON object, got {type(obj).__name__}")
    return obj


def _require(obj: dict, name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise _Reject("missing_field", f"required field '{name}' is missing")
    return obj[name]


def _string(obj: dict, name: str, required: bool = True) -> Optional[str]:
    value = _require(obj, name) if required else obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject("wrong_type", f"'{name}' must be a string, got {_type(value)}")
    if required and not value.strip():
        raise _Reject("out_of_range", f"'{name}' must not be empty")
    if len(value) > MAX_ID_LEN:
        raise _Reject("out_of_range", f"'{name}' is longer than {MAX_ID_LEN} characters")
    return value


def _number(obj: dict, name: str, lo: float, hi: float, *, integer: bool = False) -> Optional[float]:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Reject("wrong_type", f"'{name}' must be a number, got {_type(value)}")
    if integer and (isinstance(value, float) and not value.is_integer()):
        raise _Reject("wrong_type", f"'{name}' must be an integer, got {value!r}")
    if not math.isfinite(value) or not (lo <= value <= hi):
        raise _Reject("out_of_range", f"'{name}'={value!r} is outside [{lo:g}, {hi:g}]")
    return value


def _flag(obj: dict, name: str) -> bool:
    """An optional boolean: absent or null is False."""
    value = obj.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Reject("wrong_type", f"'{name}' must be true or false, got {_type(value)}")
    return value


def parse_timestamp(value: Any, *, now: float, max_future_skew_s: float) -> float:
    """Epoch seconds (int/float) or an ISO-8601 string -> float epoch seconds."""
    if isinstance(value, bool):
        raise _Reject("wrong_type", "'timestamp' must be epoch seconds or ISO-8601, got bool")
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _Reject("wrong_type", f"'timestamp' {value!r} is not ISO-8601")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        ts = parsed.timestamp()
    else:
        raise _Reject("wrong_type", f"'timestamp' must be epoch seconds or ISO-8601, got {_type(value)}")
    if not math.isfinite(ts) or ts < 0:
        raise _Reject("out_of_range", f"'timestamp'={value!r} is before 1970")
    if ts > now + max_future_skew_s:
        raise _Reject("out_of_range", f"'timestamp'={value!r} is more than {max_future_skew_s:g}s in the future")
    return ts


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def validate_event(
    topic: str,
    raw: Union[bytes, str, dict],
    *,
    max_bytes: int = default("max_event_bytes"),
    now: Optional[float] = None,
    max_future_skew_s: float = default("max_future_skew_s"),
) -> Union[Event, Invalid]:
    """Validate one record of a per-user input topic."""
    kind = TOPIC_KINDS.get(topic)
    if kind is None:
        return Invalid("unknown_topic", f"no event schema for topic '{topic}'")
    try:
        obj = decode_json_object(raw, max_bytes)
        event_id = _string(obj, "event_id")
        user_id = _string(obj, "user_id")
        ts = parse_timestamp(
            _require(obj, "timestamp"),
            now=time.time() if now is None else now,
            max_future_skew_s=max_future_skew_s,
        )
        if kind == "user-event":
            event_type = _string(obj, "event_type")
            if event_type not in USER_EVENT_TYPES:
                raise _Reject(
                    "out_of_range",
                    f"'event_type'={event_type!r} is not one of {sorted(USER_EVENT_TYPES)}",
                )
            props = obj.get("properties")
            if props is not None and not isinstance(props, dict) and not is_sealed(props):
                raise _Reject("wrong_type", f"'properties' must be an object, got {_type(props)}")
            return Event(kind, event_id, user_id, ts, event_type=event_type, payload=obj)
        product_id = _string(obj, "product_id")
        category = _string(obj, "category", required=False)
        rating = quantity = price = None
        if kind == "review":
            _require(obj, "rating")
            rating = _number(obj, "rating", 1, 5)
            text = obj.get("text")
            if text is not None and not isinstance(text, str):
                raise _Reject("wrong_type", f"'text' must be a string, got {_type(text)}")
        if kind == "purchase":
            q = _number(obj, "quantity", 1, 1_000_000, integer=True)
            quantity = int(q) if q is not None else None
        if kind in ("purchase", "view"):
            price = _number(obj, "price", 0, 1e12)
        return Event(
            kind, event_id, user_id, ts,
            product_id=product_id, category=category, rating=rating,
            quantity=quantity, price=price, payload=obj,
        )
    except _Reject as rej:
        return rej.invalid


def validate_request(
    raw: Union[bytes, str, dict], *, max_bytes: int = default("max_event_bytes")
) -> Union[RecommendationRequest, Invalid]:
    """Validate one record of amazon-recommendation-requests."""
    try:
        obj = decode_json_object(raw, max_bytes)
        request_id = _string(obj, "request_id")
        user_id = _string(obj, "user_id")
        k = _number(obj, "k", 1, 100, integer=True)
        exclude = obj.get("exclude") or []
        if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
            raise _Reject("wrong_type", "'exclude' must be a list of product_id strings")
        if len(exclude) > MAX_EXCLUDE:
            raise _Reject("out_of_range", f"'exclude' holds more than {MAX_EXCLUDE} ids")
        category = _string(obj, "category", required=False)
        ts = obj.get("timestamp")
        ts_f = None
        if ts is not None:
            ts_f = parse_timestamp(ts, now=time.time(), max_future_skew_s=_MAX_FUTURE_SKEW_S)
        return RecommendationRequest(
            request_id, user_id, int(k) if k is not None else 10, tuple(exclude), category or None, ts_f
        )
    except _Reject as rej:
        return rej.invalid


#: Items of a served answer that are remembered (an answer holds at most 100).
MAX_SERVED_ITEMS = 100


def validate_served(raw: Union[bytes, str, dict], *, max_bytes: int = default("max_event_bytes")) -> Union[Served, Invalid]:
    """Validate one record of recsys-served (written by the workers, but read like any input)."""
    try:
        obj = decode_json_object(raw, max_bytes)
        user_id = _string(obj, "user_id")
        served_at = _number(obj, "served_at", 0, 1e11)
        if served_at is None:
            raise _Reject("missing_field", "'served_at' is required")
        items = obj.get("items")
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise _Reject("wrong_type", "'items' must be a list of product_id strings")
        if len(items) > MAX_SERVED_ITEMS:
            raise _Reject("out_of_range", f"'items' holds more than {MAX_SERVED_ITEMS} ids")
        return Served(user_id, float(served_at), _string(obj, "model_version") or "", _string(obj, "strategy") or "",
                      tuple(items), _string(obj, "variant", required=False) or "",
                      _string(obj, "via", required=False) or "http", _flag(obj, "stale"))
    except _Reject as rej:
        return rej.invalid


def validate_erasure(raw: Union[bytes, str, dict], *, max_bytes: int = default("max_event_bytes")) -> Union[Erasure, Invalid]:
    """Validate one record of recsys-erasures: ``{"user_id", "erased_at", "requested_by"?}``."""
    try:
        obj = decode_json_object(raw, max_bytes)
        user_id = _string(obj, "user_id")
        erased_at = _number(obj, "erased_at", 0, 1e11)
        if erased_at is None:
            raise _Reject("missing_field", "'erased_at' is required (unix seconds)")
        return Erasure(user_id, float(erased_at), _string(obj, "requested_by", required=False) or "")
    except _Reject as rej:
        return rej.invalid
