"""The UserEventProcessor: one micro-batch of input records -> table state.

Per batch: validate every record (bad ones to the dead-letter topic), re-route records that
sit on another partition than their user_id hashes to, fold each user's events into the
profile (one read, one write per user), add interactions to the per-partition popularity and
transition entries (one write per touched item), and refresh each touched user's ready list. Writes go
through ``encode_many``/``store_staged`` and a ``ChangelogPipe``: one encode per value and one Kafka record
batch per changelog partition, instead of Faust's per-key send (kafka/table.py says why). Replays are
skipped by the offsets the state records and duplicates by the ``event_ids`` table
(profiles/dedup.py), so state is exact under Faust's at-least-once delivery.

A batch is processed in two steps (``process`` folds it and hands its query to the scorer; the
returned rest stores it), so that the pipeline folds the next batch while this one is scored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, Awaitable, Callable, Iterable, Optional, Sequence

from faust.types import EventT, TopicT

from .. import metrics
from ..events.model import TOPIC_SERVED, Event, Invalid, Served, Source
from ..events.validate import validate_event, validate_served
from ..kafka.table import TOMBSTONE, ChangelogPipe, StagedWrites, StrKeyTable
from ..popularity.trending import PopularityIndex, apply_to_entry, entry_key, new_entry
from ..profiles import dedup
from ..profiles.profile import APPLIED, DUPLICATE, REPLAY, ProfileConfig, apply_event, new_profile
from ..profiles.recent_users import RecentUsers
from ..online import attribution
from ..online.stats import OnlineStats
from ..ranking import transition_index as tix
from ..ranking.active import ActiveModel
from ..ranking.ranker import Ranker
from ..ranking.ready_values import ready_entry
from ..ranking.scorer import InlineScorer, Scorer
from ..ranking.strategies import POPULARITY_MODEL_VERSION
from ..settings import Settings
from .deadletters import DeadLetters
from .routing import Rerouter
from .drift import DriftMonitor

log = logging.getLogger(__name__)

#: A micro-batch slower than this is logged with the time of each step (it is freshness lost).
SLOW_BATCH_S = 0.05


@dataclass
class _Accepted:
    event: Event
    source: Source
    record: EventT


@dataclass
class _Served:
    served: Served
    source: Source


@dataclass
class _Online:
    """A batch's online counts, added to the stats once the batch is stored."""

    answers: list[attribution.AnswerFolded]
    interactions: list[attribution.InteractionFolded]


@dataclass
class _Folded:
    """A micro-batch folded into profiles and popularity, its scores on their way."""

    seq: int
    records: int
    started: float
    oldest: Optional[float]
    marks: list[tuple[str, float]]
    outcomes: Counter
    touched: list[tuple[str, dict, int]]
    profile_writes: StagedWrites
    entry_writes: StagedWrites
    transition_writes: StagedWrites
    id_writes: StagedWrites
    active: Optional[ActiveModel]
    # (positions in ``touched``, their scored rows and values on the way: rows are indices into
    # those positions): one per A/B variant ranked by the model
    scorings: list[tuple[list[int], asyncio.Future]]
    online: _Online
    generation: int  # ``UserEventProcessor._kept_generation`` when the batch was folded


class _Rest:
    """The rest of a folded batch: awaited to store it, or closed if it never will be."""

    def __init__(self, processor: "UserEventProcessor", folded: _Folded) -> None:
        self._processor = processor
        self._folded = folded

    def __await__(self) -> Any:
        return self._processor._finish(self._folded).__await__()

    def close(self) -> None:
        self._processor._abandon(self._folded)


