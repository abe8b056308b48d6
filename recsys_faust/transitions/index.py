"""Item transitions learned in the stream: per-partition entries, merged into every worker's index.

The same ownership rule as item popularity (``popularity/trending.py``): users are partitioned,
items are not, so the worker that owns user partition *p* counts the pairs its users make into
entries keyed ``"<product_id>@<p>"`` (one writer per key, no races). An entry holds one item's
successor counts and the source offsets it applied, so a replay changes nothing. Every worker
tails the whole changelog (``kafka/replicated.py``) into a ``TransitionIndex`` that sums an
item's entries over partitions.

Bounded: an entry keeps at most ``max_successors`` successors. Past that the weakest go, ties
broken towards the least recently counted, so a stale pair gives way to a new one; that is the
decay (measured against an uncapped count with ``evaluate``: docs/architecture.md, "Item transitions").

A model trained offline ships the counts of its training data (``TransitionCounts``): a fresh
deployment starts with history. Per pair the index takes the larger of the shipped and the
streamed count, never their sum: streaming the training history again (a replay, or the first
deployment's backfill) would otherwise count every pair twice.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

import orjson

from ..events.model import Source, is_older, mark_applied
from ..profiles.profile import ROW_PRODUCT, ROW_TS, row_order, row_ts
from .counts import DAY_S

Entry = dict[str, Any]  # {"item": pid, "next": {pid: count}, "applied": {"topic:partition": offset}}

#: Successors kept per item and partition (RECSYS_TRANSITIONS_MAX_SUCCESSORS).
MAX_SUCCESSORS = 100


def entry_key(product_id: str, partition: int) -> str:
    return f"{product_id}@{partition}"


def new_entry(product_id: str) -> Entry:
    return {"item": product_id, "next": {}, "applied": {}}


#: A user's transition history is kept in the same table as the entries, under this suffix (an
#: entry key ends in "@<partition>", so the two never meet). Why there, and not read from the
#: profile: the history that an event's count changes are computed from must never be behind
#: the entries those changes went into, or an event read again after a crash is paired with
#: a different history than the first time (a user's events on two topics can be read in
#: another order on the second reading) and a pair is lost or doubled. In one table, on the
#: user's partition, the history follows the entries of its batch in the same changelog
#: partition, so whatever part of a batch survives a crash, an event in the history has its
#: count changes in the entries (measured before: one pair off in about one failover run in two).
HISTORY_SUFFIX = "\x1fhistory"
_HISTORY_SUFFIX_BYTES = HISTORY_SUFFIX.encode("utf-8")


def history_key(user_id: str) -> str:
    return f"{user_id}{HISTORY_SUFFIX}"


def is_history_key(key: str) -> bool:
    return key.endswith(HISTORY_SUFFIX)


def is_history_key_bytes(key: Optional[bytes]) -> bool:
    """For the changelog tails: histories are the owner's alone, skipped before decoding."""
    return key is not None and key.endswith(_HISTORY_SUFFIX_BYTES)


def new_history() -> dict[str, Any]:
    """Rows ``[product_id, kind, ts]`` in time order (the profile's row layout, its first three
    columns) and the source offsets applied; ``spilled``, once rows are dropped past the bound,
    holds what the dropped rows added to the counts (``contributions``)."""
    return {"rows": [], "applied": {}}


def fold_into_history(history: dict[str, Any], product_id: str, kind: str, ts: float, source: Optional[Source],
                      max_rows: int, day_s: int = DAY_S) -> Optional[dict[str, dict[str, int]]]:
    """One interaction into a user's transition history: its count changes
    (``successor_updates``), or None for a record the history already applied (a replay)."""
    if not mark_applied(history["applied"], source):
        return None
    rows = history["rows"]
    deltas = successor_updates(rows, product_id, ts, day_s)
    row = [product_id, kind, ts]
    rows.insert(bisect_right(rows, row_order(row), key=row_order), row)  # ties as the profile orders them
    while len(rows) > max_rows:
        # What the dropped row contributed stays in the counts: kept as ``spilled``, so that the
        # user's whole contribution (``contributions``) can be taken back out on erasure. The
        # counts' order independence makes it the row's own change on the rows left; the row is
        # the earliest, so it splits no two active days and the change has no negative count.
        oldest = rows.pop(0)
        add_counts(history.setdefault("spilled", {}), successor_updates(rows, oldest[ROW_PRODUCT], oldest[ROW_TS], day_s))
    return deltas


