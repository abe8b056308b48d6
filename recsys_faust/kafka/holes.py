"""Offsets a worker skipped on a topic whose offsets are consecutive, and the records held
back behind them until they come.

The consumer meets a hole when the fetcher hands it an offset past the next one it expected
(``WorkerConsumer._add_gap``, kafka/transport.py); it then rejoins the group, and the seek to
the committed offsets that follows reads the hole again. Until then the records past the hole
are held back unacknowledged (streaming/ingest.py), because the shared item entries count a
topic-partition's offsets in order: applied first, they made the hole's records look like
replays when they came.

A hole must close, or its partition stalls for good: every record past it held back, and
nothing committed past it. So a hole is only ever opened at or past the committed offset (what
is below it is done), is dropped with its partition when the partition goes to another worker,
and is closed by any seek to a position past it (found by the failover test on a slow machine:
a hole opened below the offset the killed worker had committed was never read again, and the
survivor held back 70 of that partition's records until the test gave up). This module is the
bookkeeping alone, free of Faust, so that each of those rules has its unit test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

#: (topic, partition)
Key = tuple[str, int]


class Holes:
    """(topic, partition) -> the first offset not delivered yet."""

    def __init__(self) -> None:
        self._first: dict[Key, int] = {}

    def __bool__(self) -> bool:
        return bool(self._first)

    def get(self, key: Key) -> Optional[int]:
        return self._first.get(key)

    def as_dict(self) -> dict[Key, int]:
        return dict(self._first)

    def open(self, key: Key, first: int, end: int, committed: Optional[int]) -> Optional[int]:
        """Offsets ``first .. end - 1`` of ``key`` were skipped; ``committed`` is the partition's
        committed offset (the next one to read) if known. Returns the offset to wait for, or
        None when every skipped offset is below the commit (done already, nothing to wait for)."""
        if committed is not None:
            first = max(first, committed)
        if first >= end:
            return None
        held = self._first.get(key)
        self._first[key] = first if held is None else min(first, held)
        return self._first[key]

    def holds_back(self, key: Key, offset: int) -> bool:
        """Whether the record at ``offset`` waits for a hole before it; the hole's own record
        closes it (it is being read)."""
        hole = self._first.get(key)
        if hole is None or offset < hole:
            return False
        if offset == hole:
            del self._first[key]
            return False
        return True

    def keep_only(self, assigned: Iterable[Key]) -> None:
        """The partitions assigned now: a partition gone to another worker is read from its
        commit by the new owner, so its hole is not this worker's to wait for."""
        kept = set(assigned)
        self._first = {key: offset for key, offset in self._first.items() if key in kept}

    def sought(self, positions: Mapping[Key, Optional[int]]) -> list[Key]:
        """The partitions were sought to ``positions`` (the next offsets to read): a hole below
        a position will never be delivered, and what is below the position is committed, so
        the hole is closed. Returns the keys closed."""
        closed = [key for key, hole in self._first.items()
                  if (pos := positions.get(key)) is not None and pos > hole]
        for key in closed:
            del self._first[key]
        return closed

    def close(self, key: Key) -> None:
        self._first.pop(key, None)
