"""The dead-letter record: enough to find, understand and replay a refused input."""

from __future__ import annotations

import base64
import time
from typing import Any, Optional

from .model import Invalid

#: Bytes of the original payload kept in a dead letter; the size is recorded either way,
#: so a huge record cannot make its dead letter huge too.
MAX_KEPT_BYTES = 16_384


def _text_or_b64(data: Optional[bytes]) -> tuple[Optional[str], str]:
    if data is None:
        return None, "none"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def dead_letter(
    invalid: Invalid,
    *,
    topic: str,
    partition: Optional[int],
    offset: Optional[int],
    key: Optional[bytes],
    value: Optional[bytes],
    worker: str,
    now: Optional[float] = None,
) -> dict[str, Any]:
    """Build the JSON object written to the dead-letter topic for one refused record."""
    original = value if value is None or len(value) <= MAX_KEPT_BYTES else value[:MAX_KEPT_BYTES]
    payload, encoding = _text_or_b64(original)
    key_text, key_encoding = _text_or_b64(key)
    return {
        "reason": invalid.code,
        "detail": invalid.detail,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": key_text,
        "key_encoding": key_encoding,
        "payload": payload,
        "payload_encoding": encoding,
        "payload_size": 0 if value is None else len(value),
        "payload_truncated": value is not None and len(value) > MAX_KEPT_BYTES,
        "worker": worker,
        "timestamp": time.time() if now is None else now,
    }
