"""Step 1b: a batch's erasures applied, and every record of an erased user from before their
erasure dropped, before anything is folded.

An erasure record on ``recsys-erasures`` is read by the user's owner in the same stream as their
events, so it is applied in order with them and replayed with them: a crash before the batch is
stored reads the erasure again, and everything it changes is idempotent (the item changes carry
the erasure's source, which the entries record as applied; deleting twice deletes nothing).

What it changes (erasure/forget.py computes the item changes):
- the user's profile, transition history, ready list, ALS vector, answered requests and
  de-duplication ids: tombstones, on the stores and on their changelogs;
- the transition entries their history added to, exactly; the popularity entries of the
  interactions their profile still holds;
- a *mark* (``erasures`` table, keyed by the user id's hash, on their partition): the erasure's
  time. From then on a record of theirs with an event time before it (a replay, a restore, a
  producer sending it again) is dropped and counted, never applied. A record after it starts a
  new profile.

The batch's later steps read what this step deleted as missing (held as None ahead of the store,
ingest/ahead.py), and its writes are staged before theirs, so a new event of the user in the same
batch is stored after the deletes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import metrics
from ..erasure import forget
from ..events.model import Source
from ..kafka.table import TOMBSTONE, StrKeyTable
from ..popularity.trending import remove_from_entry
from ..profiles import dedup
from ..transitions import index as tix
from .accept import Sorted
from .ahead import AheadStores
from .context import IngestContext
from .fold_items import fold_transitions

Changed = list[tuple[str, Any, int]]
#: Marks read per page when a partition's marks are loaded (explicit: erasures are rare).
_MARK_PAGE = 10_000


@dataclass
class Erased:
    """What a batch's erasures change, staged before the batch's own writes."""

    users: list[tuple[str, int]] = field(default_factory=list)   # (user_id, partition) erased now
    popularity: Changed = field(default_factory=list)            # entries with the user taken out
    transitions: Changed = field(default_factory=list)           # entries, then history tombstones
    ids: Changed = field(default_factory=list)                   # event_ids tombstones
    marks: Changed = field(default_factory=list)                 # (mark key, erased_at, partition)
    dropped: Counter = field(default_factory=Counter)            # (topic, "erased") -> records

    def user_deletes(self) -> Changed:
        """Tombstones for the user-keyed tables (profiles, ready lists, vectors, answered)."""
        return [(user_id, TOMBSTONE, partition) for user_id, partition in self.users]


class Marks:
    """Each partition's erasure marks, read once from the ``erasures`` table and kept in memory
    (erasures are rare: a partition with none costs one empty range scan, then nothing per user).
    Dropped on every rebalance (``forget``): a partition's recovery may have changed them."""

    def __init__(self, table: Optional[StrKeyTable]) -> None:
        self.table = table
        self._by_partition: dict[int, dict[str, float]] = {}

    def of(self, user_id: str, partition: int) -> Optional[float]:
        marks = self._of_partition(partition)
        return marks.get(forget.user_hash(user_id)) if marks else None

    def set(self, user_id: str, partition: int, erased_at: float) -> float:
        """Record an erasure; returns the user's mark (the latest erasure wins)."""
        marks = self._of_partition(partition)
        key = forget.user_hash(user_id)
        marks[key] = max(erased_at, marks.get(key, erased_at))
        return marks[key]

    def forget(self) -> None:
        self._by_partition.clear()

    def _of_partition(self, partition: int) -> dict[str, float]:
        marks = self._by_partition.get(partition)
        if marks is None:
            marks = self._by_partition[partition] = self._load(partition)
        return marks

    def _load(self, partition: int) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.table is None:
            return out
        start = forget.MARK_PREFIX
        while True:
            keys = self.table.keys_between(partition, start, forget.MARK_END, _MARK_PAGE)
            for key, value in zip(keys, self.table.read_many([(k, partition) for k in keys])):
                if isinstance(value, (int, float)):
                    out[key[len(forget.MARK_PREFIX):]] = float(value)
            if len(keys) < _MARK_PAGE:
                return out
            start = keys[-1] + "\x00"


