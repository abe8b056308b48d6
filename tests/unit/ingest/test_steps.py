"""ingest/accept.py and ingest/fold_items.py, the steps on their own: pure functions of the batch's
data, so each is checked without tables, Faust or a broker."""

from __future__ import annotations

import json
from types import SimpleNamespace

from recsys_faust.events.model import Source
from recsys_faust.ingest.accept import Accepted, newest_by_partition, sort_records
from recsys_faust.ingest.fold_items import fold_popularity, popularity_keys
from recsys_faust.popularity.trending import COUNT, TOTAL
from recsys_faust.events.validate import validate_event
from recsys_faust.settings import EventWeights

VIEWS = "amazon-product-views"


def record(topic, partition, offset, value):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset, value=raw,
                                                   key=None, timestamp=None))


def view(user, product, ts, n):
    return {"event_id": f"e{n}", "user_id": user, "product_id": product, "timestamp": ts, "category": "c"}


def sort(records, owned=None, misplaced_users=()):
    return sort_records(records, owned=owned, misplaced=lambda topic, partition, user: user in misplaced_users,
                        max_bytes=65_536, max_future_skew_s=86_400.0)


def test_each_record_lands_in_exactly_one_bucket_and_nothing_is_sent():
    records = [
        record(VIEWS, 0, 1, view("ann", "p1", 100.0, 1)),
        record(VIEWS, 0, 2, b"{not json"),
        record(VIEWS, 0, 3, view("bob", "p2", 101.0, 2)),          # hashes elsewhere
        record(VIEWS, 1, 4, view("cy", "p3", 102.0, 3)),           # partition 1 was revoked
        record(VIEWS, 0, 5, view("ann", "p4", 103.0, 4)),
    ]
    out = sort(records, owned={(VIEWS, 0)}, misplaced_users={"bob"})
    assert [acc.event.product_id for acc in out.by_user["ann"]] == ["p1", "p4"]  # in offset order
    assert [(rec.message.offset, inv.code) for rec, inv in out.refused] == [(2, "not_json")]
    assert [(rec.message.offset, user) for rec, user in out.misplaced] == [(3, "bob")]
    assert [rec.message.offset for rec in out.not_owned] == [4]
    assert set(out.by_user) == {"ann"} and not out.served


def test_the_newest_event_time_is_taken_per_partition():
    def acc(ts, partition, n):
        ev = validate_event(VIEWS, view("u", "p", ts, n))
        return Accepted(ev, Source(VIEWS, partition, n), None)
    by_user = {"u": [acc(10.0, 0, 1), acc(30.0, 0, 2), acc(20.0, 1, 3)], "v": [acc(50.0, 1, 4)]}
    assert newest_by_partition(by_user) == {0: 30.0, 1: 50.0}


def test_popularity_entries_fold_in_offset_order_and_replays_change_nothing():
    def acc(user, offset, ts):
        ev = validate_event("amazon-purchases", {**view(user, "p1", ts, offset), "quantity": 1, "price": 1.0})
        return Accepted(ev, Source("amazon-purchases", 0, offset), None)
    # grouped by user, so the offsets arrive out of order: 7 before 5
    updates = {"p1@0": [acc("zed", 7, 1000.0), acc("amy", 5, 1000.0)]}
    assert popularity_keys(updates) == [("p1@0", 0)]
    weights = EventWeights()
    changed = fold_popularity(updates, [None], weights=weights, bucket_s=3600, retention_s=86_400)
    (key, entry, partition), = changed
    assert (key, partition) == ("p1@0", 0)
    # sorted back to 5, 7: both count (unsorted, 7 first, 5 would pass for a replay and be lost)
    assert entry[COUNT] == 2 and entry[TOTAL] == 2 * weights.weight("purchase")
    again = fold_popularity(updates, [entry], weights=weights, bucket_s=3600, retention_s=86_400)
    assert again == []  # both offsets already applied: no write
