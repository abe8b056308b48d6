"""Interaction data for training and evaluation: ids mapped to dense indices, in time order."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays, one row per interaction, in (time, arrival) order."""

    users: np.ndarray      # int32 dense user index
    items: np.ndarray      # int32 dense item index
    weights: np.ndarray    # float32 confidence weight
    ts: np.ndarray         # float64 epoch seconds
    user_ids: list[str]    # dense index -> external id
    item_ids: list[str]
    item_category: list[Optional[str]]
    # What the drift reference needs beyond the matrix, where the source has it (the database
    # and event lists do, the CSV does not): per row, the event kind, and price and rating (NaN
    # where the event had none).
    kinds: Optional[np.ndarray] = None
    prices: Optional[np.ndarray] = None
    ratings: Optional[np.ndarray] = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def matrix(self, mask: Optional[np.ndarray] = None) -> sp.csr_matrix:
        """users x items CSR of summed weights (rows selected by ``mask``)."""
        u, i, w = self.users, self.items, self.weights
        if mask is not None:
            u, i, w = u[mask], i[mask], w[mask]
        m = sp.csr_matrix((w, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        return m


def from_rows(rows: Iterable[tuple]) -> Interactions:
    """(user_id, item_id, weight, ts, category[, kind, price, rating]) rows -> Interactions,
    stable-sorted by time. The last three, when the rows have them, feed the drift reference."""
    uidx: dict[str, int] = {}
    iidx: dict[str, int] = {}
    cats: list[Optional[str]] = []
    us, its, ws, tss = [], [], [], []
    kinds: list[str] = []
    prices: list[float] = []
    ratings: list[float] = []
    for row in rows:
        user, item, weight, ts, cat = row[:5]
        if len(row) >= 8:
            kinds.append(row[5])
            prices.append(float("nan") if row[6] is None else float(row[6]))
            ratings.append(float("nan") if row[7] is None else float(row[7]))
        u = uidx.setdefault(user, len(uidx))
        i = iidx.get(item)
        if i is None:
            i = iidx[item] = len(iidx)
            cats.append(cat or None)
        elif cat and not cats[i]:
            cats[i] = cat
        us.append(u)
        its.append(i)
        ws.append(weight)
        tss.append(ts)
    ts_arr = np.asarray(tss, dtype=np.float64)
    order = np.argsort(ts_arr, kind="stable")
    extras = len(kinds) == len(us) and len(us) > 0
    return Interactions(
        users=np.asarray(us, dtype=np.int32)[order],
        items=np.asarray(its, dtype=np.int32)[order],
        weights=np.asarray(ws, dtype=np.float32)[order],
        ts=ts_arr[order],
        user_ids=list(uidx),
        item_ids=list(iidx),
        item_category=cats,
        kinds=np.asarray(kinds, dtype=object)[order] if extras else None,
        prices=np.asarray(prices, dtype=np.float64)[order] if extras else None,
        ratings=np.asarray(ratings, dtype=np.float64)[order] if extras else None,
    )


def load_csv(path: Path, *, weight: float = 1.0, rating_as_weight: bool = False) -> Interactions:
    """``user_id,item_id,rating,timestamp[,category]`` (category 0 = unknown)."""
    def rows():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            missing = {"user_id", "item_id", "timestamp"} - set(header)
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            u, i, t = header.index("user_id"), header.index("item_id"), header.index("timestamp")
            r = header.index("rating") if "rating" in header else None
            c = header.index("category") if "category" in header else None
            for row in reader:
                cat = row[c].strip() if c is not None and c < len(row) else ""
                w = float(row[r] or 1.0) if rating_as_weight and r is not None else weight
                yield row[u], row[i], w, float(row[t]), (cat if cat not in ("", "0") else None)
    return from_rows(rows())


def leave_last_out(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(train mask, test row index per user or -1): each user's last interaction is held out.

    Users with a single interaction keep it for training and are not evaluated. Rows are in
    time order with ties in arrival order, so "last" is the last row of the user.
    """
    last = np.full(data.n_users, -1, dtype=np.int64)
    count = np.bincount(data.users, minlength=data.n_users)
    last[data.users] = np.arange(len(data))  # later rows overwrite earlier ones
    test_row = np.where(count >= 2, last, -1)
    train = np.ones(len(data), dtype=bool)
    train[test_row[test_row >= 0]] = False
    return train, test_row


def amazon_csv() -> Optional[Path]:
    """The Amazon grocery interactions, when this machine has them: ``RECSYS_AMAZON_CSV``, else
    ``shared/data/amazon-grocery/interactions.csv`` beside the repository or the working
    directory (the data is never copied into the repository)."""
    env = os.environ.get("RECSYS_AMAZON_CSV")
    rel = Path("shared") / "data" / "amazon-grocery" / "interactions.csv"
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[3] / rel, Path.cwd().parent / rel]
    return next((p for p in candidates if p.is_file()), None)
