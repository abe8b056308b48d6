"""Step 6: a batch's tables stored in one step, its changelog phases, and its metrics.

Every table is stored with no await between (a reader never sees a profile newer than its
list), and the changelogs are sent after, so a send waiting on the broker does not hold back
what the batch makes visible. The item tables' changelogs go first and the users' after they
are acknowledged. The event ids must: an id ahead of its profile is harmless (its own record,
read again, is recognised by its source; profiles/dedup.py), one behind is not. The transition
entries and histories are one table whose records keep each other consistent by their order
(the histories after the entries, fold_items), whichever phase they go in.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import metrics
from ..kafka.table import StagedWrites, StrKeyTable, merge_staged
from .context import IngestTables
from .rank import ReadyWrites

log = logging.getLogger(__name__)

#: A micro-batch slower than this is logged with the time of each step (it is freshness lost).
SLOW_BATCH_S = 0.05

Phase = list[tuple[StrKeyTable, Any]]


@dataclass
class Staged:
    """A batch's values encoded while it was folded (the next batch may fold more events into
    the same objects before this one is stored)."""

    profiles: StagedWrites
    entries: StagedWrites
    transitions: StagedWrites
    ids: StagedWrites
    # erasure/: tombstones of the user-keyed tables for the users erased, stored before the
    # batch's own lists (a user's new event after the erasure writes after them), and the marks
    erased: list[tuple[str, Any, int]] = field(default_factory=list)
    marks: list[tuple[str, Any, int]] = field(default_factory=list)


@dataclass
class BatchClock:
    """When a batch started, its oldest record's time and the end of each step, for the metrics."""

    records: int
    started: float
    oldest: Optional[float]
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, step: str) -> None:
        self.marks.append((step, time.perf_counter()))


def store(tables: IngestTables, staged: Staged, ready: ReadyWrites) -> tuple[Phase, Phase]:
    """Store every table now; returns the changelog phases (items first, users after)."""
    items_first: Phase = [
        (tables.popularity, tables.popularity.store_staged(staged.entries)),
        (tables.transitions, tables.transitions.store_staged(staged.transitions)),
        (tables.event_ids, tables.event_ids.store_staged(staged.ids)),
    ]
    factors = tables.user_factors.encode_many((), ready.factors)
    lists = tables.recommendations.encode_many(ready.lists, ready.encoded)
    if staged.erased:
        factors = merge_staged(tables.user_factors.encode_many(staged.erased), factors)
        lists = merge_staged(tables.recommendations.encode_many(staged.erased), lists)
    users_after: Phase = [
        (tables.profiles, tables.profiles.store_staged(staged.profiles)),
        (tables.user_factors, tables.user_factors.store_staged(factors)),
        (tables.recommendations, tables.recommendations.store_staged(lists)),
    ]
    if staged.marks and tables.erasures is not None:
        # with the items: a mark acknowledged before the deletes is harmless (the erasure, read
        # again, deletes again), one behind them would let an old record back in
        items_first.append((tables.erasures, tables.erasures.store_staged(tables.erasures.encode_many(staged.marks))))
    if staged.erased and tables.answered is not None:
        users_after.append((tables.answered, tables.answered.store_staged(tables.answered.encode_many(staged.erased))))
    return items_first, users_after


def count_visible(outcomes: Counter, clock: BatchClock) -> None:
    """The batch's events by outcome and its freshness, once its state is visible."""
    for (topic, outcome), count in outcomes.items():
        metrics.EVENTS.labels(topic, outcome).inc(count)
    if clock.oldest is not None:
        metrics.FRESHNESS.labels("visible").observe(max(0.0, time.time() - clock.oldest))


def report(clock: BatchClock, users: int) -> None:
    """The batch's size and time; a slow one logged with the time of each step."""
    metrics.BATCH_SIZE.observe(clock.records)
    elapsed = clock.marks[-1][1] - clock.started
    metrics.BATCH_SECONDS.observe(elapsed)
    if elapsed > SLOW_BATCH_S:
        steps, last = [], clock.started
        for name, at in clock.marks:
            steps.append(f"{name} {1000 * (at - last):.1f}")
            last = at
        log.warning("slow micro-batch: %d events, %d users in %.0f ms (%s ms)",
                    clock.records, users, 1000 * elapsed, ", ".join(steps))
