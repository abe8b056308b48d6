"""Readiness that tells the truth: can this worker answer for its users right now?

``GET /api/health/ready`` (and ``/api/health``'s status code) is 503 with the reasons while any
of these holds: the consumer has no assignment yet or is rebalancing, its tables are being
recovered (these three only until the first recovery is done: see ``decide``), the replicated changelogs (popularity, transitions) have not caught up, the broker
has not answered a metadata request for ``RECSYS_READY_BROKER_TIMEOUT_S``, or a partition has
records behind and has not moved for ``RECSYS_READY_STALL_S`` (counted from the end of the
latest wait for the broker or the database: ``kafka/lag.Progress.excuse``). A database outage is not one of
them: the worker answers from its tables while the sink holds its rows back (health says
"degraded"), and partitions that stop behind the waiting sink are not stalls (a whole cluster
taken out of its load balancer by a database outage would serve nothing instead of slightly
stale answers; the sink-retry and lag alerts say what happens). ``GET /api/health/live`` only says the process answers (for restarts, not traffic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..kafka.clients import client_kwargs
from ..kafka.lag import PartitionLag
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facts:
    """What readiness is decided from (gathered by the worker, decided by ``decide``)."""
    consumer_started: bool
    rebalancing: bool
    recovering: bool
    assigned_inputs: int
    tails_caught_up: dict[str, bool]
    broker_reachable: bool
    broker_detail: str
    lags: Sequence[PartitionLag] = field(default_factory=tuple)
    # The sink cannot reach its database: it holds its records, and the consumer behind it waits
    # (Faust's agents share one consumer). Partitions stop moving for a known reason, not a stall.
    sink_waiting: bool = False
    # The worker's tables were recovered once since it started: later rebalances and the
    # recoveries they bring do not take it out of its load balancer (below).
    served_before: bool = False


def decide(facts: Facts, *, stall_s: float) -> list[str]:
    """The reasons this worker is not ready; empty when it is."""
    reasons = []
    if not facts.broker_reachable:
        reasons.append(f"broker unreachable: {facts.broker_detail}")
    if not facts.consumer_started:
        reasons.append("the consumer has not started")
    elif facts.served_before:
        # A rebalance holds every worker of the group at once: were each to turn unready, the
        # load balancer would have none left (the rehearsal saw it). A worker that has served
        # keeps answering: requests for partitions in motion get the popular items, marked
        # degraded (web/views.py), the others their usual answer.
        pass
    elif facts.rebalancing:
        reasons.append("rebalancing: partitions are being assigned")
    elif facts.recovering:
        reasons.append("recovering tables from their changelogs")
    elif facts.assigned_inputs == 0:
        reasons.append("no partition of the input topics is assigned to this worker")
    behind = [name for name, done in sorted(facts.tails_caught_up.items()) if not done]
    if behind:
        reasons.append(f"catching up on the replicated changelogs: {', '.join(behind)}")
    for lag in () if facts.sink_waiting else facts.lags:
        if lag.records > 0 and lag.idle_s > stall_s:
            reasons.append(f"consumer stalled on {lag.topic}[{lag.partition}]: {lag.records} records behind, "
                           f"no progress for {lag.idle_s:.0f} s")
    return reasons


class ReadinessLog:
    """Turns readiness, polled, into one log line per change: when a worker leaves its load
    balancer's pool and why, and when it is back. A probe answered 503 says why only to whoever
    polled it; the log keeps the story for the operator reading it afterwards.

    A change is a change of the set of reasons by kind (the text before the first colon), so a
    reason whose figures grow ("no progress for 61 s", "62 s") is not logged again.
    """

    def __init__(self) -> None:
        self._kinds: Optional[tuple[str, ...]] = None

    def update(self, reasons: Sequence[str]) -> Optional[str]:
        """The line to log for ``reasons`` (the latest poll), or None when nothing changed."""
        kinds = tuple(sorted({reason.split(":", 1)[0] for reason in reasons}))
        if kinds == self._kinds:
            return None
        self._kinds = kinds
        return "ready" if not reasons else "not ready: " + "; ".join(reasons)


class BrokerProbe:
    """Asks the cluster for its metadata every ``interval_s`` on a client of its own.

    Faust's consumer reconnects quietly and its "up" never noticed a dead broker; a metadata
    request that fails or hangs does. The answer is cached, so a load balancer polling
    readiness costs the broker nothing extra.
    """

    def __init__(self, settings: Settings, *, interval_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.timeout_s = settings.web.ready_broker_timeout_s
        self.clock = clock
        self._client: Any = None
        self.last_ok: Optional[float] = None
        self.started = clock()
        self.detail = "not probed yet"
        self.brokers = 0

    @property
    def reachable(self) -> bool:
        """True while the newest successful answer is younger than the timeout."""
        return self.last_ok is not None and self.clock() - self.last_ok <= self.timeout_s

    async def probe(self) -> None:
        from aiokafka.client import AIOKafkaClient

        try:
            if self._client is None:
                kw = client_kwargs(self.settings)
                kw["request_timeout_ms"] = int(self.interval_s * 1000) + 1000
                self._client = AIOKafkaClient(**kw, metadata_max_age_ms=1000)
                await asyncio.wait_for(self._client.bootstrap(), self.timeout_s)
            cluster = await asyncio.wait_for(self._client.fetch_all_metadata(), self.timeout_s)
            self.brokers = len(cluster.brokers())
            self.last_ok = self.clock()
            self.detail = f"{self.brokers} broker(s) answered"
        except Exception as exc:  # noqa: BLE001 - reported through readiness, never raised
            since = self.last_ok if self.last_ok is not None else self.started
            self.detail = f"no metadata answer for {self.clock() - since:.0f} s ({type(exc).__name__}: {exc})"[:300]
            if self._client is not None and self.last_ok is None:
                await self.close()  # never bootstrapped: start over next time

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # noqa: BLE001
                pass

    def status(self) -> dict[str, Any]:
        return {"reachable": self.reachable, "detail": self.detail}
