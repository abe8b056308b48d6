"""Values folded by batches not stored yet, readable by the batches folded after them.

The pipeline (streaming/pipeline.py) folds batch N+1 while batch N is scored, before N is
stored; N+1 must start from N's profiles and entries, not from the older ones in RocksDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Optional, Sequence

from ..kafka.table import StrKeyTable


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

    def held_keys(self, start: str, stop: str) -> list[str]:
        """The keys ``start <= key < stop`` held or kept here (a scan: for rare work, erasures)."""
        maps = [*self._batches.values(), self._stored]
        return sorted({key for values in maps for key in values if start <= key < stop})

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


@dataclass
class AheadStores:
    """The four tables a batch reads back before its predecessor is stored, released together.

    Item entries, users' transition histories and profiles also stay readable once stored (up to
    their ``keep``): the item entries are the same objects the indexes hold. ``generation`` is
    bumped by ``forget``: a batch folded before a rebalance does not keep its values after it.
    """

    profiles: AheadOfStore
    entries: AheadOfStore
    transitions: AheadOfStore
    ids: AheadOfStore = field(default_factory=AheadOfStore)
    generation: int = 0

    @classmethod
    def sized(cls, profile_keys: int, state_keys: int) -> "AheadStores":
        return cls(AheadOfStore(profile_keys), AheadOfStore(state_keys), AheadOfStore(state_keys))

    def release(self, seq: int, stored: bool = False) -> None:
        for ahead in (self.profiles, self.entries, self.transitions, self.ids):
            ahead.release(seq, stored)

    def forget(self) -> None:
        self.generation += 1
        for ahead in (self.profiles, self.entries, self.transitions):
            ahead.forget()
