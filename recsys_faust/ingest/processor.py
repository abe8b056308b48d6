"""The UserEventProcessor: one micro-batch walked down the ingest steps, in one short place.

Writes go through ``encode_many``/``store_staged`` and a ``ChangelogPipe``: one encode per value
and one Kafka record batch per changelog partition, instead of Faust's per-key send
(kafka/table.py says why). Replays are skipped by the offsets the state records and duplicates
by the ``event_ids`` table (profiles/dedup.py), so state is exact under Faust's at-least-once
delivery.

A batch is processed in two parts (``process`` folds it and hands its query to the scorer; the
returned rest stores it), so that the pipeline (streaming/pipeline.py) folds the next batch
while this one is scored.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Optional, Sequence

from faust.types import EventT

from .. import metrics
from ..kafka.table import TOMBSTONE, ChangelogPipe, merge_staged
from ..profiles.profile import ProfileConfig
from ..profiles.recent_users import RecentUsers
from ..ranking.model.active import ActiveModel
from ..streaming.routing import Rerouter
from . import fold_items, rank
from .accept import Accepted, Sorted, newest_by_partition, sort_records
from .ahead import AheadStores
from .context import IngestContext
from .erase import Erased, Eraser, Marks
from .event_ids import EventIds
from .fold_profiles import AnswerRules, OnlineCounts, UserState, fold_profiles, users_of
from .store import BatchClock, Staged, count_visible, report, store


@dataclass
class FoldedBatch:
    """A micro-batch folded into profiles and item state, its scores on their way."""

    seq: int
    clock: BatchClock
    outcomes: Counter
    touched: list[UserState]
    staged: Staged
    active: Optional[ActiveModel]
    scorings: list[rank.Scoring]
    online: OnlineCounts
    generation: int  # ``AheadStores.generation`` when the batch was folded


class Rest:
    """The rest of a folded batch: awaited to store it, or closed if it never will be."""

    def __init__(self, processor: "UserEventProcessor", batch: FoldedBatch) -> None:
        self._processor = processor
        self._batch = batch

    def __await__(self) -> Any:
        return self._processor.finish(self._batch).__await__()

    def close(self) -> None:
        self._processor.abandon(self._batch)


class UserEventProcessor:
    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.cfg = ProfileConfig.from_settings(settings)
        self.rules = AnswerRules(settings.online.attribution_window_s, settings.online.online_answers_kept,
                                 settings.online.online_items_kept)
        self.routing = Rerouter(ctx.partitions_of)
        # Item entries, users' transition histories and profiles stay readable here once
        # stored (``AheadOfStore``): the item entries are the same objects the indexes hold.
        self.ahead = AheadStores.sized(settings.ingest.profile_cache_keys, settings.ingest.state_cache_keys)
        self.event_ids = EventIds(ctx.tables.event_ids, self.ahead.ids, settings.profiles.dedup_window_s)
        self.marks = Marks(ctx.tables.erasures)
        self.eraser = Eraser(ctx, self.ahead, self.marks)
        # ids of the records of revoked partitions this worker did not apply: never acked
        # (``keep_unacked``), so no commit covers them.
        self.left_to_owner: set[int] = set()
        # Who changed last (the demo page's user picker; GET /api/users/active).
        self.recent_users = RecentUsers()
        # Changelog sends run up to RECSYS_CHANGELOG_IN_FLIGHT batches behind; the worker drains
        # them before each commit.
        self.changelog = ChangelogPipe(settings.ingest.changelog_in_flight)
        self._seq = 0

    async def process(self, records: Sequence[EventT]) -> Awaitable[None]:
        """Fold a micro-batch into state up to its scoring; returns the rest to be awaited.

        Returns once the batch's profiles and item entries are folded and its query is handed
        to the scorer. The awaitable it returns waits for the scores and stores the batch's
        tables; the pipeline folds the next batch in between, so the event loop works while the
        scoring process computes.
        """
        ctx, tables, ahead = self.ctx, self.ctx.tables, self.ahead
        self._seq += 1
        seq = self._seq
        oldest = min((rec.message.timestamp for rec in records if rec.message.timestamp), default=None)
        clock = BatchClock(len(records), time.perf_counter(), oldest)
        if oldest is not None:
            metrics.FRESHNESS.labels("started").observe(max(0.0, time.time() - oldest))
        batch = await self._accept(records)
        erased = self.eraser.drop_erased(batch)
        clock.mark("validate")
        if ctx.drift is not None:
            await ctx.drift.observe((acc.event for accepted in batch.by_user.values() for acc in accepted),
                                    backlog=ctx.backlog(records) if ctx.backlog is not None else 0)
        clock.mark("drift")
        # no await from here to the batch's fold: the item entries an erasure changes in place
        # are the indexes' own objects, put back into them by the same step
        self.eraser.erase(seq, batch, erased)
        ids = self.event_ids.lookup(batch.by_user, newest_by_partition(batch.by_user))
        users = users_of(batch.by_user, batch.served)
        folded = fold_profiles(users, ahead.profiles.read_many(tables.profiles, users), batch.by_user,
                               batch.served, ids, self.cfg, self.rules)
        id_changes = folded.new_ids + ids.clock_writes + self.event_ids.expired(ids)
        # Deletes are held too: the next batch, folded before this one is stored, must neither
        # take an expired id for a known one nor delete it a second time.
        ahead.ids.hold(seq, id_changes)
        if folded.unknown_answered:
            metrics.ANSWERS_NOT_KEPT.inc(folded.unknown_answered)
        folded.outcomes.update(erased.dropped)
        clock.mark("profiles")
        staged, profile_raws = self._fold_items(seq, folded.pop_updates, folded.interactions,
                                                folded.touched + folded.answered, id_changes, erased)
        clock.mark("popularity")
        active = ctx.ranker.models.active
        scorings = rank.submit(ctx.scorer, ctx.ranker, active, folded.touched, profile_raws)
        clock.mark("pack")
        return Rest(self, FoldedBatch(seq, clock, folded.outcomes, folded.touched, staged, active, scorings,
                                      folded.online, ahead.generation))

    async def _accept(self, records: Sequence[EventT]) -> Sorted:
        """Step 1, and what it sorted out sent: dead letters, re-routed records, not owned ones."""
        ctx = self.ctx
        batch = sort_records(
            records, owned=ctx.assigned() if ctx.assigned is not None else None, misplaced=self.routing.misplaced,
            max_bytes=ctx.settings.ingest.max_event_bytes, max_future_skew_s=ctx.settings.ingest.max_future_skew_s)
        for rec in batch.not_owned:
            metrics.EVENTS.labels(rec.message.topic, "not_owned").inc()
            self.left_to_owner.add(id(rec))
        for rec, invalid in batch.refused:
            await ctx.dead_letters.send(rec, invalid)
        for rec, user_id in batch.misplaced:
            await self.routing.resend(ctx.topic_for(rec.message.topic), rec, user_id)
        return batch

    def _fold_items(self, seq: int, pop_updates: dict[str, list[Accepted]], interactions: dict[str, list[Accepted]],
                    profiles: list[UserState], id_changes: list[tuple[str, Any, int]],
                    erased: Erased) -> tuple[Staged, list[bytes]]:
        """Step 4 on the values read ahead of the store, the batch's values encoded and held."""
        ctx, tables, ahead, settings = self.ctx, self.ctx.tables, self.ahead, self.ctx.settings
        entries = erased.popularity + fold_items.fold_popularity(
            pop_updates, ahead.entries.read_many(tables.popularity, fold_items.popularity_keys(pop_updates)),
            weights=settings.popularity.weights, bucket_s=settings.popularity.popularity_bucket_s, retention_s=settings.popularity.trending_window_s)
        keys = fold_items.history_keys(interactions)
        updates, histories = fold_items.fold_histories(
            interactions, keys, ahead.transitions.read_many(tables.transitions, keys), self.cfg.recent_items)
        transitions = fold_items.fold_transitions(
            updates, ahead.transitions.read_many(tables.transitions, fold_items.transition_keys(updates)),
            settings.ranking.transitions_max_successors)
        # The histories after the entries: in one changelog partition, in this order, a history
        # that survived a crash never holds an event whose count changes did not.
        transitions = erased.transitions + transitions + histories
        profile_writes, profile_raws = tables.profiles.encode_many_raw(profiles)
        if erased.users:
            profile_writes = merge_staged(tables.profiles.encode_many(erased.user_deletes()), profile_writes)
        transition_writes, transition_raws = tables.transitions.encode_many_raw(transitions)
        staged = Staged(profile_writes, tables.popularity.encode_many(entries), transition_writes,
                        tables.event_ids.encode_many(erased.ids + id_changes), erased.user_deletes(), erased.marks)
        # This worker's own writes count at once; other partitions arrive via the changelog.
        ctx.index.put_many([(key, entry) for key, entry, _ in entries])
        ctx.ranker.transitions.put_many([(key, entry) for key, entry, _ in transitions], transition_raws)
        ahead.profiles.hold(seq, profiles)
        ahead.entries.hold(seq, entries)
        # an erased history is held as missing (None), never as the TOMBSTONE staged for the store
        ahead.transitions.hold(seq, [(k, None if v is TOMBSTONE else v, p) for k, v, p in transitions])
        return staged, profile_raws

    def abandon(self, b: FoldedBatch) -> None:
        """A batch that will not be stored (the pipeline closed): its folded values must not
        stand in for the stored ones, or its events, read again, would look applied."""
        self.ahead.release(b.seq)
        if b.staged.marks:
            self.marks.forget()  # a mark set by a batch never stored: read from the table again
        for _, scoring in b.scorings:
            scoring.cancel()

    async def finish(self, b: FoldedBatch) -> None:
        """The rest of a batch: its scores, the ready lists, and every table stored in one step."""
        ctx = self.ctx
        b.clock.mark("overlap")
        stored = False
        try:
            scored = await rank.collect(b.scorings, len(b.touched))
            if b.scorings:
                b.clock.mark("scoring")
            ready = rank.ready_writes(ctx.ranker, b.active, b.touched, scored, time.time())
            items_first, users_after = store(ctx.tables, b.staged, ready)
            stored = b.generation == self.ahead.generation
        finally:
            # Stored (or failed: the worker stops and the batch is read again): later batches
            # read these keys from the tables again, or from what is kept of them.
            self.ahead.release(b.seq, stored)
        if b.staged.erased:
            self.recent_users.forget(user_id for user_id, _, _ in b.staged.erased)
        self.recent_users.touch(user_id for user_id, _, _ in b.touched)
        for a in b.online.answers:
            ctx.online.answered(a.key, a.items, a.hit)
        for i in b.online.interactions:
            ctx.online.interacted(i.hits, i.exposed, i.from_answer)
        count_visible(b.outcomes, b.clock)
        b.clock.mark("store")
        await self.changelog.send(items_first, users_after)
        b.clock.mark("changelog")
        report(b.clock, len(b.touched))

    def keep_unacked(self, rec: EventT) -> bool:
        """Whether ``rec`` must not be acked (its partition's new owner applies it); asked once."""
        if id(rec) in self.left_to_owner:
            self.left_to_owner.discard(id(rec))
            return True
        return False

    def forget_kept(self) -> None:
        """Partitions changed hands (a rebalance): values kept of stored batches are read from
        the tables again, where a partition's recovery may have changed them."""
        self.ahead.forget()
        self.marks.forget()
