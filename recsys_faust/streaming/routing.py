"""The agents' one re-route rule: a record on another partition than its ``user_id`` hashes to
(a producer with another partitioner, or none) is sent again, keyed by the user, so it lands
where the user's state lives; it is not applied where it arrived."""

from __future__ import annotations

from typing import Any, Callable, Optional

from .. import metrics
from ..kafka.partitioning import user_partition


class Rerouter:
    def __init__(self, partitions_of: Callable[[str], Optional[int]]) -> None:
        self.partitions_of = partitions_of

    def misplaced(self, topic: str, partition: int, user_id: str) -> bool:
        n = self.partitions_of(topic)
        return bool(n) and user_partition(user_id, n) != partition

    async def resend(self, topic: Any, rec: Any, user_id: str) -> None:
        metrics.REROUTED.labels(rec.message.topic).inc()
        await topic.send(key=user_id.encode("utf-8"), value=rec.message.value)
