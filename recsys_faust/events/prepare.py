"""One event object -> the (topic, key, value) a producer sends: validated by the workers' own
validator, sealed where fields are encrypted, keyed by ``user_id`` as the contract requires.

Shared by the client producers, the CLI's ``replay`` and the workers' HTTP ingestion, so every
way in refuses the same events with the same codes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from .model import KIND_TOPICS, TOPIC_ERASURES, TOPIC_REQUESTS, Invalid
from .protect import FieldCipher
from .validate import MAX_ID_LEN, validate_event, validate_request


class InvalidEventError(ValueError):
    """The event breaks the contract; ``.invalid`` says how."""

    def __init__(self, invalid: Invalid) -> None:
        super().__init__(str(invalid))
        self.invalid = invalid


def new_id() -> str:
    return uuid.uuid4().hex


def prepare(kind: str, obj: dict[str, Any], *, max_bytes: int = 65_536,
            cipher: Optional[FieldCipher] = None) -> tuple[str, bytes, bytes]:
    """Validate one event object of ``kind`` and return (topic, key, value bytes), its sensitive
    fields sealed when a ``cipher`` is given (events/protect.py: at the source, before Kafka).

    ``kind`` is view, purchase, review, user-event or request. Raises InvalidEventError.
    """
    if kind == "request":
        topic = TOPIC_REQUESTS
        checked: Any = validate_request(obj, max_bytes=max_bytes)
    else:
        topic = KIND_TOPICS.get(kind)
        if topic is None:
            raise InvalidEventError(Invalid("unknown_kind", f"kind must be one of {sorted(KIND_TOPICS)} or request"))
        checked = validate_event(topic, obj, max_bytes=max_bytes)
    if isinstance(checked, Invalid):
        raise InvalidEventError(checked)
    if cipher is not None and kind != "request":
        obj = cipher.seal(kind, obj)
    value = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    if len(value) > max_bytes:
        raise InvalidEventError(Invalid("too_large", f"event is {len(value)} bytes, the limit is {max_bytes}"))
    return topic, checked.user_id.encode("utf-8"), value


def prepare_erasure(user_id: str, erased_at: float, requested_by: str = "") -> tuple[str, bytes, bytes]:
    """The erasure record of ``user_id`` (recsys-erasures: key user_id, co-partitioned with the
    inputs); raises InvalidEventError for an id no input topic could hold."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_ID_LEN:
        raise InvalidEventError(Invalid("wrong_type", f"user_id must be a string of 1 to {MAX_ID_LEN} characters"))
    value = {"user_id": user_id, "erased_at": float(erased_at), "requested_by": requested_by}
    return TOPIC_ERASURES, user_id.encode("utf-8"), json.dumps(value, separators=(",", ":")).encode("utf-8")