def add_counts(into: dict[str, dict[str, int]], deltas: Mapping[str, Mapping[str, int]], sign: int = 1) -> None:
    """``into += sign * deltas`` over nested ``{src: {dst: n}}`` counts, zeros dropped."""
    for src, dsts in deltas.items():
        row = into.setdefault(src, {})
        for dst, n in dsts.items():
            left = row.get(dst, 0) + sign * n
            if left:
                row[dst] = left
            else:
                row.pop(dst, None)
        if not row:
            del into[src]


def contributions(history: Mapping[str, Any], day_s: int = DAY_S) -> dict[str, dict[str, int]]:
    """Everything a user's history added to the transition counts: the count changes of its rows
    folded in time order (the same as in any order, ``successor_updates``) and of the rows it
    dropped since (``spilled``). Subtracted, it takes the user back out exactly (erasure/)."""
    total: dict[str, dict[str, int]] = {}
    rows = history.get("rows") or []
    for i, row in enumerate(rows):
        add_counts(total, successor_updates(rows[:i], row[ROW_PRODUCT], row[ROW_TS], day_s))
    add_counts(total, history.get("spilled") or {})
    return total


def apply_successors(entry: Entry, deltas: Mapping[str, int], source: Optional[Source],
                     max_successors: int = MAX_SUCCESSORS) -> bool:
    """Add one event's count changes ``{successor: delta}`` to ``entry``'s item; False
    (unchanged) for a replay.

    A successor counted up moves to the end of the dict (its most recent use), which is the
    order the JSON value keeps, so trimming is the same on every worker that rebuilds the entry.
    A negative delta (a late event that split two active days, see ``successor_updates``) takes
    the count down in place and drops it at zero; a successor the bound already dropped stays
    dropped.
    """
    if not mark_applied(entry["applied"], source):
        return False
    nxt = entry["next"]
    for item, delta in deltas.items():
        if delta > 0:
            nxt[item] = nxt.pop(item, 0) + delta
        elif delta < 0 and item in nxt:
            left = nxt[item] + delta
            if left > 0:
                nxt[item] = left
            else:
                del nxt[item]
    if len(nxt) > max_successors:
        ranked = list(nxt.items())
        order = sorted(range(len(ranked)), key=lambda i: (-ranked[i][1], -i))
        keep = sorted(order[:max_successors])
        entry["next"] = {ranked[i][0]: ranked[i][1] for i in keep}
    return True