class Eraser:
    def __init__(self, ctx: IngestContext, ahead: AheadStores, marks: Marks) -> None:
        self.ctx = ctx
        self.ahead = ahead
        self.marks = marks

    def drop_erased(self, batch: Sorted) -> Erased:
        """The batch's erasures marked, and every record of a marked user from before their
        mark taken out of ``batch`` (in place, counted)."""
        out = Erased()
        for user_id, reads in batch.erasures.items():
            partition = reads[-1].source.partition
            mark = 0.0
            for read in reads:
                mark = self.marks.set(user_id, partition, read.erasure.erased_at)
            out.marks.append((forget.mark_key(user_id), mark, partition))
        self._drop_old(batch, out)
        return out

    def erase(self, seq: int, batch: Sorted, out: Erased) -> None:
        """Each erased user's state taken out, staged in ``out`` before the batch's own writes."""
        for user_id, reads in batch.erasures.items():
            self._erase(seq, user_id, reads[-1].source.partition, reads[-1].source, out)
        if out.users:
            metrics.ERASURES.inc(len(out.users))

    def _drop_old(self, batch: Sorted, out: Erased) -> None:
        """Records of marked users from before their mark leave the batch, counted."""
        for user_id in list(batch.by_user):
            accepted = batch.by_user[user_id]
            mark = self.marks.of(user_id, accepted[-1].source.partition)
            if mark is None:
                continue
            kept = []
            for acc in accepted:
                if forget.erased_before(mark, acc.event.ts):
                    out.dropped[(acc.source.topic, "erased")] += 1
                    metrics.ERASED_DROPPED.labels(acc.source.topic).inc()
                else:
                    kept.append(acc)
            if kept:
                batch.by_user[user_id] = kept
            else:
                del batch.by_user[user_id]
        for user_id in list(batch.served):
            answers = batch.served[user_id]
            mark = self.marks.of(user_id, answers[-1].source.partition)
            if mark is not None:
                kept_answers = [a for a in answers if not forget.erased_before(mark, a.served.served_at)]
                if kept_answers:
                    batch.served[user_id] = kept_answers
                else:
                    del batch.served[user_id]

    def _erase(self, seq: int, user_id: str, partition: int, source: Source, out: Erased) -> None:
        """One user's state taken out: read (ahead of the store), changed, held as missing."""
        ctx, ahead, tables = self.ctx, self.ahead, self.ctx.tables
        hkey = tix.history_key(user_id)
        (profile,) = ahead.profiles.read_many(tables.profiles, [(user_id, partition)])
        (history,) = ahead.transitions.read_many(tables.transitions, [(hkey, partition)])
        # transitions: the history's whole contribution, as one change per entry under this source
        changes = forget.transition_changes(history, partition)
        updates = {key: [(source, deltas)] for key, deltas in changes.items()}
        keys = [(key, partition) for key in updates]
        entries = fold_transitions(updates, ahead.transitions.read_many(tables.transitions, keys),
                                   ctx.settings.ranking.transitions_max_successors)
        # popularity: what the profile's rows still name
        removals = forget.popularity_removals(profile, partition, ctx.settings.popularity.weights)
        pkeys = [(key, partition) for key in removals]
        popularity: Changed = []
        for (key, _), entry in zip(pkeys, ahead.entries.read_many(tables.popularity, pkeys)):
            if entry is None:
                continue
            if remove_from_entry(entry, removals[key], source, ctx.settings.popularity.popularity_bucket_s):
                popularity.append((key, entry, partition))
        ids = [(key, TOMBSTONE, partition) for key in self._id_keys(user_id, partition)]
        # held as missing for the batch's later steps (and the batches folded before this is stored)
        ahead.profiles.hold(seq, [(user_id, None, partition)])
        ahead.transitions.hold(seq, [*entries, (hkey, None, partition)])
        ahead.entries.hold(seq, popularity)
        ahead.ids.hold(seq, ids)
        out.users.append((user_id, partition))
        out.popularity += popularity
        # the entries first, the history's tombstone after (fold_items says why that order)
        out.transitions += [*entries, (hkey, TOMBSTONE, partition)]
        out.ids += ids

    def _id_keys(self, user_id: str, partition: int) -> list[str]:
        """The user's ``event_ids`` keys in the epochs still held (the clock's and the one before),
        stored or held ahead of the store."""
        ahead, table = self.ahead.ids, self.ctx.tables.event_ids
        (clock,) = ahead.read_many(table, [(dedup.clock_key(partition), partition)])
        if not isinstance(clock, int):
            return []
        keys: set[str] = set()
        for epoch in range(max(0, clock - 1), clock + 1):
            start = dedup.epoch_key(epoch, user_id, "")
            stop = start[:-1] + chr(ord(dedup.SEP) + 1)
            keys.update(table.keys_between(partition, start, stop, dedup.SWEEP_MAX_KEYS))
            keys.update(k for k in ahead.held_keys(start, stop) if ahead.held(k) is not TOMBSTONE)
        return sorted(keys)
