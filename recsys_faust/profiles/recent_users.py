"""The users whose profiles this worker changed last: what the demo page offers to pick from.

Held in memory, bounded, and local to the worker (its own partitions): a starting point for
someone exploring the engine, not an index of users. Users are not listed anywhere else without
a scan of every profile, which a page must never trigger.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

#: Users remembered (explicit: about 100 bytes each).
RECENT_USERS = 1_000


class RecentUsers:
    def __init__(self, size: int = RECENT_USERS) -> None:
        self.size = size
        self._users: OrderedDict[str, None] = OrderedDict()

    def touch(self, users: Iterable[str]) -> None:
        """Mark ``users`` (in order) as the most recently changed."""
        seen = self._users
        for user in users:
            seen[user] = None
            seen.move_to_end(user)
        while len(seen) > self.size:
            seen.popitem(last=False)

    def forget(self, users: Iterable[str]) -> None:
        """Drop erased ``users`` (erasure/)."""
        for user in users:
            self._users.pop(user, None)

    def newest(self, k: int) -> list[str]:
        """Up to ``k`` users, the most recently changed first."""
        out: list[str] = []
        for user in reversed(self._users):
            if len(out) >= k:
                break
            out.append(user)
        return out

    def __len__(self) -> int:
        return len(self._users)
