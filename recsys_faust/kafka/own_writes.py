"""Offset ranges this process wrote to a topic, so its own tail of that topic can skip them.

Every worker tails the whole popularity changelog into its in-memory index
(``ReplicatedChangelog``), including the records it wrote itself and had already put in the
index when it wrote them: decoding and re-applying those was 3.5% of a worker's event loop,
and a record read back after a newer local write briefly put an older entry back. The table
reports each changelog batch it sent (partition, first and last offset, from the broker's
acknowledgement); the tail skips a record only if its offset lies in such a range. A record
read before its acknowledgement arrived is applied again, as before: harmless, the put is
idempotent. Records of other writers, and everything read at startup, are never skipped.

When the tail's next offset starts one of these ranges, it seeks past the range
(``skip_from``) instead of fetching and unpacking records only to skip them: a batch's
records to one partition have consecutive offsets, so no other writer's record is inside.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

MAX_RANGES = 4_096  # per partition; a tail that far behind just skips less


class OwnWrites:
    def __init__(self, max_ranges: int = MAX_RANGES) -> None:
        self._max = max_ranges
        self._ranges: dict[int, deque[tuple[int, int]]] = {}

    def add(self, partition: int, first: int, last: int) -> None:
        ranges = self._ranges.get(partition)
        if ranges is None:
            ranges = self._ranges[partition] = deque(maxlen=self._max)
        ranges.append((first, last))

    def contains(self, partition: int, offset: int) -> bool:
        """Whether this process wrote ``offset``; expects each partition's offsets ascending
        (a consumer's order): ranges wholly below ``offset`` are forgotten."""
        ranges = self._ranges.get(partition)
        if not ranges:
            return False
        while ranges and ranges[0][1] < offset:
            ranges.popleft()
        return bool(ranges) and ranges[0][0] <= offset

    def skip_from(self, partition: int, offset: int) -> Optional[int]:
        """The first offset after the own range that ``offset`` lies in, or None (same order rule)."""
        if not self.contains(partition, offset):
            return None
        return self._ranges[partition][0][1] + 1
