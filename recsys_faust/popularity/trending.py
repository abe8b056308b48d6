"""Item popularity: per-partition entries written by one owner, merged into a global index.

Users are partitioned, items are not: the worker that owns partition *p* counts the
interactions it sees into entries keyed ``"<product_id>@<p>"`` (single writer, so no races
across workers). Each entry keeps event-time buckets plus its own applied source offsets, so
replays are skipped exactly. Every worker folds all entries, from all partitions, into a
``PopularityIndex`` (the changelog is read by every worker, see ``kafka.replicated``) that
answers trending and cold-start queries for the whole catalogue.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, NamedTuple, Optional

from sortedcontainers import SortedList

from ..events.model import is_older, mark_applied

Entry = dict[str, Any]

# An entry's keys. One letter each because every entry is on the changelog that all workers
# read (full names would add about 40 bytes to every record); read them by these names.
PRODUCT = "p"     # the product_id
CATEGORY = "c"    # its latest known category, or None
TOTAL = "t"       # all-time weighted interactions
COUNT = "n"       # all-time interactions
BUCKETS = "b"     # {bucket start (event time, str): weighted interactions}, bounded by retention
APPLIED = "o"     # the newest applied offset per "topic:partition" (events.model.mark_applied)


def entry_key(product_id: str, partition: int) -> str:
    return f"{product_id}@{partition}"


def split_entry_key(key: str) -> tuple[str, int]:
    product_id, _, partition = key.rpartition("@")
    return product_id, int(partition)


def new_entry(product_id: str) -> Entry:
    return {PRODUCT: product_id, CATEGORY: None, TOTAL: 0.0, COUNT: 0, BUCKETS: {}, APPLIED: {}}


def apply_to_entry(
    entry: Entry,
    *,
    ts: float,
    weight: float,
    category: Optional[str],
    source: Optional[tuple[str, int, int]],
    bucket_s: int,
    retention_s: int,
) -> bool:
    """Add one weighted interaction; False (unchanged) when ``source`` was already applied.

    Buckets older than ``retention_s`` before the entry's newest bucket are dropped, which
    bounds an entry's size whatever the history length. They can only become due when a new
    bucket opens: an event in a bucket the entry already has changes no bucket's age, and skips
    the pass over the buckets (up to a trending window's worth, 168 at the defaults, twice per
    event on a busy item).
    """
    if not mark_applied(entry[APPLIED], source):
        return False
    if category:
        entry[CATEGORY] = category
    entry[TOTAL] = round(entry[TOTAL] + weight, 6)
    entry[COUNT] += 1
    start = str(int(ts // bucket_s) * bucket_s)
    buckets = entry[BUCKETS]
    held = buckets.get(start)
    buckets[start] = round((held or 0.0) + weight, 6)
    if held is not None:
        return True
    newest = max(int(s) for s in buckets)
    for s in [s for s in buckets if int(s) + bucket_s <= newest - retention_s]:
        del buckets[s]
    return True


def remove_from_entry(entry: Entry, removals: list[tuple[float, float]], source: Optional[tuple[str, int, int]],
                      bucket_s: int) -> bool:
    """Take ``(ts, weight)`` interactions back out (an erased user's, erasure/); False when
    ``source`` was already applied. A bucket already dropped past the window keeps nothing to
    take back; the count and total never go below zero."""
    if not mark_applied(entry[APPLIED], source):
        return False
    buckets = entry[BUCKETS]
    for ts, weight in removals:
        start = str(int(ts // bucket_s) * bucket_s)
        if start in buckets:
            left = round(buckets[start] - weight, 6)
            if left > 0:
                buckets[start] = left
            else:
                del buckets[start]
        entry[TOTAL] = max(0.0, round(entry[TOTAL] - weight, 6))
        entry[COUNT] = max(0, entry[COUNT] - 1)
    return True


class Ranked(NamedTuple):  # a tuple: cheap to build for every top() answer
    product_id: str
    score: float
    category: Optional[str]


class PopularityIndex:
    """Global popularity from every partition's entries; in-memory, rebuilt from the changelog.

    ``top()`` ranks by weighted interactions inside the trending window (relative to the newest
    event time seen anywhere: stream time, so replayed history trends as it did live), then by
    all-time weight, then by product_id, so results are deterministic and never empty while
    any item has ever been seen.
    """

    def __init__(self, *, window_s: int, bucket_s: int, refresh_s: float = 0.5) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.refresh_s = refresh_s
        self._entries: dict[str, Entry] = {}
        self._keys_of: dict[str, set[str]] = {}   # product_id -> its entry keys (one per partition)
        self._dirty: set[str] = set()             # products whose entries changed since the last build
        self._items: dict[str, tuple[float, float, Optional[str]]] = {}  # pid -> (score, total, category)
        self._version = 0
        self._built_version = -1
        self._built_at = 0.0
        self._built_window_start: Optional[float] = None
        self._clock = 0.0
        # Sort keys (-score, -total, product_id), globally and per category: a change moves only
        # the changed items (O(log n) each); a full re-sort happens only when the window moves.
        self._order: SortedList = SortedList()
        self._by_category: dict[str, SortedList] = {}

    # -- updates ------------------------------------------------------------------------------
    def put(self, key: str, entry: Optional[Entry]) -> None:
        current = self._entries.get(key)
        if entry is not None and current is not None and current is not entry and is_older(entry[APPLIED], current[APPLIED]):
            return  # an older copy of what this worker already holds (see events.model.is_older)
        old = self._entries.pop(key, None)
        if old is not None:
            self._dirty.add(old[PRODUCT])
        if entry is not None:
            self._entries[key] = entry
            self._keys_of.setdefault(entry[PRODUCT], set()).add(key)
            self._dirty.add(entry[PRODUCT])
            if entry[BUCKETS]:
                newest = max(int(s) for s in entry[BUCKETS]) + self.bucket_s
                if newest > self._clock:
                    self._clock = float(newest)
        elif old is not None:
            self._keys_of.get(old[PRODUCT], set()).discard(key)
        self._version += 1

    def put_many(self, items: Iterable[tuple[str, Optional[Entry]]]) -> None:
        for key, entry in items:
            self.put(key, entry)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def clock(self) -> float:
        """Stream time: the end of the newest bucket seen in any entry."""
        return self._clock

    # -- queries --------------------------------------------------------------------------------
    def _item(self, pid: str, window_start: float) -> Optional[tuple[float, float, Optional[str]]]:
        score = total = 0.0
        category: Optional[str] = None
        keys = self._keys_of.get(pid, ())
        if not keys:
            return None
        # Sorted: when partitions disagree on a product's category, the answer must not depend
        # on set order (which differs between processes).
        for key in sorted(keys):
            entry = self._entries[key]
            total += entry[TOTAL]
            category = entry[CATEGORY] or category
            for start, w in entry[BUCKETS].items():
                if int(start) >= window_start:
                    score += w
        # Rounded like the score: an item's weight is summed over its per-partition entries, and
        # a different summation order must not turn a tie (broken by product id) into an order.
        return round(score, 6), round(total, 6), category

    def _rebuild(self, force: bool = False) -> None:
        """Apply changes to the ranking, at most every ``refresh_s`` unless ``force``.

        Only changed items are rescored and moved, unless the trending window moved (once per
        bucket of stream time), which rescores everything. A full re-sort of the Amazon
        catalogue cost 17 ms of event loop each time; moving a few items costs microseconds.
        """
        if self._built_version == self._version:
            return
        now = time.monotonic()
        if not force and self._order and now - self._built_at < self.refresh_s:
            return
        window_start = self._clock - self.window_s
        if window_start != self._built_window_start:
            self._items = {}
            for pid in self._keys_of:
                item = self._item(pid, window_start)
                if item is not None:
                    self._items[pid] = item
            self._order = SortedList((-it[0], -it[1], pid) for pid, it in self._items.items())
            by_cat: dict[str, list] = {}
            for pid, (score, total, cat) in self._items.items():
                if cat:
                    by_cat.setdefault(cat, []).append((-score, -total, pid))
            self._by_category = {cat: SortedList(keys) for cat, keys in by_cat.items()}
        else:
            for pid in self._dirty:
                old = self._items.pop(pid, None)
                if old is not None:
                    self._order.remove((-old[0], -old[1], pid))
                    if old[2]:
                        self._by_category[old[2]].remove((-old[0], -old[1], pid))
                item = self._item(pid, window_start)
                if item is not None:
                    self._items[pid] = item
                    key = (-item[0], -item[1], pid)
                    self._order.add(key)
                    if item[2]:
                        self._by_category.setdefault(item[2], SortedList()).add(key)
        self._dirty = set()
        self._built_version, self._built_at, self._built_window_start = self._version, now, window_start

    def top(
        self,
        k: int,
        *,
        category: Optional[str] = None,
        exclude: Iterable[str] = (),
        fresh: bool = False,
    ) -> list[Ranked]:
        """The k most popular items (optionally of one category), skipping ``exclude``."""
        self._rebuild(force=fresh)
        source = self._by_category.get(category, ()) if category else self._order
        skip = set(exclude)
        out: list[Ranked] = []
        for neg_score, _neg_total, pid in source:
            if pid in skip:
                continue
            out.append(Ranked(pid, -neg_score, self._items[pid][2]))
            if len(out) >= k:
                break
        return out

    def score(self, product_id: str) -> float:
        self._rebuild()
        item = self._items.get(product_id)
        return item[0] if item else 0.0

    def rank_of(self, product_id: str) -> int:
        """Position in the global ranking (unknown items rank last)."""
        self._rebuild()
        item = self._items.get(product_id)
        if item is None:
            return len(self._order)
        return self._order.bisect_left((-item[0], -item[1], product_id))

    def category_of(self, product_id: str) -> Optional[str]:
        self._rebuild()
        item = self._items.get(product_id)
        return item[2] if item else None

    def n_items(self) -> int:
        self._rebuild()
        return len(self._order)
