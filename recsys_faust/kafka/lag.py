"""Consumer lag per topic-partition: records behind, how far behind in time, and stalls.

Faust's own lag bookkeeping lives in its Monitor's per-message hooks, which this worker turns
off (``kafka/monitor.py``: 4.7% of the loop). Instead the batch agents record, once per
micro-batch and partition, the newest offset they acknowledged (``Progress.record``, called by
``streaming/pipeline.ack_events``); the lag is read when ``/metrics`` or readiness asks:

- ``records``: the partition's high watermark (from the consumer's last fetch, which is right
  on the dev broker where ListOffsets is not) minus the next offset to process (after the
  newest acknowledged by the *slowest* agent reading the partition, or Faust's committed
  offset, whichever is further): a record the processor folded but the sink has not stored
  is behind, as the committed offset says (a PostgreSQL outage shows as growing lag);
- ``age_s``: while records are behind, how long the oldest of them has waited: the time the
  consumer is behind, the figure Burrow and kafka-lag-exporter call time lag. The oldest waiting
  record came after the newest processed one (its Kafka timestamp) and after the partition was
  last seen caught up, so the age runs from the later of the two: on a partition written
  rarely, the newest processed record may be hours old while the records behind are seconds
  old. An upper bound, by at most the interval between reads. 0 when caught up; None when no
  record of the partition was processed yet;
- ``idle_s``: seconds since any agent last made progress on the partition, since it was
  first seen assigned, or since the last wait for the broker or the database (``excuse``); a
  partition with records behind and ``idle_s`` over the stall limit is stalled. The fastest agent's progress, so that a sink waiting for its database (it retries,
  and says so in its own metric) does not make a worker that serves well unready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

#: Topics whose partitions are not source topics of the agents (recovered, not consumed).
_CHANGELOG_SUFFIX = "-changelog"


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    records: int
    age_s: Optional[float]
    idle_s: float


class Progress:
    """The newest acknowledged offset per partition, with its record time and when it moved."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # tp -> agent -> (offset, record timestamp in epoch seconds or None, monotonic time of the ack)
        self.acked: dict[Any, dict[str, tuple[int, Optional[float], float]]] = {}
        self.first_seen: dict[Any, float] = {}
        self.caught_up_at: dict[Any, float] = {}   # tp -> wall time it was last seen with nothing behind
        self.excused_at = float("-inf")             # the last time no partition could move (``excuse``)

    def excuse(self) -> None:
        """No partition can move now, for a reason readiness names on its own (the broker
        unreachable, the sink waiting for its database): every stall clock restarts from now.
        Counted through such a wait, a partition behind was "stalled" the moment the cause went
        away (a rehearsal showed "no progress for 158 s" right after a PostgreSQL outage), and
        the worker left its load balancer just as it could work again. After the wait each
        partition has the whole stall limit to move."""
        self.excused_at = self.clock()

    def record(self, newest: dict[Any, tuple[int, Optional[float]]], agent: str = "") -> None:
        """``newest``: tp -> (offset, timestamp) of the last record of ``agent``'s batch on that tp."""
        now = self.clock()
        for tp, (offset, ts) in newest.items():
            by_agent = self.acked.setdefault(tp, {})
            old = by_agent.get(agent)
            if old is None or offset > old[0]:
                by_agent[agent] = (offset, ts, now)

    def lags(self, assigned: Iterable[Any], highwater: Callable[[Any], Optional[int]],
             committed: Callable[[Any], Optional[int]], *, wall: Optional[float] = None) -> list[PartitionLag]:
        """The lag of every assigned source partition whose high watermark is known."""
        now, wall = self.clock(), time.time() if wall is None else wall
        out = []
        current = set()
        for tp in assigned:
            if tp.topic.endswith(_CHANGELOG_SUFFIX):
                continue
            current.add(tp)
            seen = self.first_seen.setdefault(tp, now)
            end = highwater(tp)
            if end is None:
                continue
            agents = self.acked.get(tp) or {}
            mine = min(agents.values(), key=lambda a: a[0]) if agents else None   # the slowest agent
            done = committed(tp)
            # Kafka's committed offset is the next one to read; with neither known, the log is
            # assumed to start at 0 (an overstatement once retention has deleted its head).
            next_offset = max(mine[0] + 1 if mine is not None else 0, done or 0)
            records = max(0, end - next_offset)
            age: Optional[float] = None
            if records == 0:
                age = 0.0
                self.caught_up_at[tp] = wall
            elif mine is not None and mine[1] is not None:
                age = max(0.0, wall - max(mine[1], self.caught_up_at.get(tp, mine[1])))
            moved = max(a[2] for a in agents.values()) if agents else seen      # the fastest agent
            out.append(PartitionLag(tp.topic, tp.partition, records, age,
                                    max(0.0, now - max(moved, seen, self.excused_at))))
        for tp in [tp for tp in self.first_seen if tp not in current]:
            del self.first_seen[tp]  # revoked: a later assignment starts its idle clock anew
            self.acked.pop(tp, None)  # ... and its agents' progress from the committed offset
            self.caught_up_at.pop(tp, None)
        return out


#: The worker's one Progress (the batch agents of one process share the consumer).
PROGRESS = Progress()


def consumer_lags(consumer: Any, progress: Progress = PROGRESS) -> list[PartitionLag]:
    """The lags of Faust's consumer's assignment (empty before it has one)."""
    if consumer is None:
        return []
    try:
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started yet
        return []
    committed_offsets = getattr(consumer, "_committed_offset", {})  # internals.py lists it

    def highwater(tp: Any) -> Optional[int]:
        try:
            return consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - the partition is not fetched yet
            return None

    return progress.lags(assigned, highwater, committed_offsets.get)


def batch_backlog(consumer: Any, records: Iterable[Any]) -> int:
    """Records waiting behind a micro-batch on its partitions: each partition's high watermark
    (the consumer's last fetch) minus the batch's newest offset there, summed. The processor's
    own backlog (``consumer_lags`` counts from the slowest agent, the sink included), for the
    drift detector to tell a worker reading a backlog from one reading live traffic."""
    newest: dict[Any, int] = {}
    for rec in records:
        msg = rec.message
        tp = msg.tp
        if newest.get(tp, -1) < msg.offset:
            newest[tp] = msg.offset
    behind = 0
    for tp, offset in newest.items():
        try:
            end = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched yet: nothing known to be behind
            continue
        if end is not None:
            behind += max(0, end - offset - 1)
    return behind
