"""Wiring of the online metrics: records each answer served, exports and posts the figures.

The pure parts are in ``online/``; the event processor folds the records into profiles and
counts (streaming/ingest.py). This adds what needs Kafka or the clock: the ``recsys-served``
record of every answer (sent by the worker that served it, keyed by user_id with the input
topics' key bytes, so it lands on the user's partition and is folded with their events), and
the periodic post of this worker's figures to amazon-model-metrics through ``MetricsProducer``
(one record per figure and key, ``labels`` carrying the counts it was computed from).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Optional

from faust.types import TopicT

from ..client.producers import MetricsProducer
from ..online.stats import OnlineStats
from ..ranking.active import ModelHolder
from ..settings import Settings

log = logging.getLogger(__name__)

#: (metric name on amazon-model-metrics, row field)
POSTED = (("online_hit_rate", "hit_rate"), ("online_rec_share", "rec_share"), ("online_coverage", "coverage"))


class OnlineMonitor:
    def __init__(self, settings: Settings, stats: OnlineStats, models: ModelHolder, served_topic: TopicT,
                 catalogue_size: Callable[[], int]) -> None:
        self.settings = settings
        self.stats = stats
        self.models = models
        self.served_topic = served_topic
        self.catalogue_size = catalogue_size
        self.producer: Optional[MetricsProducer] = None
        self.posted = 0

    async def served(self, user_id: str, answer: dict[str, Any], via: str) -> None:
        """Record one answer served (not awaited to the broker: a lost record costs a count,
        never an answer)."""
        if not self.settings.online_tracking:
            return
        record = {"user_id": user_id, "served_at": time.time(), "model_version": answer["model_version"],
                  "strategy": answer["strategy"], "variant": answer.get("variant") or "",
                  "items": [it["product_id"] for it in answer["items"][: self.settings.online_items_kept]],
                  "via": via}
        await self.served_topic.send(key=user_id.encode("utf-8"),
                                     value=json.dumps(record, separators=(",", ":")).encode("utf-8"))

    def rows(self) -> list[dict[str, Any]]:
        return self.stats.rows(self.catalogue_size())

    async def start(self) -> None:
        self.producer = MetricsProducer(self.settings)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def post(self) -> None:
        """This worker's figures onto amazon-model-metrics (and so PostgreSQL)."""
        if self.producer is None:
            return
        for row in self.rows():
            labels = {"strategy": row["strategy"], "variant": row["variant"],
                      "window_s": self.settings.attribution_window_s, "answers": row["answers"], "hits": row["hits"],
                      "interactions": row["interactions"], "from_recommendation": row["from_recommendation"],
                      "items_served": row["items_served"], "worker": self.settings.worker_name}
            for metric, field in POSTED:
                await self.producer.send_model_metric(metric, row[field], model_version=row["model_version"],
                                                      labels=labels)
                self.posted += 1
