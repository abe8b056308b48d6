"""Item transitions learned in the stream: per-partition entries, merged into every worker's index.

The same ownership rule as item popularity (``popularity/trending.py``): users are partitioned,
items are not, so the worker that owns user partition *p* counts the pairs its users make into
entries keyed ``"<product_id>@<p>"`` (one writer per key, no races). An entry holds one item's
successor counts and the source offsets it applied, so a replay changes nothing. Every worker
tails the whole changelog (``kafka/replicated.py``) into a ``TransitionIndex`` that sums an
item's entries over partitions.

Bounded: an entry keeps at most ``max_successors`` successors. Past that the weakest go, ties
broken towards the least recently counted, so a stale pair gives way to a new one; that is the
decay (measured against an uncapped count with ``evaluate``: README, "Item transitions").

A model trained offline ships the counts of its training data (``TransitionCounts``): a fresh
deployment starts with history. Per pair the index takes the larger of the shipped and the
streamed count, never their sum: streaming the training history again (a replay, or the first
deployment's backfill) would otherwise count every pair twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .transitions import DAY_S, latest_day_items, pairs_for_event

Entry = dict[str, Any]  # {"item": pid, "next": {pid: count}, "applied": {"topic:partition": offset}}
Source = tuple[str, int, int]

#: Successors kept per item and partition (RECSYS_TRANSITIONS_MAX_SUCCESSORS).
MAX_SUCCESSORS = 100


def entry_key(product_id: str, partition: int) -> str:
    return f"{product_id}@{partition}"


def new_entry(product_id: str) -> Entry:
    return {"item": product_id, "next": {}, "applied": {}}


def apply_successors(entry: Entry, successors: Sequence[str], source: Optional[Source],
                     max_successors: int = MAX_SUCCESSORS) -> bool:
    """Count one event's successors of ``entry``'s item; False (unchanged) for a replay.

    A counted successor moves to the end of the dict (its most recent use), which is the order
    the JSON value keeps, so trimming is the same on every worker that rebuilds the entry.
    """
    if source is not None:
        topic, partition, offset = source
        tp = f"{topic}:{partition}"
        if entry["applied"].get(tp, -1) >= offset:
            return False
        entry["applied"][tp] = offset
    nxt = entry["next"]
    for item in successors:
        nxt[item] = nxt.pop(item, 0) + 1
    if len(nxt) > max_successors:
        ranked = list(nxt.items())
        order = sorted(range(len(ranked)), key=lambda i: (-ranked[i][1], -i))
        keep = sorted(order[:max_successors])
        entry["next"] = {ranked[i][0]: ranked[i][1] for i in keep}
    return True


def successor_updates(recent: Sequence[Sequence[Any]], product_id: str, ts: float,
                      day_s: int = DAY_S) -> dict[str, list[str]]:
    """What one interaction adds, by source item: ``{earlier item: [later items]}``.

    ``recent`` is the profile's recent rows ``[product_id, kind, ts, ...]`` before this event;
    the pair rule is ``transitions.pairs_for_event``, the one the offline counts use.
    """
    out: dict[str, list[str]] = {}
    for a, b in pairs_for_event([(r[0], r[2]) for r in recent], product_id, ts, day_s):
        out.setdefault(a, []).append(b)
    return out


def query_items(recent: Sequence[Sequence[Any]], day_s: int = DAY_S) -> list[str]:
    """The items a user's transitions are scored from: those of their latest active day."""
    return latest_day_items(((r[0], r[2]) for r in recent), day_s)