class AheadOfStore:
    """Values folded by batches not stored yet, for the batches folded after them; and, up to
    ``keep`` keys, the values of the batches stored since, for the batches after those.

    The pipeline folds batch N+1 while batch N is being scored, before N is stored: N+1 must
    start from N's profiles, not from the older ones in RocksDB. Each batch's values are held in
    a map of their own, looked up newest batch first, and dropped whole when that batch is
    stored: at most two or three batches are held, and releasing one costs nothing per key
    (visiting a batch's keys to release them was 2% of the worker).

    A stored batch's values stay readable here (``keep`` > 0) as long as nothing but this
    worker's batches can change them: the next batch to fold an item's entry takes the object
    it stored, rather than reading it back from RocksDB and decoding it again (a read and a
    decode per entry were 3 to 5% of a busy worker's event loop: a popular item's entry is
    folded by nearly every batch). A partition that changes hands can change underneath (its
    recovery writes the store): ``forget`` drops everything kept on every rebalance. Past
    ``keep`` keys the first kept go first.
    """

    def __init__(self, keep: int = 0) -> None:
        self._batches: dict[int, dict[str, Any]] = {}  # seq -> key -> value, oldest batch first
        self._keep = keep
        self._stored: dict[str, Any] = {}  # key -> value of a stored batch (at most ``keep``)

    def hold(self, seq: int, items: Iterable[tuple[str, Any, int]]) -> None:
        """Hold the ``(key, value, partition)`` items folded by batch ``seq`` (seqs ascending)."""
        values = self._batches.setdefault(seq, {})
        for key, value, _ in items:
            values[key] = value

    def release(self, seq: int, stored: bool = False) -> None:
        """Batch ``seq`` is stored (``stored``), or will not be: its keys are read from the
        table again, except those a later batch folded since (held in that batch's map) and,
        once stored, those kept."""
        values = self._batches.pop(seq, None)
        if not (stored and values and self._keep):
            return
        kept = self._stored
        kept.update(values)
        over = len(kept) - self._keep
        if over > 0:
            for key in list(islice(kept, over)):
                del kept[key]

    def forget(self) -> None:
        """Drop the values kept of stored batches (read from the table from now on)."""
        self._stored.clear()

    def held(self, key: str) -> Optional[Any]:
        """The value held for ``key`` (None if none is)."""
        for values in reversed(self._batches.values()):
            value = values.get(key, _NOT_HELD)
            if value is not _NOT_HELD:
                return value
        return self._stored.get(key)

    def read_many(self, table: StrKeyTable, keys: Sequence[tuple[str, int]]) -> list[Optional[Any]]:
        """``table.read_many`` with the values held or kept here in place of the stored ones."""
        if not self._batches and not self._stored:
            return table.read_many(keys)
        maps = list(reversed(self._batches.values()))
        if self._stored:
            maps.append(self._stored)
        out: list[Optional[Any]] = [None] * len(keys)
        missing: list[int] = []
        for pos, (key, _) in enumerate(keys):
            for values in maps:
                value = values.get(key, _NOT_HELD)
                if value is not _NOT_HELD:
                    out[pos] = value
                    break
            else:
                missing.append(pos)
        if missing:
            for pos, value in zip(missing, table.read_many([keys[pos] for pos in missing])):
                out[pos] = value
        return out

    def __len__(self) -> int:
        """Distinct keys held (not those kept of stored batches)."""
        return len(set().union(*self._batches.values()))


_NOT_HELD = object()


