"""Exact de-duplication by ``event_id`` over a window of event time, in bounded state.

The contract says the same ``event_id`` twice is one event, whenever it comes. A profile used
to keep its user's last 256 event ids: a duplicate behind 256 newer events of its user was
applied again, and the ids were rewritten into the changelog with every event of the user.

Here every applied event leaves two keys in the ``event_ids`` table, on its user's partition:

- ``i<US>user<US>event_id`` -> ``[ts, "topic:partition:offset"]``: what each event is checked
  against (one multi-get per partition and micro-batch);
- ``t<US>hour<US>user<US>event_id`` -> ``1``: the same entry ordered by event time, so that
  expiring is a range scan of what expired (RocksDB keeps keys sorted), not a scan of the table.

Entries more than ``window_s`` of event time behind the newest event seen on their partition
are deleted (tombstones on the changelog, which is compacted): the state is bounded by one
window's events, not by the history. (US is the ASCII unit separator. Ids may contain it: the
``i``/``t`` prefixes keep the two key spaces apart whatever the ids hold, and a time key's
fields are split from the left only.)

Why the source is stored: the ids' changelog is acknowledged before the profiles' (as the
item entries'; streaming/ingest.py), so after a crash the table may hold an event whose profile
write was lost. That event's own record, read again, matches its own source and is applied;
a second record with the same id, at another offset, is the duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..events.model import Source

SEP = "\x1f"
ID_PREFIX = "i" + SEP
TIME_PREFIX = "t" + SEP
#: Expiry granularity: entries leave at most an hour after they are due. Finer buckets only
#: mean more scans; the window is days.
BUCKET_S = 3_600
#: Keys deleted per partition and micro-batch at most (an explicit bound on a batch's work:
#: after a long gap in event time, a backlog of expired entries leaves over several batches).
SWEEP_MAX_KEYS = 10_000

NEW = "new"            # not seen in the window
OWN = "own"            # this very record (read again after a crash or rebalance)
DUPLICATE = "duplicate"  # another record with the same event_id was applied


def id_key(user_id: str, event_id: str) -> str:
    return f"{ID_PREFIX}{user_id}{SEP}{event_id}"


def time_key(ts: float, user_id: str, event_id: str) -> str:
    return f"{TIME_PREFIX}{int(ts // BUCKET_S):012d}{SEP}{user_id}{SEP}{event_id}"


def id_key_of(time_key_: str) -> str:
    """The id key a time key indexes (user and event ids may contain SEP: split from the left)."""
    _prefix, _bucket, rest = time_key_.split(SEP, 2)
    return ID_PREFIX + rest


def source_tag(source: Source) -> str:
    return f"{source.topic}:{source.partition}:{source.offset}"


def entry(ts: float, source: Source) -> list[Any]:
    return [ts, source_tag(source)]


def verdict(stored: Optional[list[Any]], source: Source) -> str:
    """NEW, OWN (the stored entry is this record's) or DUPLICATE."""
    if stored is None:
        return NEW
    return OWN if stored[1] == source_tag(source) else DUPLICATE


def expired_below(newest_ts: float, window_s: float) -> str:
    """The exclusive upper bound of the time keys that are out of the window."""
    return f"{TIME_PREFIX}{int((newest_ts - window_s) // BUCKET_S):012d}"


@dataclass
class Sweeper:
    """When a partition's expired entries are due for a scan: once per hour of event time that
    the window's edge moves on, and again at once after a scan that stopped at its bound.

    In memory only: a restarted worker scans each partition once at its first batch (a seek
    in a sorted store; nothing is lost by forgetting where the last scan ended).
    """

    window_s: float
    done_below: dict[int, str] = field(default_factory=dict)

    def due(self, partition: int, newest_ts: float) -> Optional[str]:
        """The bound to scan below on this partition now, or None."""
        bound = expired_below(newest_ts, self.window_s)
        return None if self.done_below.get(partition, "") >= bound else bound

    def scanned(self, partition: int, bound: str, complete: bool) -> None:
        if complete:
            self.done_below[partition] = bound
