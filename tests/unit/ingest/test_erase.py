"""ingest/erase.py on the event processor's batch step (in-memory tables, the real ranking):
an erased user leaves no key in any table, the item state equals what the other users' events
alone build (an independent run), their older records read again are dropped, a newer one starts
a new profile, and erasing inside the pipeline (the next batch folded before the last is stored)
misses nothing."""

from __future__ import annotations

import asyncio
import json
import random

from recsys_faust.erasure.forget import mark_key, user_hash
from recsys_faust.kafka.partitioning import user_partition
from recsys_faust.popularity.trending import APPLIED as POP_APPLIED
from recsys_faust.settings import Settings
from recsys_faust.transitions.counts import counts_from_histories

import numpy as np

from .test_processor import DAY, N, build, record, run

ERASED = "bob"
OTHERS = ["alice", "carol", "dave"]


def events_of(user: str, n: int, seed: int) -> list[tuple[str, dict]]:
    """``n`` interactions over a few days, on the three interaction topics."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["amazon-product-views", "amazon-purchases"])
        out.append((kind, {"event_id": f"{user}-{i}", "user_id": user, "product_id": f"p{rng.randrange(8)}",
                           "timestamp": 10 * DAY + rng.randrange(4) * DAY + rng.randrange(3600), "category": "c"}))
    return out


def as_records(events: list[tuple[str, dict]], start: int = 0) -> list:
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for topic, obj in events:
        p = user_partition(obj["user_id"], N)
        offsets[(topic, p)] = offsets.get((topic, p), start) + 1
        out.append(record(topic, p, offsets[(topic, p)], obj))
    return out


def erasure(user: str, at: float, offset: int) -> object:
    return record("recsys-erasures", user_partition(user, N), offset, {"user_id": user, "erased_at": at})


def item_state(tables) -> tuple[dict, dict]:
    """Transition counts and popularity entries without their bookkeeping (the offsets applied)."""
    counts = {k: e["next"] for k, e in tables["transitions"].data.items() if not k.endswith("\x1fhistory")}
    pop = {k: {f: v for f, v in e.items() if f != POP_APPLIED} for k, e in tables["popularity"].data.items()}
    return ({k: v for k, v in counts.items() if v}, pop)


def keys_naming(tables, user: str) -> list[str]:
    return [f"{name}:{k}" for name, t in tables.items() for k in t.data if user in k]


def feed(processor, records, size: int = 7) -> None:
    for i in range(0, len(records), size):
        asyncio.run(run(processor, records[i:i + size]))


def test_an_erased_user_leaves_no_key_and_the_items_equal_the_other_users_alone():
    settings = Settings(profile_recent_items=6)   # bob has more: his history spills (exactness kept)
    others = [e for i, u in enumerate(OTHERS) for e in events_of(u, 5, seed=i)]
    bob = events_of(ERASED, 14, seed=99)
    mixed = others + bob
    random.Random(3).shuffle(mixed)   # the users interleaved (each partition still in offset order)
    everyone = as_records(mixed)

    processor, tables, _ranker, dead, _rr = build(model=True, settings=settings)
    feed(processor, everyone)
    assert tables["profiles"].data[ERASED]["counts"] and keys_naming(tables, ERASED)
    asyncio.run(run(processor, [erasure(ERASED, 20 * DAY, 1)]))

    assert keys_naming(tables, ERASED) == []
    assert ERASED not in tables["recommendations"].data and ERASED not in tables["user_factors"].data
    assert tables["erasures"].data == {mark_key(ERASED): 20 * DAY} and user_hash(ERASED) in mark_key(ERASED)

    # the independent run: the other users' events alone, in the same order
    alone, alone_tables, _r, _d, _rr = build(model=True, settings=settings)
    feed(alone, [r for r in everyone if json.loads(r.message.value)["user_id"] != ERASED])
    counts, pop = item_state(tables)
    alone_counts, alone_pop = item_state(alone_tables)
    assert counts == alone_counts
    # popularity: bob's interactions the profile held (6 of 14) are taken back; the 8 older stay
    assert {k for k, e in pop.items() if e["n"]} >= {k for k, e in alone_pop.items() if e["n"]}
    assert sum(e["n"] for e in pop.values()) == sum(e["n"] for e in alone_pop.values()) + 14 - 6
    assert not dead.records


def test_popularity_is_exact_for_a_user_within_the_profile_bound():
    others = [e for i, u in enumerate(OTHERS) for e in events_of(u, 5, seed=i)]
    bob = events_of(ERASED, 5, seed=7)
    everyone = as_records(others + bob)
    processor, tables, _r, _d, _rr = build(model=False)
    feed(processor, everyone)
    asyncio.run(run(processor, [erasure(ERASED, 20 * DAY, 1)]))
    alone, alone_tables, _r2, _d2, _rr2 = build(model=False)
    feed(alone, [r for r in everyone if json.loads(r.message.value)["user_id"] != ERASED])
    counts, pop = item_state(tables)
    alone_counts, alone_pop = item_state(alone_tables)
    assert counts == alone_counts
    assert {k: e for k, e in pop.items() if e["n"]} == {k: e for k, e in alone_pop.items() if e["n"]}


def test_the_counts_equal_the_offline_rule_on_the_remaining_users():
    """Against an independent model: the offline counts (transitions/counts.py) of the other
    users' events, summed over partitions."""
    others = [e for i, u in enumerate(OTHERS) for e in events_of(u, 6, seed=10 + i)]
    bob = events_of(ERASED, 9, seed=5)
    processor, tables, _r, _d, _rr = build(model=False)
    feed(processor, as_records(others + bob))
    asyncio.run(run(processor, [erasure(ERASED, 20 * DAY, 1)]))
    users = {u: i for i, u in enumerate(OTHERS)}
    rows = sorted(((users[o["user_id"]], int(o["product_id"][1:]), float(o["timestamp"]), t) for t, o in others),
                  key=lambda r: (r[2], r[3] == "amazon-purchases", r[1]))
    offline = counts_from_histories(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                                    np.array([r[2] for r in rows]), 8).tocoo()
    expected = {(f"p{i}", f"p{j}"): int(c) for i, j, c in zip(offline.row, offline.col, offline.data) if c}
    streamed: dict = {}
    for key, nxt in item_state(tables)[0].items():
        for dst, c in nxt.items():
            streamed[(key.rpartition("@")[0], dst)] = streamed.get((key.rpartition("@")[0], dst), 0) + c
    assert streamed == expected


