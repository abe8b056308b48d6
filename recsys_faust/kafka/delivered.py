"""Which offsets of a partition the fetch loop handed to the agents, so that an offset gap counts
as done only for the offsets that were never handed over.

Faust's fetch loop calls an offset *gap* every jump past the next offset it expected, and counts
the skipped offsets as acknowledged (``Consumer._add_gap``): right for offsets the broker never
returns (records removed by compaction, transaction markers, aborted records under
``read_committed``). A jump also happens after a seek: records fetched before the seek and
delivered after it (the fetch loop was iterating them) move the expected offset, and the
records re-read from the sought position look like a jump back and forth. Offsets in such a
gap *were* delivered, wait in an agent's buffer, and must be acked by the agent, not counted
done: committed early, a crash would lose them. So the consumer records the ranges of offsets
it delivered, per partition, and counts as done only the offsets of a gap outside them.

Pure bookkeeping (``Delivered``), unit-tested on its own; kafka/transport.py feeds it.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Hashable, Iterator

#: Ranges kept per partition; the fetch loop delivers in order, so one range grows and a seek
#: starts a new one. Past this (ranges below the committed offset are pruned at every commit)
#: the oldest are dropped: their offsets then count as skipped if a gap covers them, which
#: needs that many seeks without a commit.
MAX_RANGES = 64


class Delivered:
    """partition -> sorted, disjoint [first, last] ranges of delivered offsets."""

    def __init__(self) -> None:
        self._ranges: dict[Hashable, list[list[int]]] = {}

    def add(self, key: Hashable, offset: int) -> None:
        ranges = self._ranges.setdefault(key, [])
        if ranges and ranges[-1][0] <= offset <= ranges[-1][1] + 1:
            if offset == ranges[-1][1] + 1:
                ranges[-1][1] = offset
            return
        i = bisect_right(ranges, [offset, float("inf")])
        if i and ranges[i - 1][1] + 1 >= offset:
            ranges[i - 1][1] = max(ranges[i - 1][1], offset)
        else:
            ranges.insert(i, [offset, offset])
        self._merge(ranges)
        if len(ranges) > MAX_RANGES:
            del ranges[0]

    @staticmethod
    def _merge(ranges: list[list[int]]) -> None:
        j = 0
        for r in ranges[1:]:
            if r[0] <= ranges[j][1] + 1:
                ranges[j][1] = max(ranges[j][1], r[1])
            else:
                j += 1
                ranges[j] = r
        del ranges[j + 1:]

    def undelivered(self, key: Hashable, first: int, end: int) -> Iterator[tuple[int, int]]:
        """The sub-ranges [a, b) of [first, end) holding no delivered offset."""
        at = first
        for lo, hi in self._ranges.get(key, ()):
            if hi < at:
                continue
            if lo >= end:
                break
            if lo > at:
                yield at, lo
            at = max(at, hi + 1)
            if at >= end:
                return
        if at < end:
            yield at, end

    def prune(self, key: Hashable, below: int) -> None:
        """Forget offsets below ``below`` (committed: no gap reaches below it any more)."""
        ranges = self._ranges.get(key)
        if not ranges:
            return
        kept = [[max(lo, below), hi] for lo, hi in ranges if hi >= below]
        self._ranges[key] = kept

    def forget(self, key: Hashable) -> None:
        """The partition's buffered records were dropped (a revocation): nothing delivered waits."""
        self._ranges.pop(key, None)

    def ranges(self, key: Hashable) -> list[tuple[int, int]]:
        return [(lo, hi) for lo, hi in self._ranges.get(key, ())]