def successor_updates(recent: Sequence[Sequence[Any]], product_id: str, ts: float,
                      day_s: int = DAY_S) -> dict[str, dict[str, int]]:
    """What one interaction changes in the counts, by source item: ``{earlier: {later: delta}}``.

    ``recent`` is the profile's recent rows ``[product_id, kind, ts, ...]`` before this event, in
    time order (as the profile keeps them). The change is the difference between the offline
    rule's counts (``transitions.pairs_for_event`` folded over a history in time order) on the
    rows with this event and on the rows without it, so the counts do not depend on the order
    events arrive in: a user's purchase read from its topic before an earlier view read from
    another is counted as if they had come in time order (tested on shuffled histories).
    With ``d`` the event's day:

    - rows of day ``d`` pair with it both ways;
    - rows of the latest active day before ``d`` pair towards it, and it pairs towards the rows
      of the earliest active day after ``d`` (an event that came late);
    - if ``d`` was not an active day and both neighbours are, their pairs are no longer
      consecutive days: each is taken back (delta -1).

    Rows are found by bisection rather than a scan: this runs for every interaction.
    """
    day = int(ts // day_s)
    lo = bisect_left(recent, day * day_s, key=row_ts)
    hi = bisect_left(recent, (day + 1) * day_s, lo=lo, key=row_ts)
    out: dict[str, dict[str, int]] = {}

    def add(src: str, dst: str, delta: int) -> None:
        if src != dst:
            counts = out.setdefault(src, {})
            counts[dst] = counts.get(dst, 0) + delta

    for r in recent[lo:hi]:
        add(r[ROW_PRODUCT], product_id, 1)
        add(product_id, r[ROW_PRODUCT], 1)
    before: Sequence[Sequence[Any]] = ()
    after: Sequence[Sequence[Any]] = ()
    if lo:
        prev = int(recent[lo - 1][ROW_TS] // day_s)
        before = recent[bisect_left(recent, prev * day_s, hi=lo, key=row_ts):lo]
    if hi < len(recent):
        nxt = int(recent[hi][ROW_TS] // day_s)
        after = recent[hi:bisect_left(recent, (nxt + 1) * day_s, lo=hi, key=row_ts)]
    for r in before:
        add(r[ROW_PRODUCT], product_id, 1)
    for r in after:
        add(product_id, r[ROW_PRODUCT], 1)
    if lo == hi and before and after:
        for a in before:
            for b in after:
                add(a[ROW_PRODUCT], b[ROW_PRODUCT], -1)
    # A pair taken back and added again by the same event (its item on both neighbour days) is no change.
    return {src: kept for src, counts in out.items() if (kept := {dst: d for dst, d in counts.items() if d})}


def query_items(recent: Sequence[Sequence[Any]], day_s: int = DAY_S) -> list[str]:
    """The items a user's transitions are scored from: those of their latest active day
    (``transitions.latest_day_items`` on rows in time order, read from the end)."""
    if not recent:
        return []
    start = int(recent[-1][ROW_TS] // day_s) * day_s
    items = set()
    for r in reversed(recent):
        if r[ROW_TS] < start:
            break
        items.add(r[ROW_PRODUCT])
    return sorted(items)




@dataclass(frozen=True)
class TransitionCounts:
    """Counts shipped with a model: items x items CSR over the model's catalogue, rows = from."""

    matrix: sp.csr_matrix

    @classmethod
    def capped(cls, counts: sp.csr_matrix, max_successors: int) -> "TransitionCounts":
        """Each row's ``max_successors`` largest counts (ties: lower index), as the stream bounds
        its entries."""
        counts = counts.tocsr()
        indptr = counts.indptr.astype(np.int64)
        rows = np.repeat(np.arange(counts.shape[0], dtype=np.int64), np.diff(indptr))
        # whole-array, not a loop over rows: a million-item model has a million rows, and a
        # loop of small arrays held 450 MB for a moment there (bench --scale)
        order = np.lexsort((counts.indices, -counts.data, rows))        # by row, count desc, index
        keep = order[np.arange(len(order)) - indptr[rows[order]] < max_successors]
        m = sp.csr_matrix((counts.data[keep].astype(np.float32), (rows[keep], counts.indices[keep])),
                          shape=counts.shape, dtype=np.float32)
        m.sort_indices()
        return cls(m)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.matrix.indptr[i], self.matrix.indptr[i + 1]
        return self.matrix.indices[lo:hi].astype(np.int64), self.matrix.data[lo:hi].astype(np.float64)


class TransitionIndex:
    """Every partition's entries, by item; in memory, rebuilt from the changelog.

    For ranking, each entry's successors are kept as index arrays in the active model's
    catalogue (``entry_arrays``), converted when first used after the entry changed: a busy
    item's entry changes every micro-batch but is used by many users of it. Summing over
    partitions and the max with the shipped counts happen in ``scoring.transition_candidates``,
    vectorised over a whole batch.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._keys_of: dict[str, list[str]] = {}
        self._summed: dict[str, dict[str, int]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}        # per entry key
        self._item_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # per item, all keys
        self._arrays_model: Optional[str] = None
        self._sizes: dict[str, int] = {}
        self.pairs = 0  # successor counts held (all entries): the index's size
        # Told of every change this index takes, with the entry's JSON (``raw`` when the caller
        # has it, else encoded here): how a copy in another process follows this one
        # (``IndexMirror``, the scoring process's, ranking/runtime/scorer.py).
        self.listener: Optional[Callable[[str, Optional[bytes]], None]] = None

    def put(self, key: str, entry: Optional[Entry], raw: Optional[bytes] = None) -> None:
        if is_history_key(key):
            return  # a user's history (its owner's bookkeeping), not an item's entry
        old = self._entries.get(key)
        if entry is not None and old is not None and old is not entry and is_older(entry["applied"], old["applied"]):
            return  # an older copy of what this worker already holds (see events.model.is_older)
        if self.listener is not None:
            self.listener(key, None if entry is None else raw if raw is not None else orjson.dumps(entry))
        self._set(key, entry)

    def put_raw(self, key: str, raw: Optional[bytes]) -> None:
        """A change another index took (its ``listener``'s arguments), taken as it was there."""
        self._set(key, None if raw is None else orjson.loads(raw))

    def entries_raw(self) -> list[tuple[str, bytes]]:
        """Every entry as JSON: the starting point of a copy that then follows ``listener``."""
        return [(key, orjson.dumps(entry)) for key, entry in self._entries.items()]

    def _set(self, key: str, entry: Optional[Entry]) -> None:
        old = self._entries.get(key)
        self._entries.pop(key, None)
        self._arrays.pop(key, None)
        self.pairs -= self._sizes.pop(key, 0)
        if old is not None:
            self._item_arrays.pop(old["item"], None)
            self._summed.pop(old["item"], None)
            if entry is None:
                keys = self._keys_of.get(old["item"], [])
                if key in keys:
                    keys.remove(key)
        if entry is not None:
            self._entries[key] = entry
            self._sizes[key] = len(entry["next"])  # the entry object may change in place later
            self.pairs += self._sizes[key]
            keys = self._keys_of.setdefault(entry["item"], [])
            if key not in keys:
                keys.append(key)
                keys.sort()
            self._summed.pop(entry["item"], None)
            self._item_arrays.pop(entry["item"], None)

    def put_many(self, items: Iterable[tuple[str, Optional[Entry]]],
                 raws: Optional[Sequence[Optional[bytes]]] = None) -> None:
        """``put`` of each item; ``raws``: their JSON, aligned with ``items``, where the caller
        encoded them already (a micro-batch's own writes)."""
        if raws is None:
            for key, entry in items:
                self.put(key, entry)
        else:
            for (key, entry), raw in zip(items, raws):
                self.put(key, entry, raw)

    def __len__(self) -> int:
        return len(self._entries)

    def knows(self, product_id: str) -> bool:
        return bool(self._keys_of.get(product_id))

    def successors(self, product_id: str) -> dict[str, int]:
        """Streamed successor counts of one item, summed over partitions (read-only)."""
        summed = self._summed.get(product_id)
        if summed is None:
            summed = {}
            for key in self._keys_of.get(product_id, ()):
                for item, count in self._entries[key]["next"].items():
                    summed[item] = summed.get(item, 0) + count
            self._summed[product_id] = summed
        return summed

    def item_arrays(self, product_id: str, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, counts) of an item's streamed successors in ``model``'s catalogue, every
        partition's entry back to back (a successor may repeat: its counts add up). One lookup
        for a ranked user's query item; rebuilt from the entries' own cached arrays when one
        of them changed (only the changed entry is converted again)."""
        if self._arrays_model != model.version:
            self._arrays, self._item_arrays, self._arrays_model = {}, {}, model.version
        arrays = self._item_arrays.get(product_id)
        if arrays is None:
            parts = [self.entry_arrays(key, model) for key in self._keys_of.get(product_id, ())]
            if len(parts) == 1:
                arrays = parts[0]
            elif parts:
                arrays = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            else:
                arrays = (_NO_INDEX, _NO_COUNTS)
            self._item_arrays[product_id] = arrays
        return arrays

    def entry_arrays(self, key: str, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, counts) of one entry's successors in ``model``'s catalogue (an
        ``ActiveModel``; successors it lacks are left out)."""
        if self._arrays_model != model.version:
            self._arrays, self._item_arrays, self._arrays_model = {}, {}, model.version
        arrays = self._arrays.get(key)
        if arrays is None:
            nxt = self._entries[key]["next"]
            get = model.index.get
            idx = np.fromiter([get(item, -1) for item in nxt], dtype=np.int32, count=len(nxt))
            counts = np.fromiter(nxt.values(), dtype=np.float32, count=len(nxt))
            known = idx >= 0
            if not known.all():
                idx, counts = idx[known], counts[known]
            arrays = self._arrays[key] = (idx, counts)
        return arrays

    def next_items(self, product_id: str, model: Any, k: int) -> list[tuple[str, float]]:
        """"What users take after this item": its k strongest successors, by product id, each the
        larger of its shipped (``model``'s, if any) and streamed count."""
        scored = {item: float(c) for item, c in self.successors(product_id).items()}
        shipped = getattr(model, "transitions", None)
        i = model.index.get(product_id) if model is not None else None
        if shipped is not None and i is not None:
            idx, counts = shipped.row(i)
            for j, c in zip(idx.tolist(), counts.tolist()):
                item = model.item_ids[j]
                if c > scored.get(item, 0.0):
                    scored[item] = c
        return sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


_NO_INDEX = np.zeros(0, dtype=np.int32)
_NO_COUNTS = np.zeros(0, dtype=np.float32)