@dataclass(frozen=True)
class TransitionCounts:
    """Counts shipped with a model: items x items CSR over the model's catalogue, rows = from."""

    matrix: sp.csr_matrix

    @classmethod
    def capped(cls, counts: sp.csr_matrix, max_successors: int) -> "TransitionCounts":
        """Each row's ``max_successors`` largest counts (ties: lower index), as the stream bounds
        its entries."""
        counts = counts.tocsr()
        rows, cols, vals = [], [], []
        for r in range(counts.shape[0]):
            lo, hi = counts.indptr[r], counts.indptr[r + 1]
            idx, v = counts.indices[lo:hi], counts.data[lo:hi]
            if hi - lo > max_successors:
                keep = np.lexsort((idx, -v))[:max_successors]
                idx, v = idx[keep], v[keep]
            rows.append(np.full(len(idx), r, dtype=np.int64))
            cols.append(idx)
            vals.append(v)
        m = sp.csr_matrix((np.concatenate(vals) if vals else np.zeros(0, np.float32),
                           (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                            np.concatenate(cols) if cols else np.zeros(0, np.int64))),
                          shape=counts.shape, dtype=np.float32)
        m.sort_indices()
        return cls(m)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.matrix.indptr[i], self.matrix.indptr[i + 1]
        return self.matrix.indices[lo:hi].astype(np.int64), self.matrix.data[lo:hi].astype(np.float64)


class TransitionIndex:
    """Every partition's entries summed per item; in memory, rebuilt from the changelog.

    ``rows`` gives an item's successors in a model's index space (the larger of shipped and
    streamed counts per pair), cached per item until one of its entries changes or the model
    does: a busy item's row is used by many users of a micro-batch.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._keys_of: dict[str, set[str]] = {}
        self._summed: dict[str, dict[str, int]] = {}
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._rows_model: Optional[str] = None
        self.pairs = 0  # successor counts held (all entries): the index's size

    def put(self, key: str, entry: Optional[Entry]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.pairs -= len(old["next"])
            self._forget(old["item"])
            if entry is None:
                self._keys_of.get(old["item"], set()).discard(key)
        if entry is not None:
            self._entries[key] = entry
            self.pairs += len(entry["next"])
            self._keys_of.setdefault(entry["item"], set()).add(key)
            self._forget(entry["item"])

    def put_many(self, items: Iterable[tuple[str, Optional[Entry]]]) -> None:
        for key, entry in items:
            self.put(key, entry)

    def _forget(self, item: str) -> None:
        self._summed.pop(item, None)
        self._rows.pop(item, None)

    def __len__(self) -> int:
        return len(self._entries)

    def knows(self, product_id: str) -> bool:
        return bool(self._keys_of.get(product_id))

    def successors(self, product_id: str) -> dict[str, int]:
        """Streamed successor counts of one item, summed over partitions (read-only)."""
        summed = self._summed.get(product_id)
        if summed is None:
            summed = {}
            for key in sorted(self._keys_of.get(product_id, ())):
                for item, count in self._entries[key]["next"].items():
                    summed[item] = summed.get(item, 0) + count
            self._summed[product_id] = summed
        return summed

    def rows(self, product_id: str, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, counts) of an item's successors in ``model``'s catalogue (an
        ``ActiveModel``): per pair the larger of its shipped and streamed counts."""
        if self._rows_model != model.version:
            self._rows, self._rows_model = {}, model.version
        cached = self._rows.get(product_id)
        if cached is not None:
            return cached
        merged: dict[int, float] = {}
        shipped = model.transitions
        i = model.index.get(product_id)
        if shipped is not None and i is not None:
            idx, counts = shipped.row(i)
            merged = dict(zip(idx.tolist(), counts.tolist()))
        get = model.index.get
        for item, count in self.successors(product_id).items():
            j = get(item)
            if j is not None and count > merged.get(j, 0.0):
                merged[j] = float(count)
        row = (np.fromiter(merged.keys(), dtype=np.int64, count=len(merged)),
               np.fromiter(merged.values(), dtype=np.float64, count=len(merged)))
        self._rows[product_id] = row
        return row

    def next_items(self, product_id: str, model: Any, k: int) -> list[tuple[str, float]]:
        """"What users take after this item": its k strongest successors, by product id."""
        if model is not None:
            idx, counts = self.rows(product_id, model)
            scored = {model.item_ids[j]: c for j, c in zip(idx.tolist(), counts.tolist())}
            for item, count in self.successors(product_id).items():  # items the model lacks
                scored.setdefault(item, float(count))
        else:
            scored = {item: float(c) for item, c in self.successors(product_id).items()}
        return sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
