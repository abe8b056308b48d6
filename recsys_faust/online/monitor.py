"""Wiring of the online metrics: records each answer served, exports and posts the figures.

The pure parts are in ``online/``; the event processor folds the records into profiles and
counts (ingest/). This adds what needs Kafka or the clock: the ``recsys-served``
record of every answer (sent by the worker that served it, keyed by user_id with the input
topics' key bytes, so it lands on the user's partition and is folded with their events; a
producer batch per partition, ``ServedSender``), and
the periodic post of this worker's figures to amazon-model-metrics through ``MetricsProducer``
(one record per figure and key, ``labels`` carrying the counts it was computed from).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, Callable, Optional

import orjson
from aiokafka.errors import KafkaError, ProducerClosed

from .. import metrics
from ..kafka.producers import MetricsProducer
from ..kafka.partitioning import user_partition
from .stats import OnlineStats
from ..ranking.model.active import ModelHolder
from ..settings import Settings, default

log = logging.getLogger(__name__)

#: (metric name on amazon-model-metrics, row field)
POSTED = (("online_hit_rate", "hit_rate"), ("online_rec_share", "rec_share"), ("online_coverage", "coverage"))


#: recsys-served records wait at most this long for others to share their producer batch
#: (RECSYS_SERVED_LINGER_MS's default; the worker passes the setting) ...
SERVED_LINGER_S = default("served_linger_ms") / 1000
#: ... or until this many wait (a batch per partition is sent at once then).
SERVED_MAX_RECORDS = 1_000
#: Sends of such batches not yet handed to the producer; past this, records wait in memory
#: (merged into the next send) until one is handed over.
SERVED_MAX_IN_FLIGHT = 16
#: Records waiting so; past this (a broker that stopped taking them) new records are dropped
#: and counted rather than held without bound (about 200 bytes each: 20 MB).
SERVED_MAX_WAITING = 100_000


class ServedSender:
    """The ``recsys-served`` records, a producer batch per partition every few milliseconds.

    Sent one by one through Faust's topic (a FutureMessage, the producer buffer, aiokafka's
    send and its partitioner per record), the record of an answer cost the serving worker about
    15% of its event loop under load, more than ranking the answer. Here records are grouped by
    their user's partition (the contract's murmur2 of the UTF-8 user id, as the processor
    checks) and handed to the producer as one record batch each, as the table writes are
    (kafka/table.py). A record is never awaited to the broker: a lost one costs a count, never
    an answer.
    """

    def __init__(self, topic: str, producer: Callable[[], Any], partitions: Callable[[], int], *,
                 linger_s: float = SERVED_LINGER_S, max_records: int = SERVED_MAX_RECORDS,
                 max_in_flight: int = SERVED_MAX_IN_FLIGHT, max_waiting: int = SERVED_MAX_WAITING) -> None:
        self.topic = topic
        self._producer = producer  # the aiokafka producer, when the first batch goes
        self._partitions = partitions
        self.linger_s = linger_s
        self.max_records = max_records
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._pending: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        self._count = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._in_flight: set[asyncio.Future] = set()
        self.sent = 0
        self.dropped = 0
        self.undelivered = 0

    def add(self, user_id: str, value: bytes) -> None:
        if self._count >= self.max_waiting:
            self.dropped += 1
            metrics.SERVED_RECORDS.labels("dropped").inc()
            if self.dropped % 1000 == 1:
                log.warning("recsys-served: %d records wait for the producer already: dropping (%d dropped so far)",
                            self._count, self.dropped)
            return
        self._pending[user_partition(user_id, self._partitions())].append((user_id.encode("utf-8"), value))
        self._count += 1
        if self._count >= self.max_records and len(self._in_flight) < self.max_in_flight:
            self._send_pending()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._send_pending)

    def _send_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or len(self._in_flight) >= self.max_in_flight:
            return  # nothing to send, or sent when a send in flight is handed over (``_handed``)
        pending, count = self._pending, self._count
        self._pending, self._count = defaultdict(list), 0
        task = asyncio.ensure_future(self._send(pending, count))
        self._in_flight.add(task)
        task.add_done_callback(self._handed)

    def _handed(self, task: "asyncio.Future[None]") -> None:
        self._in_flight.discard(task)
        if self._pending:
            self._send_pending()

    async def _send(self, pending: dict[int, list[tuple[bytes, bytes]]], count: int) -> None:
        handed = 0
        try:
            producer = self._producer()
            for partition, records in pending.items():
                batch, n = producer.create_batch(), 0
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full: send, start another
                        self._watch(await producer.send_batch(batch, self.topic, partition=partition), n)
                        handed += n
                        batch, n = producer.create_batch(), 0
                        batch.append(key=key, value=value, timestamp=None)
                    n += 1
                self._watch(await producer.send_batch(batch, self.topic, partition=partition), n)
                handed += n
        except Exception as exc:  # noqa: BLE001 - counts lost, never an answer
            self.dropped += count - handed
            metrics.SERVED_RECORDS.labels("dropped").inc(count - handed)
            log.warning("recsys-served: %d records not sent: %r", count - handed, exc)
        finally:
            self.sent += handed
            metrics.SERVED_RECORDS.labels("sent").inc(handed)

    def _watch(self, delivery: "asyncio.Future[Any]", records: int) -> None:
        """Count a batch the broker did not take (its records were counted sent: handed over)."""
        def done(f: "asyncio.Future[Any]") -> None:
            if f.cancelled() or f.exception() is not None:
                self.undelivered += records
                metrics.SERVED_RECORDS.labels("undelivered").inc(records)
                log.warning("recsys-served: a batch of %d records was not delivered: %r", records,
                            "cancelled" if f.cancelled() else f.exception())

        delivery.add_done_callback(done)

    async def flush(self) -> None:
        """Hand everything waiting to the producer (the worker is stopping)."""
        while self._pending or self._in_flight:
            self._send_pending()
            await asyncio.gather(*self._in_flight, return_exceptions=True)


class OnlineMonitor:
    def __init__(self, settings: Settings, stats: OnlineStats, models: ModelHolder, sender: ServedSender,
                 catalogue_size: Callable[[], int]) -> None:
        self.settings = settings
        self.stats = stats
        self.models = models
        self.sender = sender
        self.catalogue_size = catalogue_size
        self.producer: Optional[MetricsProducer] = None
        self.posted = 0

    async def served(self, user_id: str, answer: dict[str, Any], via: str, stale: bool = False) -> None:
        """Record one answer served (not awaited to the broker: a lost record costs a count,
        never an answer). ``stale``: the answer was ranked live for want of a ready list of the
        serving model; the record asks the user's owner to rank the user again."""
        if not self.settings.online.online_tracking:
            return
        record = {"user_id": user_id, "served_at": time.time(), "model_version": answer["model_version"],
                  "strategy": answer["strategy"], "variant": answer.get("variant") or "",
                  "items": [it["product_id"] for it in answer["items"][: self.settings.online.online_items_kept]],
                  "via": via}
        if stale:
            record["stale"] = True
        self.sender.add(user_id, orjson.dumps(record))

    def rows(self) -> list[dict[str, Any]]:
        return self.stats.rows(self.catalogue_size())

    async def start(self) -> None:
        self.producer = MetricsProducer(self.settings)
        await self.producer.start()

    async def stop(self) -> None:
        await self.sender.flush()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def post(self) -> None:
        """This worker's figures onto amazon-model-metrics (and so PostgreSQL)."""
        producer = self.producer
        if producer is None:
            return
        for row in self.rows():
            labels = {"strategy": row["strategy"], "variant": row["variant"],
                      "window_s": self.settings.online.attribution_window_s, "answers": row["answers"], "hits": row["hits"],
                      "interactions": row["interactions"], "from_recommendation": row["from_recommendation"],
                      "items_served": row["items_served"], "worker": self.settings.process.worker_name}
            for metric, field in POSTED:
                try:
                    await producer.send_model_metric(metric, row[field], model_version=row["model_version"],
                                                     labels=labels)
                except ProducerClosed:
                    # The worker stopped while a send waited (on a broker outage, say): what is not
                    # posted is this one snapshot of counters, and a timer that raised here would
                    # turn a clean stop into a crash.
                    return
                except KafkaError as exc:
                    # Not taken within the request timeout (a broker outage): the counts are
                    # cumulative since start, so the next post carries what this one would have.
                    log.warning("online figures not posted: %r; the next post carries them", exc)
                    return
                self.posted += 1
