"""Demo and test data: a seeded synthetic shop, and dataset files (CSV) turned into events.

The synthetic shop has categories of items with Zipf-like popularity and users who mostly
browse one or two favourite categories, so popularity, affinities and (later) ALS all have
structure to find. Same seed, same events.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

KindEvent = tuple[str, dict]  # (kind, event object) as client.producers.prepare() takes it


@dataclass(frozen=True)
class ShopSpec:
    users: int = 300
    items: int = 400
    categories: int = 8
    events_per_user: int = 20
    seed: int = 7
    span_s: float = 6 * 3600.0  # events spread over the last span_s seconds before `end`


def synthetic_events(spec: ShopSpec = ShopSpec(), end: Optional[float] = None) -> list[KindEvent]:
    rng = random.Random(spec.seed)
    end = time.time() if end is None else end
    start = end - spec.span_s
    cats = [f"cat{c}" for c in range(spec.categories)]
    items_by_cat: dict[str, list[str]] = {c: [] for c in cats}
    for i in range(spec.items):
        items_by_cat[cats[i % spec.categories]].append(f"p{i:05d}")
    # Zipf-like weights inside each category: the first items are the popular ones.
    weights = {c: [1.0 / (r + 1) ** 1.1 for r in range(len(ids))] for c, ids in items_by_cat.items()}
    events: list[tuple[float, int, KindEvent]] = []
    seq = 0
    for u in range(spec.users):
        user = f"u{u:05d}"
        favourites = rng.sample(cats, k=1 if rng.random() < 0.5 else 2)
        t = start + rng.random() * spec.span_s * 0.5
        seq += 1
        events.append((t, seq, ("user-event", {
            "event_id": f"{user}-login-0", "user_id": user, "event_type": "login", "timestamp": round(t, 3),
        })))
        for e in range(spec.events_per_user):
            t = min(end - 1, t + rng.expovariate(1.0 / (spec.span_s * 0.5 / spec.events_per_user)))
            cat = rng.choice(favourites) if rng.random() < 0.85 else rng.choice(cats)
            product = rng.choices(items_by_cat[cat], weights=weights[cat])[0]
            roll = rng.random()
            base = {"event_id": f"{user}-{e}", "user_id": user, "product_id": product,
                    "timestamp": round(t, 3), "category": cat}
            if roll < 0.75:
                kind, obj = "view", {**base, "session_id": f"{user}-s{e // 8}"}
            elif roll < 0.9:
                kind, obj = "purchase", {**base, "quantity": rng.randint(1, 3), "price": round(rng.uniform(1, 60), 2)}
            else:
                kind, obj = "review", {**base, "rating": rng.choice([3, 4, 4, 5, 5, 5])}
            seq += 1
            events.append((t, seq, (kind, obj)))
    events.sort(key=lambda x: (x[0], x[1]))
    return [ke for _, _, ke in events]


def dataset_events(path: Path, *, kind: str = "purchase", limit: Optional[int] = None) -> Iterator[KindEvent]:
    """Rows ``user_id,item_id,rating,timestamp[,category]`` as events of ``kind``.

    Implicit datasets (rating 1 = "interacted") map to purchases; ``kind="review"`` sends the
    rating as a review. Event ids are derived from the row, so replaying twice is idempotent.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "item_id", "timestamp"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (need user_id,item_id,rating,timestamp[,category])")
        for n, row in enumerate(reader):
            if limit is not None and n >= limit:
                return
            user, item, ts = row["user_id"], row["item_id"], float(row["timestamp"])
            obj = {"event_id": f"ds-{user}-{item}-{int(ts)}", "user_id": user, "product_id": item, "timestamp": ts}
            category = (row.get("category") or "").strip()
            if category and category != "0":
                obj["category"] = category
            if kind == "review":
                obj["rating"] = max(1, min(5, int(float(row.get("rating") or 5))))
            yield kind, obj


def count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return max(0, sum(1 for _ in fh) - 1)