class UserEventProcessor:
    def __init__(
        self,
        settings: Settings,
        *,
        profiles: StrKeyTable,
        recommendations: StrKeyTable,
        popularity: StrKeyTable,
        transitions: StrKeyTable,
        user_factors: StrKeyTable,
        event_ids: StrKeyTable,
        index: PopularityIndex,
        ranker: Ranker,
        dead_letters: DeadLetters,
        topic_for: Callable[[str], TopicT],
        partitions_of: Callable[[str], Optional[int]],
        drift: Optional[DriftMonitor] = None,
        scorer: Optional[Scorer] = None,
        assigned: Optional[Callable[[], Any]] = None,
        online: Optional[OnlineStats] = None,
    ) -> None:
        self.settings = settings
        # What users took of the answers served (online/): counted here, exported by the worker.
        self.online = online if online is not None else OnlineStats()
        # The topic-partitions this worker owns now (a set of (topic, partition)); None: all.
        self.assigned = assigned
        # ids of the records of revoked partitions this worker did not apply: never acked
        # (``keep_unacked``), so no commit covers them.
        self.left_to_owner: set[int] = set()
        self.cfg = ProfileConfig.from_settings(settings)
        self.profiles = profiles
        self.recommendations = recommendations
        self.popularity = popularity
        self.transitions = transitions
        self.user_factors = user_factors
        self.event_ids = event_ids
        self.sweeper = dedup.Sweeper(dedup.EPOCH_PREFIX)
        self.legacy_sweeper = dedup.Sweeper(dedup.TIME_PREFIX)
        # Partitions whose event_ids hold keys an older version wrote (profiles/dedup.py): looked
        # up once per partition, and dropped once their last legacy key has expired.
        self._legacy: dict[int, bool] = {}
        # Who changed last (the demo page's user picker; GET /api/users/active).
        self.recent_users = RecentUsers()
        self.index = index
        self.ranker = ranker
        self.dead_letters = dead_letters
        self.topic_for = topic_for
        self.routing = Rerouter(partitions_of)
        self.drift = drift
        # The ALS maths of a batch runs in a scoring process by default (ranking/scorer.py says
        # why): packing the query reads the profiles and stays here; the values to store come
        # back encoded.
        self.scorer: Scorer = scorer if scorer is not None else InlineScorer()
        self._seq = 0
        # Item entries, users' transition histories and profiles stay readable here once
        # stored (``AheadOfStore``): the item entries are the same objects the indexes hold.
        keep = settings.state_cache_keys
        self._profiles_ahead = AheadOfStore(settings.profile_cache_keys)
        self._entries_ahead = AheadOfStore(keep)
        self._transitions_ahead = AheadOfStore(keep)
        self._ids_ahead = AheadOfStore()
        # Bumped by ``forget_kept``: a batch folded before it does not keep its values after it.
        self._kept_generation = 0
        # Changelog sends run one batch behind; the worker drains them before each commit.
        self.changelog = ChangelogPipe()

    async def process(self, records: Sequence[EventT]) -> Awaitable[None]:
        """Fold a micro-batch into state up to its scoring; returns the rest to be awaited.

        Returns once the batch's profiles and item entries are folded and its query is handed
        to the scorer. The awaitable it returns waits for the scores and stores the batch's
        tables; the pipeline (streaming/pipeline.py) folds the next batch in between, so the
        event loop works while the scoring process computes.
        """
        started = time.perf_counter()
        self._seq += 1
        seq = self._seq
        oldest = min((rec.message.timestamp for rec in records if rec.message.timestamp), default=None)
        if oldest is not None:
            metrics.FRESHNESS.labels("started").observe(max(0.0, time.time() - oldest))
        by_user, served = await self._accept(records)
        marks = [("validate", time.perf_counter())]
        if self.drift is not None:
            await self.drift.observe(acc.event for accepted in by_user.values() for acc in accepted)
        marks.append(("drift", time.perf_counter()))
        newest = self._newest_by_partition(by_user)
        epochs, clock_writes = self._epochs(newest)
        touched, outcomes, pop_updates, interactions, new_ids, answered, online = self._fold_profiles(
            by_user, served, epochs)
        id_changes = new_ids + clock_writes + self._expired_ids(epochs, newest)
        id_writes = self.event_ids.encode_many(id_changes)
        # Deletes are held too: the next batch, folded before this one is stored, must neither
        # take an expired id for a known one nor delete it a second time.
        self._ids_ahead.hold(seq, id_changes)
        marks.append(("profiles", time.perf_counter()))
        local_entries = self._fold_popularity(pop_updates)
        trans_updates, histories = self._fold_histories(interactions)
        # The histories after the entries: in one changelog partition, in this order, a history
        # that survived a crash never holds an event whose count changes did not.
        local_transitions = self._fold_transitions(trans_updates) + histories
        # Encoded now: the next batch may fold more events into these objects before this
        # one is stored; until then it reads them from here rather than from RocksDB.
        # Users whose only change is a served answer are stored but not ranked again: an answer
        # changes no score.
        profile_writes, profile_raws = self.profiles.encode_many_raw(touched + answered)
        entry_writes = self.popularity.encode_many(local_entries)
        transition_writes, transition_raws = self.transitions.encode_many_raw(local_transitions)
        # This worker's own writes count at once; other partitions arrive via the changelog.
        self.index.put_many([(key, entry) for key, entry, _ in local_entries])
        self.ranker.transitions.put_many([(key, entry) for key, entry, _ in local_transitions], transition_raws)
        self._profiles_ahead.hold(seq, touched + answered)
        self._entries_ahead.hold(seq, local_entries)
        self._transitions_ahead.hold(seq, local_transitions)
        marks.append(("popularity", time.perf_counter()))
        # Fold-in, transitions and blend of every touched user against one snapshot of the
        # active model, handed to the scorer now and awaited by ``_finish``.
        # A large batch is packed where it is scored (ranking/scorer.py, ``follow``), from the
        # profiles' JSON just encoded; ``pack`` is the same packing here.
        active = self.ranker.models.active
        scorings: list[tuple[list[int], asyncio.Future]] = []
        if active is not None and touched:
            for positions, weights in self._variant_groups(touched):
                profiles = [touched[i][1] for i in positions]
                scorings.append((positions, self.scorer.submit_profiles(
                    active.scoring, [profile_raws[i] for i in positions], self.ranker.pack_spec(blend_weights=weights),
                    time.time(), partial(self.ranker.pack, active, profiles, blend_weights=weights))))
        marks.append(("pack", time.perf_counter()))
        return _Rest(self, _Folded(
            seq=seq, records=len(records), started=started, oldest=oldest, marks=marks, outcomes=outcomes,
            touched=touched, profile_writes=profile_writes, entry_writes=entry_writes,
            transition_writes=transition_writes, id_writes=id_writes, active=active, scorings=scorings,
            online=online, generation=self._kept_generation))

    def _variant_groups(self, touched: list[tuple[str, dict, int]]) -> list[tuple[list[int], Optional[tuple[float, float]]]]:
        """The touched users' positions grouped by how the model ranks them: all together
        without an A/B test, else one group per variant (a variant without the model is left
        to the fallback lists)."""
        if not self.ranker.variants:
            return [(list(range(len(touched))), None)]
        groups: dict[str, tuple[list[int], tuple[float, float]]] = {}
        for pos, (user_id, _, _) in enumerate(touched):
            variant = self.ranker.variant_of(user_id)
            if variant is not None and variant.uses_model:
                groups.setdefault(variant.name, ([], variant.blend_weights(self.ranker.blend_weights)))[0].append(pos)
        return list(groups.values())

    async def _accept(self, records: Sequence[EventT]) -> tuple[dict[str, list[_Accepted]], dict[str, list[_Served]]]:
        """The batch's valid events of this worker's partitions, by user, and its served answers
        (recsys-served) by user; the other records are dead-lettered, re-routed, or (a revoked
        partition's) left unacked to their owner."""
        if log.isEnabledFor(logging.DEBUG):
            spans: dict[tuple[str, int], list[int]] = defaultdict(list)
            for rec in records:
                spans[(rec.message.topic, rec.message.partition)].append(rec.message.offset)
            log.debug("batch offsets %s", {f"{t}[{p}]": (min(o), max(o), len(o)) for (t, p), o in spans.items()})
        by_user: dict[str, list[_Accepted]] = defaultdict(list)
        served: dict[str, list[_Served]] = defaultdict(list)
        # A record of a partition revoked since it was fetched belongs to its new owner, which
        # reads it again from the last committed offset: applied here, it would fold into this
        # worker's stale copy of that partition's state (its item entries into the index every
        # worker serves from; measured: a few pairs lost on the old owner in one two-worker run
        # in five, when a revocation outlasted the rebalance timeout).
        owned = self.assigned() if self.assigned is not None else None
        for rec in records:
            msg = rec.message
            if owned is not None and (msg.topic, msg.partition) not in owned:
                metrics.EVENTS.labels(msg.topic, "not_owned").inc()
                self.left_to_owner.add(id(rec))
                continue
            if msg.topic == TOPIC_SERVED:
                answer = validate_served(msg.value, max_bytes=self.settings.max_event_bytes)
                if isinstance(answer, Invalid):
                    await self.dead_letters.send(rec, answer)
                elif self.routing.misplaced(msg.topic, msg.partition, answer.user_id):
                    await self.routing.resend(self.topic_for(msg.topic), rec, answer.user_id)
                else:
                    served[answer.user_id].append(_Served(answer, Source(msg.topic, msg.partition, msg.offset)))
                continue
            result = validate_event(
                msg.topic, msg.value, max_bytes=self.settings.max_event_bytes,
                max_future_skew_s=self.settings.max_future_skew_s,
            )
            if isinstance(result, Invalid):
                await self.dead_letters.send(rec, result)
                continue
            if self.routing.misplaced(msg.topic, msg.partition, result.user_id):
                await self.routing.resend(self.topic_for(msg.topic), rec, result.user_id)
                continue
            by_user[result.user_id].append(_Accepted(result, Source(msg.topic, msg.partition, msg.offset), rec))
        return by_user, served

    def _fold_profiles(self, by_user: dict[str, list[_Accepted]], served: Optional[dict[str, list[_Served]]],
                       epochs: dict[int, int]) -> tuple[list[tuple[str, dict, int]], Counter, dict[str, list[_Accepted]],
                                  dict[str, list[_Accepted]], list[tuple[str, Any, int]], list[tuple[str, dict, int]],
                                  _Online]:
        """Each user's served answers and events into their profile (one read, one write per
        user); returns the profiles changed by events, the outcomes, what the item entries and
        the users' transition histories must fold next, the ``event_ids`` entries of the events
        applied, the profiles changed by answers alone, and the online counts."""
        served = served or {}
        online = _Online([], [])
        answered: list[tuple[str, dict, int]] = []
        window_s = self.settings.attribution_window_s
        pop_updates: dict[str, list[_Accepted]] = {}
        interactions: dict[str, list[_Accepted]] = {}
        touched: list[tuple[str, dict, int]] = []
        new_ids: list[tuple[str, Any, int]] = []
        outcomes: Counter[tuple[str, str]] = Counter()  # counted per batch: labels() per event cost 1%
        users = [(user_id, acc[-1].source.partition) for user_id, acc in by_user.items()]
        users += [(user_id, answers[-1].source.partition) for user_id, answers in served.items() if user_id not in by_user]
        stored = self._profiles_ahead.read_many(self.profiles, users)
        # Each event's id keys (profiles/dedup.py): its epoch's first, where a new one is recorded.
        candidates = [self._id_keys(user_id, acc.event.event_id, acc.source.partition, epochs)
                      for user_id, accepted in by_user.items() for acc in accepted]
        id_keys = [(key, p) for keys_, p in candidates for key in keys_]
        # The batch's own applied ids join these as it goes (a duplicate inside one batch).
        known = {key: value for (key, _), value in zip(id_keys, self._ids_ahead.read_many(self.event_ids, id_keys))
                 if value is not None and value is not TOMBSTONE}
        keys = iter(candidates)  # in the order of the loop below
        for (user_id, partition), profile in zip(users, stored):
            profile = profile or new_profile(user_id)
            # Answers first: an interaction of the same batch is then measured against them.
            took_answer = self._fold_answers(profile, served.get(user_id, ()), online)
            accepted = by_user.get(user_id, ())
            changed = False
            for acc in accepted:
                ev = acc.event
                ev_keys = next(keys)[0]
                seen = dedup.verdict(next((known[k] for k in ev_keys if k in known), None), acc.source)
                if seen == dedup.DUPLICATE:
                    outcomes[(acc.source.topic, DUPLICATE)] += 1
                    continue
                outcome = apply_event(profile, ev, acc.source, self.cfg)
                # A replayed event the table does not know (applied before the table existed, or
                # expired) is recorded too: its later duplicates are then found.
                if seen == dedup.NEW and outcome in (APPLIED, REPLAY):
                    known[ev_keys[0]] = value = dedup.entry(ev.ts, acc.source)
                    new_ids.append((ev_keys[0], value, acc.source.partition))
                outcomes[(acc.source.topic, outcome)] += 1
                changed |= outcome == APPLIED
                # Popularity entries dedup by their own offsets (they may lag the profile
                # after a crash); only a second record of the same event_id is skipped here.
                # The transition histories, likewise, by theirs (_fold_histories).
                if ev.is_interaction and outcome != DUPLICATE:
                    pop_updates.setdefault(entry_key(ev.product_id, acc.source.partition), []).append(acc)
                    interactions.setdefault(user_id, []).append(acc)
                if outcome == APPLIED and ev.is_interaction and profile.get("answers"):
                    online.interactions.append(attribution.fold_interaction(profile, ev.product_id, ev.ts,
                                                                            window_s=window_s))
            if changed:
                touched.append((user_id, profile, partition))
            elif took_answer:
                answered.append((user_id, profile, partition))
        return touched, outcomes, pop_updates, interactions, new_ids, answered, online

    def _fold_answers(self, profile: dict, served: Sequence[_Served], online: _Online) -> bool:
        """A user's served answers into their profile (replays skipped by the profile's
        offsets, like events); True when one was new. Not counted in ``recsys_events_total``,
        which counts the shop's events: the answers are counted by the online figures."""
        took = False
        for s in served:
            topic, partition, offset = s.source
            tp = f"{topic}:{partition}"
            last = profile["applied"].get(tp)
            if last is not None and offset <= last:
                continue
            profile["applied"][tp] = offset
            online.answers.append(attribution.fold_answer(
                profile, s.served, window_s=self.settings.attribution_window_s,
                kept=self.settings.online_answers_kept, items_kept=self.settings.online_items_kept))
            took = True
        return took

    def _fold_histories(self, interactions: dict[str, list[_Accepted]]) -> tuple[
            dict[str, list[tuple[Any, dict[str, int]]]], list[tuple[str, dict, int]]]:
        """Each user's interactions into their transition history (ranking/transition_index.py
        says why it is not the profile's rows); returns the count changes by entry key and the
        changed histories."""
        trans_updates: dict[str, list[tuple[Any, dict[str, int]]]] = {}
        changed: list[tuple[str, dict, int]] = []
        keys = [(tix.history_key(user_id), accs[0].source.partition) for user_id, accs in interactions.items()]
        max_rows, day_s = self.cfg.recent_items, tix.DAY_S
        for (key, partition), accs, history in zip(keys, interactions.values(),
                                                    self._transitions_ahead.read_many(self.transitions, keys)):
            history = history or tix.new_history()
            folded = False
            for acc in accs:
                ev = acc.event
                deltas = tix.fold_into_history(history, ev.product_id, ev.kind, ev.ts, acc.source, max_rows, day_s)
                if deltas is None:
                    continue  # a replay: its count changes are in the entries already
                folded = True
                for src, counts in deltas.items():
                    trans_updates.setdefault(tix.entry_key(src, partition), []).append((acc.source, counts))
            if folded:
                changed.append((key, history, partition))
        return trans_updates, changed

    @staticmethod
    def _newest_by_partition(by_user: dict[str, list[_Accepted]]) -> dict[int, float]:
        """The newest event time of the batch on each of its partitions."""
        newest: dict[int, float] = {}
        for accepted in by_user.values():
            for acc in accepted:
                p = acc.source.partition
                if acc.event.ts > newest.get(p, -1.0):
                    newest[p] = acc.event.ts
        return newest

    def _epochs(self, newest: dict[int, float]) -> tuple[dict[int, int], list[tuple[str, Any, int]]]:
        """Each partition's de-dup epoch for this batch (its clock, moved on by the batch's newest
        event if that is later), and the clock writes of the partitions it moved on."""
        partitions = list(newest)
        clocks = self._ids_ahead.read_many(self.event_ids, [(dedup.clock_key(p), p) for p in partitions])
        epochs: dict[int, int] = {}
        writes: list[tuple[str, Any, int]] = []
        for p, clock in zip(partitions, clocks):
            epoch = dedup.epoch_of(newest[p], self.settings.dedup_window_s)
            if isinstance(clock, int) and clock >= epoch:
                epoch = clock
            else:
                writes.append((dedup.clock_key(p), epoch, p))
            epochs[p] = epoch
        return epochs, writes

    def _id_keys(self, user_id: str, event_id: str, partition: int,
                 epochs: dict[int, int]) -> tuple[tuple[str, ...], int]:
        """The ``event_ids`` keys an event is looked up under (its epoch's first), and its partition."""
        epoch = epochs[partition]
        keys: tuple[str, ...] = (dedup.epoch_key(epoch, user_id, event_id),)
        if epoch > 0:
            keys += (dedup.epoch_key(epoch - 1, user_id, event_id),)
        if self._has_legacy(partition):
            keys += (dedup.id_key(user_id, event_id),)
        return keys, partition

    def _has_legacy(self, partition: int) -> bool:
        legacy = self._legacy.get(partition)
        if legacy is None:
            legacy = self._legacy[partition] = bool(
                self.event_ids.keys_between(partition, dedup.ID_PREFIX, dedup.ID_END, 1)
                or self.event_ids.keys_between(partition, dedup.TIME_PREFIX, dedup.TIME_END, 1))
        return legacy

    def _expired_ids(self, epochs: dict[int, int], newest: dict[int, float]) -> list[tuple[str, Any, int]]:
        """Deletes for the ``event_ids`` keys that expired on the batch's partitions (a range scan
        when the clock has entered an epoch; and of the legacy keys, by the hour; dedup.Sweeper)."""
        deletes: list[tuple[str, Any, int]] = []
        for partition, epoch in epochs.items():
            expired = self._sweep(self.sweeper, partition, dedup.expired_epochs_below(epoch))
            deletes.extend((key, TOMBSTONE, partition) for key in expired)
            if self._has_legacy(partition):
                bound = dedup.expired_below(newest[partition], self.settings.dedup_window_s)
                if (self.legacy_sweeper.due(partition, bound) is not None
                        and not self.event_ids.keys_between(partition, dedup.TIME_PREFIX, dedup.TIME_END, 1)):
                    self._legacy[partition] = False  # the last legacy key has expired
                    continue
                expired = self._sweep(self.legacy_sweeper, partition, bound)
                for tk in expired:
                    deletes.append((tk, TOMBSTONE, partition))
                    deletes.append((dedup.id_key_of(tk), TOMBSTONE, partition))
        return deletes

    def _sweep(self, sweeper: dedup.Sweeper, partition: int, bound: str) -> list[str]:
        """The expired keys below ``bound`` to delete now on ``partition``, if a scan is due."""
        start = sweeper.due(partition, bound)
        if start is None:
            return []
        keys = self.event_ids.keys_between(partition, start, bound, dedup.SWEEP_MAX_KEYS)
        sweeper.scanned(partition, bound, keys, complete=len(keys) < dedup.SWEEP_MAX_KEYS)
        held = self._ids_ahead.held
        # A key deleted by the batch before and not stored yet is left alone: measured, every
        # expired id was once deleted twice.
        expired = [key for key in keys if held(key) is not TOMBSTONE]
        if expired:
            metrics.DEDUP_EXPIRED.inc(len(expired))
        return expired

    def _fold_popularity(self, pop_updates: dict[str, list[_Accepted]]) -> list[tuple[str, dict, int]]:
        """The batch's interactions into the per-partition popularity entries (one write each)."""
        local_entries = []
        stored = self._entries_ahead.read_many(
            self.popularity, [(key, accs[0].source.partition) for key, accs in pop_updates.items()])
        for (key, accs), entry in zip(pop_updates.items(), stored):
            entry = entry or new_entry(accs[0].event.product_id)
            changed = False
            # Grouped by user above, so restore offset order: the entry's replay check
            # assumes offsets of one topic-partition arrive ascending.
            for acc in sorted(accs, key=lambda a: (a.source.topic, a.source.offset)):
                ev = acc.event
                changed |= apply_to_entry(
                    entry, ts=ev.ts, weight=self.settings.weights.weight(ev.kind, ev.rating),
                    category=ev.category, source=acc.source,
                    bucket_s=self.settings.popularity_bucket_s,
                    retention_s=self.settings.trending_window_s,
                )
            if changed:
                local_entries.append((key, entry, accs[0].source.partition))
        return local_entries

    def _fold_transitions(self, trans_updates: dict[str, list[tuple[Any, dict[str, int]]]]) -> list[tuple[str, dict, int]]:
        """The batch's count changes into the per-partition transition entries (one write each)."""
        local_transitions = []
        stored = self._transitions_ahead.read_many(
            self.transitions, [(key, ups[0][0].partition) for key, ups in trans_updates.items()])
        cap = self.settings.transitions_max_successors
        for (key, ups), entry in zip(trans_updates.items(), stored):
            entry = entry or tix.new_entry(key.rpartition("@")[0])
            changed = False
            for source, dsts in sorted(ups, key=lambda u: (u[0].topic, u[0].offset)):
                changed |= tix.apply_successors(entry, dsts, source, cap)
            if changed:
                local_transitions.append((key, entry, ups[0][0].partition))
        return local_transitions

    def _abandon(self, b: "_Folded") -> None:
        """A batch that will not be stored (the pipeline closed): its folded values must not
        stand in for the stored ones, or its events, read again, would look applied."""
        self._release(b.seq)
        for _, scoring in b.scorings:
            scoring.cancel()

    async def _finish(self, b: "_Folded") -> None:
        """The rest of a batch: its scores, the ready lists, and every table stored in one step."""
        marks = b.marks
        marks.append(("overlap", time.perf_counter()))
        stored = False
        try:
            # The scored users' values come encoded from the scorer; the others get a
            # popularity list here.
            scored: list[Optional[tuple[bytes, Optional[bytes]]]] = [None] * len(b.touched)
            for positions, scoring in b.scorings:
                rows, values = await scoring
                if values is None:
                    continue
                for row, list_value, factor_value in zip(rows, values.lists, values.factors):
                    scored[positions[row]] = (list_value, factor_value)
            if b.scorings:
                marks.append(("scoring", time.perf_counter()))
            version = b.active.version if b.active is not None else POPULARITY_MODEL_VERSION
            now = time.time()
            list_writes: list[tuple[str, Any, int]] = []
            list_values: list[tuple[str, bytes, int]] = []
            factor_values: list[tuple[str, bytes, int]] = []
            for (user_id, profile, partition), encoded in zip(b.touched, scored):
                if encoded is not None:
                    list_values.append((user_id, encoded[0], partition))
                    if encoded[1] is not None:
                        factor_values.append((user_id, encoded[1], partition))
                else:
                    columns, strategy = self.ranker.fallback(profile, blend_weights=self.ranker.weights_for(user_id))
                    list_writes.append((user_id, ready_entry(columns, strategy, version, now), partition))
            # Every table is stored in one step with no await between (a reader never sees a
            # profile newer than its list), and the changelogs are sent after, so a send waiting
            # on the broker does not hold back what this batch makes visible.
            # The item tables' changelogs go first and the users' after they are acknowledged.
            # The event ids must: an id ahead of its profile is harmless (its own record, read
            # again, is recognised by its source; profiles/dedup.py), one behind is not. The
            # transition entries and histories are one table whose records keep each other
            # consistent by their order (_fold_histories), whichever phase they go in.
            items_first = [
                (self.popularity, self.popularity.store_staged(b.entry_writes)),
                (self.transitions, self.transitions.store_staged(b.transition_writes)),
                (self.event_ids, self.event_ids.store_staged(b.id_writes)),
            ]
            users_after = [
                (self.profiles, self.profiles.store_staged(b.profile_writes)),
                (self.user_factors, self.user_factors.store_staged(self.user_factors.encode_many((), factor_values))),
                (self.recommendations,
                 self.recommendations.store_staged(self.recommendations.encode_many(list_writes, list_values))),
            ]
            stored = b.generation == self._kept_generation
        finally:
            # Stored (or failed: the worker stops and the batch is read again): later batches
            # read these keys from the tables again, or from what is kept of them.
            self._release(b.seq, stored)
        self.recent_users.touch(user_id for user_id, _, _ in b.touched)
        for a in b.online.answers:
            self.online.answered(a.key, a.items, a.hit)
        for i in b.online.interactions:
            self.online.interacted(i.hits, i.exposed, i.from_answer)
        for (topic, outcome), count in b.outcomes.items():  # counted once visible
            metrics.EVENTS.labels(topic, outcome).inc(count)
        marks.append(("store", time.perf_counter()))
        if b.oldest is not None:
            metrics.FRESHNESS.labels("visible").observe(max(0.0, time.time() - b.oldest))
        await self.changelog.send(items_first, users_after)
        metrics.BATCH_SIZE.observe(b.records)
        marks.append(("changelog", time.perf_counter()))
        elapsed = marks[-1][1] - b.started
        metrics.BATCH_SECONDS.observe(elapsed)
        if elapsed > SLOW_BATCH_S:
            steps, last = [], b.started
            for name, at in marks:
                steps.append(f"{name} {1000 * (at - last):.1f}")
                last = at
            log.warning("slow micro-batch: %d events, %d users in %.0f ms (%s ms)",
                        b.records, len(b.touched), 1000 * elapsed, ", ".join(steps))

    def keep_unacked(self, rec: EventT) -> bool:
        """Whether ``rec`` must not be acked (its partition's new owner applies it); asked once."""
        if id(rec) in self.left_to_owner:
            self.left_to_owner.discard(id(rec))
            return True
        return False

    def _release(self, seq: int, stored: bool = False) -> None:
        self._profiles_ahead.release(seq, stored)
        self._entries_ahead.release(seq, stored)
        self._transitions_ahead.release(seq, stored)
        self._ids_ahead.release(seq, stored)

    def forget_kept(self) -> None:
        """Partitions changed hands (a rebalance): values kept of stored batches are read from
        the tables again, where a partition's recovery may have changed them."""
        self._kept_generation += 1
        self._profiles_ahead.forget()
        self._entries_ahead.forget()
        self._transitions_ahead.forget()
