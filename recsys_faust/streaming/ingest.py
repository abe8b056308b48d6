"""The UserEventProcessor: one micro-batch of input records -> table state.

Per batch: validate every record (bad ones to the dead-letter topic), re-route records that
sit on another partition than their user_id hashes to, fold each user's events into the
profile (one read, one write per user), add interactions to the per-partition popularity
entries (one write per touched item), and refresh each touched user's ready list. Replays are
skipped by the offsets and event ids the state records, so state is exact under Faust's
at-least-once delivery.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from faust.types import EventT, TableT, TopicT

from .. import metrics
from ..events.model import Event, Invalid
from ..events.validate import validate_event
from ..kafka.partitioning import user_partition
from ..popularity.trending import PopularityIndex, apply_to_entry, entry_key, new_entry
from ..profiles.profile import APPLIED, DUPLICATE, ProfileConfig, apply_event, new_profile
from ..serving.service import Recommender
from ..settings import Settings
from .context import as_current
from .deadletters import DeadLetters

log = logging.getLogger(__name__)


@dataclass
class _Accepted:
    event: Event
    source: tuple[str, int, int]
    record: EventT


class UserEventProcessor:
    def __init__(
        self,
        settings: Settings,
        *,
        profiles: TableT,
        recommendations: TableT,
        popularity: TableT,
        user_factors: TableT,
        index: PopularityIndex,
        recommender: Recommender,
        dead_letters: DeadLetters,
        topic_for: Callable[[str], TopicT],
        partitions_of: Callable[[str], Optional[int]],
    ) -> None:
        self.settings = settings
        self.cfg = ProfileConfig.from_settings(settings)
        self.profiles = profiles
        self.recommendations = recommendations
        self.popularity = popularity
        self.user_factors = user_factors
        self.index = index
        self.recommender = recommender
        self.dead_letters = dead_letters
        self.topic_for = topic_for
        self.partitions_of = partitions_of

    async def process(self, records: Sequence[EventT]) -> None:
        started = time.perf_counter()
        by_user: dict[str, list[_Accepted]] = defaultdict(list)
        if log.isEnabledFor(logging.DEBUG):
            spans: dict[tuple[str, int], list[int]] = defaultdict(list)
            for rec in records:
                spans[(rec.message.topic, rec.message.partition)].append(rec.message.offset)
            log.debug("batch offsets %s", {f"{t}[{p}]": (min(o), max(o), len(o)) for (t, p), o in spans.items()})
        for rec in records:
            msg = rec.message
            result = validate_event(
                msg.topic, msg.value, max_bytes=self.settings.max_event_bytes,
                max_future_skew_s=self.settings.max_future_skew_s,
            )
            if isinstance(result, Invalid):
                await self.dead_letters.send(rec, result)
                continue
            n = self.partitions_of(msg.topic)
            if n and user_partition(result.user_id, n) != msg.partition:
                await self._reroute(rec, result)
                continue
            by_user[result.user_id].append(_Accepted(result, (msg.topic, msg.partition, msg.offset), rec))

        pop_updates: dict[str, tuple[list[_Accepted], EventT]] = {}
        touched: list[tuple[str, dict, EventT]] = []
        for user_id, accepted in by_user.items():
            last_record = accepted[-1].record
            with as_current(last_record):
                profile = self.profiles.get(user_id) or new_profile(user_id)
                changed = False
                for acc in accepted:
                    outcome = apply_event(profile, acc.event, acc.source, self.cfg)
                    metrics.EVENTS.labels(acc.source[0], outcome).inc()
                    changed |= outcome == APPLIED
                    # Popularity entries dedup by their own offsets (they may lag the profile
                    # after a crash); only a second record of the same event_id is skipped here.
                    if acc.event.is_interaction and outcome != DUPLICATE:
                        key = entry_key(acc.event.product_id, acc.source[1])
                        pop_updates.setdefault(key, ([], acc.record))[0].append(acc)
                if changed:
                    self.profiles[user_id] = profile
                    touched.append((user_id, profile, last_record))

        local_entries = []
        for key, (accs, record) in pop_updates.items():
            with as_current(record):
                entry = self.popularity.get(key) or new_entry(accs[0].event.product_id)
                changed = False
                # Grouped by user above, so restore offset order: the entry's replay check
                # assumes offsets of one topic-partition arrive ascending.
                for acc in sorted(accs, key=lambda a: (a.source[0], a.source[2])):
                    ev = acc.event
                    changed |= apply_to_entry(
                        entry, ts=ev.ts, weight=self.settings.weights.weight(ev.kind, ev.rating),
                        category=ev.category, source=acc.source,
                        bucket_s=self.settings.popularity_bucket_s,
                        retention_s=self.settings.trending_window_s,
                    )
                if changed:
                    self.popularity[key] = entry
                    local_entries.append((key, entry))
        # This worker's own writes count at once; other partitions arrive via the changelog.
        self.index.put_many(local_entries)

        now = time.time()
        version = self.recommender.model_version
        # Fold-in: each touched user's vector from the item factors and the recent interactions,
        # then every ALS user of the batch scored in one matrix product.
        lists = self.recommender.build_lists([profile for _, profile, _ in touched])
        for (user_id, profile, record), (items, strategy, vector) in zip(touched, lists):
            with as_current(record):
                if vector is not None:
                    self.user_factors[user_id] = {"model_version": version,
                                                  "vector": [round(float(x), 6) for x in vector]}
                self.recommendations[user_id] = self.recommender.ready_entry(items, strategy, now)
        metrics.BATCH_SIZE.observe(len(records))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _reroute(self, rec: EventT, event: Event) -> None:
        """Send a record that landed on the wrong partition to the one its user_id hashes to."""
        msg = rec.message
        metrics.REROUTED.labels(msg.topic).inc()
        await self.topic_for(msg.topic).send(key=event.user_id.encode("utf-8"), value=msg.value)