def test_older_records_read_again_are_dropped_and_a_newer_one_starts_a_new_profile():
    processor, tables, _r, dead, _rr = build(model=False)
    bob = as_records(events_of(ERASED, 4, seed=1))
    feed(processor, bob)
    # in one batch: the erasure, an old record of his read again, a new event after the erasure
    p = user_partition(ERASED, N)
    new = record("amazon-product-views", p, 500, {"event_id": "after", "user_id": ERASED, "product_id": "p1",
                                                  "timestamp": 30 * DAY, "category": "c"})
    asyncio.run(run(processor, [bob[0], erasure(ERASED, 20 * DAY, 1), new]))
    profile = tables["profiles"].data[ERASED]
    assert profile["counts"] == {"view": 1} and [r[0] for r in profile["recent"]] == ["p1"]
    # later: every old record again (a restore), and a producer resending one: all dropped
    again = as_records(events_of(ERASED, 4, seed=1), start=1000)
    feed(processor, again)
    assert tables["profiles"].data[ERASED]["counts"] == {"view": 1}
    assert not dead.records


def test_an_erasure_folded_before_the_users_last_batch_is_stored_misses_nothing():
    """The pipeline folds batch N+1 while N waits for its scores: the erasure in N+1 must also
    take out what N holds ahead of the store (its event ids, its history)."""
    processor, tables, _r, _d, _rr = build(model=True)
    bob = as_records(events_of(ERASED, 6, seed=2))

    async def pipelined():
        rest_n = await processor.process(bob)
        rest_next = await processor.process([erasure(ERASED, 20 * DAY, 1)])
        await rest_n
        await rest_next

    asyncio.run(pipelined())
    assert keys_naming(tables, ERASED) == []
    assert item_state(tables)[0] == {}


def test_a_user_erased_twice_and_active_between_in_batches_folded_ahead_of_the_store():
    """Schemathesis found it: the erased history was held ahead of the store as the TOMBSTONE
    staged for RocksDB, and the next batch to read it (another erasure, or an event) crashed."""
    processor, tables, _r, dead, _rr = build(model=True)
    p = user_partition(ERASED, N)
    bob = as_records(events_of(ERASED, 5, seed=3))
    later = record("amazon-product-views", p, 900, {"event_id": "later", "user_id": ERASED, "product_id": "p2",
                                                    "timestamp": 40 * DAY, "category": "c"})

    async def pipelined():
        rests = [await processor.process(bob),
                 await processor.process([erasure(ERASED, 20 * DAY, 1)]),
                 await processor.process([erasure(ERASED, 21 * DAY, 2)]),
                 await processor.process([later]),
                 await processor.process([erasure(ERASED, 50 * DAY, 3)])]
        for rest in rests:
            await rest

    asyncio.run(pipelined())
    assert keys_naming(tables, ERASED) == [] and item_state(tables)[0] == {}
    assert tables["erasures"].data == {mark_key(ERASED): 50 * DAY} and not dead.records
