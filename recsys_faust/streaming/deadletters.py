"""Send a refused record to the dead-letter topic: one place for every agent."""

from __future__ import annotations

import logging
from typing import Optional

from faust.types import EventT, TopicT

from .. import metrics
from ..events.deadletter import dead_letter
from ..events.model import TOPIC_KINDS, Invalid
from ..events.protect import FieldCipher

log = logging.getLogger(__name__)


def _raw(value: object) -> Optional[bytes]:
    return value if isinstance(value, (bytes, type(None))) else str(value).encode("utf-8")


class DeadLetters:
    def __init__(self, topic: TopicT, worker: str, cipher: Optional[FieldCipher] = None) -> None:
        self.topic = topic
        self.worker = worker
        self.cipher = cipher   # with field keys, a refused record's sensitive fields are sealed in its copy

    async def send(self, rec: EventT, invalid: Invalid) -> None:
        """Count, log and dead-letter ``rec`` with the reason and its original bytes."""
        msg = rec.message
        metrics.DEAD_LETTERS.labels(msg.topic, invalid.code).inc()
        log.warning("dead letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, invalid)
        key, value = _raw(msg.key), _raw(msg.value)
        sealed = "none"
        if self.cipher is not None:
            value, sealed = self.cipher.seal_raw(TOPIC_KINDS.get(msg.topic), value)
        record = dead_letter(invalid, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                             key=key, value=value, worker=self.worker)
        if sealed != "none":
            record["payload_sealed"] = sealed
        await self.topic.send(key=key, value=record)
