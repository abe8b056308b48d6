"""Request/response over Kafka: one answer on the responses topic per request record.

Requests are keyed by user_id and co-partitioned with the events, so the answering worker reads
the user's profile and ready list locally. The last answered offset per user and partition is
kept in a table, so the replays after a rebalance are not answered twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Optional

from faust.types import EventT, TableT, TopicT

from .. import metrics
from ..events.model import Invalid
from ..events.validate import validate_request
from ..serving.service import Recommender
from ..settings import IngestSettings
from .deadletters import DeadLetters
from .routing import Rerouter

log = logging.getLogger(__name__)


class RequestAnswerer:
    def __init__(
        self,
        limits: IngestSettings,
        *,
        recommender: Recommender,
        answered: TableT,
        responses: TopicT,
        dead_letters: DeadLetters,
        requests_topic: TopicT,
        partitions_of: Callable[[str], Optional[int]],
        served: Optional[Callable[[str, dict[str, Any], str, bool], Awaitable[None]]] = None,
    ) -> None:
        self.max_bytes = limits.max_event_bytes
        self.recommender = recommender
        self.answered = answered
        self.responses = responses
        self.dead_letters = dead_letters
        self.requests_topic = requests_topic
        self.routing = Rerouter(partitions_of)
        self.served = served  # records the answer for the online metrics (online/monitor.py)

    async def handle(self, rec: EventT) -> None:
        msg = rec.message
        req = validate_request(msg.value, max_bytes=self.max_bytes)
        if isinstance(req, Invalid):
            await self.dead_letters.send(rec, req)
            return
        if self.routing.misplaced(msg.topic, msg.partition, req.user_id):
            await self.routing.resend(self.requests_topic, rec, req.user_id)
            return
        done = self.answered.get(req.user_id) or {}
        tp = f"{msg.partition}"
        if done.get(tp, -1) >= msg.offset:
            return  # already answered before a rebalance replayed it
        result, stale = self.recommender.answer(
            req.user_id, req.k, category=req.category, exclude=req.exclude
        )
        response = {"request_id": req.request_id, **result, "timestamp": time.time()}
        await self.responses.send(key=req.user_id, value=response)
        if self.served is not None:
            await self.served(req.user_id, result, "kafka", stale)
        done[tp] = msg.offset
        self.answered[req.user_id] = done
        metrics.REQUESTS_ANSWERED.labels(result["strategy"]).inc()
