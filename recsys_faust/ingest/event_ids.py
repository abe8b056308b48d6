"""Step 2: the de-dup lookup of a batch, and the ``event_ids`` keys that expired.

``profiles/dedup.py`` says how ids are kept (one key per event under its partition's epoch)
and why duplicates are found by id while replays are found by offset. This step holds what it
must remember between batches: each partition's sweep position and whether it still holds
keys an older version wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..kafka.table import TOMBSTONE, StrKeyTable
from ..profiles import dedup
from .accept import Accepted
from .ahead import AheadOfStore


@dataclass
class IdLookup:
    """What the profile fold needs to tell new events from duplicates.

    ``keys`` holds, per accepted event in the batch's order (users, then their events), the
    keys it is looked up under (its epoch's first, where a new one is recorded) and its
    partition; ``known`` the values found under them, joined by the batch's own new ids as
    the fold goes (a duplicate inside one batch).
    """

    newest: dict[int, float]
    epochs: dict[int, int]
    clock_writes: list[tuple[str, Any, int]]
    keys: list[tuple[tuple[str, ...], int]]
    known: dict[str, Any]


class EventIds:
    def __init__(self, table: StrKeyTable, ahead: AheadOfStore, window_s: float) -> None:
        self.table = table
        self.ahead = ahead
        self.window_s = window_s
        self.sweeper = dedup.Sweeper(dedup.EPOCH_PREFIX)
        self.legacy_sweeper = dedup.Sweeper(dedup.TIME_PREFIX)
        # Partitions whose event_ids hold keys an older version wrote (profiles/dedup.py): looked
        # up once per partition, and dropped once their last legacy key has expired.
        self.legacy: dict[int, bool] = {}

    def lookup(self, by_user: dict[str, list[Accepted]], newest: dict[int, float]) -> IdLookup:
        """Each partition's epoch for this batch and the ids its events may already have."""
        epochs, clock_writes = self._epochs(newest)
        keys = [self._id_keys(user_id, acc.event.event_id, acc.source.partition, epochs)
                for user_id, accepted in by_user.items() for acc in accepted]
        flat = [(key, p) for keys_, p in keys for key in keys_]
        known = {key: value for (key, _), value in zip(flat, self.ahead.read_many(self.table, flat))
                 if value is not None and value is not TOMBSTONE}
        return IdLookup(newest, epochs, clock_writes, keys, known)

    def _epochs(self, newest: dict[int, float]) -> tuple[dict[int, int], list[tuple[str, Any, int]]]:
        """Each partition's de-dup epoch for this batch (its clock, moved on by the batch's newest
        event if that is later), and the clock writes of the partitions it moved on."""
        partitions = list(newest)
        clocks = self.ahead.read_many(self.table, [(dedup.clock_key(p), p) for p in partitions])
        epochs: dict[int, int] = {}
        writes: list[tuple[str, Any, int]] = []
        for p, clock in zip(partitions, clocks):
            epoch = dedup.epoch_of(newest[p], self.window_s)
            if isinstance(clock, int) and clock >= epoch:
                epoch = clock
            else:
                writes.append((dedup.clock_key(p), epoch, p))
            epochs[p] = epoch
        return epochs, writes

    def _id_keys(self, user_id: str, event_id: str, partition: int,
                 epochs: dict[int, int]) -> tuple[tuple[str, ...], int]:
        epoch = epochs[partition]
        keys: tuple[str, ...] = (dedup.epoch_key(epoch, user_id, event_id),)
        if epoch > 0:
            keys += (dedup.epoch_key(epoch - 1, user_id, event_id),)
        if self._has_legacy(partition):
            keys += (dedup.id_key(user_id, event_id),)
        return keys, partition

    def _has_legacy(self, partition: int) -> bool:
        legacy = self.legacy.get(partition)
        if legacy is None:
            legacy = self.legacy[partition] = bool(
                self.table.keys_between(partition, dedup.ID_PREFIX, dedup.ID_END, 1)
                or self.table.keys_between(partition, dedup.TIME_PREFIX, dedup.TIME_END, 1))
        return legacy

    def expired(self, ids: IdLookup) -> list[tuple[str, Any, int]]:
        """Deletes for the keys that expired on the batch's partitions (a range scan when the
        clock has entered an epoch; and of the legacy keys, by the hour; dedup.Sweeper)."""
        deletes: list[tuple[str, Any, int]] = []
        for partition, epoch in ids.epochs.items():
            expired = self._sweep(self.sweeper, partition, dedup.expired_epochs_below(epoch))
            deletes.extend((key, TOMBSTONE, partition) for key in expired)
            if self._has_legacy(partition):
                bound = dedup.expired_below(ids.newest[partition], self.window_s)
                if (self.legacy_sweeper.due(partition, bound) is not None
                        and not self.table.keys_between(partition, dedup.TIME_PREFIX, dedup.TIME_END, 1)):
                    self.legacy[partition] = False  # the last legacy key has expired
                    continue
                for tk in self._sweep(self.legacy_sweeper, partition, bound):
                    deletes.append((tk, TOMBSTONE, partition))
                    deletes.append((dedup.id_key_of(tk), TOMBSTONE, partition))
        return deletes

    def _sweep(self, sweeper: dedup.Sweeper, partition: int, bound: str) -> list[str]:
        """The expired keys below ``bound`` to delete now on ``partition``, if a scan is due."""
        start = sweeper.due(partition, bound)
        if start is None:
            return []
        keys = self.table.keys_between(partition, start, bound, dedup.SWEEP_MAX_KEYS)
        sweeper.scanned(partition, bound, keys, complete=len(keys) < dedup.SWEEP_MAX_KEYS)
        held = self.ahead.held
        # A key deleted by the batch before and not stored yet is left alone: measured, every
        # expired id was once deleted twice.
        expired = [key for key in keys if held(key) is not TOMBSTONE]
        if expired:
            metrics.DEDUP_EXPIRED.inc(len(expired))
        return expired
