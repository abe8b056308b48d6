"""ingest/: AheadOfStore (batch N+1 folds from batch N's values until N is stored)
and the event processor's batch step without Faust: tables are in-memory stand-ins with the
batched interface the processor uses (read_many, encode_many, store_staged; no changelog), the
ranking and scoring are the real ones (inline scorer). What a batch must leave behind: profiles,
popularity and transition entries, ready lists equal to what the Ranker computes for the stored
profile, bad records dead-lettered, misrouted ones re-sent, and a replay changing nothing.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys_faust.events.model import Source
from recsys_faust.kafka import codecs
from recsys_faust.kafka.partitioning import user_partition
from recsys_faust.kafka.table import TOMBSTONE, StagedWrites
from recsys_faust.popularity.trending import APPLIED, COUNT, PopularityIndex
from recsys_faust.profiles import dedup
from recsys_faust.ranking.model.active import ModelHolder
from recsys_faust.ranking.model.artifact import ModelArtifact
from recsys_faust.ranking.policy.ranker import Ranker
from recsys_faust.transitions.index import TransitionIndex
from recsys_faust.settings import Settings
from recsys_faust.ingest import AheadOfStore, IngestContext, IngestTables, UserEventProcessor

class Stored:
    """What a StrKeyTable's read_many returns: the values in RocksDB (None where missing)."""

    def __init__(self, values):
        self.values = values
        self.asked: list[list[str]] = []

    def read_many(self, keys):
        self.asked.append([k for k, _ in keys])
        return [self.values.get(k) for k, _ in keys]


def test_held_values_replace_stored_ones_until_their_batch_is_stored():
    table = Stored({"u1": {"v": "stored"}, "u2": {"v": "stored"}})
    ahead = AheadOfStore()
    folded_by_1 = {"v": "batch 1"}
    ahead.hold(1, [("u1", folded_by_1, 0)])
    got = ahead.read_many(table, [("u1", 0), ("u2", 0), ("u3", 1)])
    assert got == [folded_by_1, {"v": "stored"}, None]
    assert got[0] is folded_by_1          # the same object: batch 2 folds on top of it
    assert table.asked == [["u2", "u3"]]  # only what is not held is read
    # Batch 2 changes u1 again before batch 1 is stored: releasing batch 1 must keep it.
    ahead.hold(2, [("u1", folded_by_1, 0)])
    ahead.release(1)
    assert ahead.read_many(table, [("u1", 0)]) == [folded_by_1] and len(ahead) == 1
    ahead.release(2)
    assert len(ahead) == 0
    assert ahead.read_many(table, [("u1", 0)]) == [{"v": "stored"}]


def test_a_stored_batch_stays_readable_up_to_the_bound_until_forgotten():
    table = Stored({"u1": {"v": "stored"}})
    ahead = AheadOfStore(keep=2)
    values = {f"u{i}": {"v": f"batch {i}"} for i in range(1, 4)}
    ahead.hold(1, [(k, v, 0) for k, v in values.items()])
    ahead.release(1, stored=True)
    # The bound: the first kept went first.
    assert ahead.read_many(table, [("u1", 0), ("u2", 0), ("u3", 0)]) == [{"v": "stored"}, values["u2"], values["u3"]]
    assert table.asked == [["u1"]]
    got = ahead.read_many(table, [("u3", 0)])[0]
    assert got is values["u3"]  # the same object: the next batch folds on top of it
    ahead.hold(2, [("u4", {"v": "never stored"}, 0)])
    ahead.release(2, stored=False)  # a batch that was not stored is not kept
    assert ahead.read_many(table, [("u4", 0)]) == [None]
    ahead.forget()
    assert ahead.read_many(table, [("u2", 0), ("u3", 0)]) == [None, None]  # read from the table again
    assert AheadOfStore().read_many(table, [("u1", 0)]) == [{"v": "stored"}]  # keep=0: nothing kept


N = 4
DAY = 86_400.0


class MemoryTable:
    """The batched table interface of kafka/table.StrKeyTable over a dict (values JSON-encoded
    and decoded, as RocksDB holds them)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.where: dict[str, int] = {}

    def read_many(self, keys):
        return [self.data.get(k) for k, _ in keys]

    def encode_many(self, items, encoded=()):
        return self.encode_many_raw(items, encoded)[0]

    def encode_many_raw(self, items, encoded=()):
        by_partition: dict[int, list] = {}
        raws = []
        for key, value, partition in items:
            raws.append(None if value is TOMBSTONE else codecs.dumps_json(value))
            by_partition.setdefault(partition, []).append((key.encode(), raws[-1]))
        for key, raw, partition in encoded:
            by_partition.setdefault(partition, []).append((key.encode(), raw))
        return StagedWrites(by_partition), raws

    def store_staged(self, staged):
        for partition, records in staged.by_partition.items():
            for kb, vb in records:
                if vb is None:  # a tombstone
                    self.data.pop(kb.decode(), None)
                    continue
                self.data[kb.decode()] = codecs.loads_json(vb)
                self.where[kb.decode()] = partition
        return staged

    def keys_between(self, partition, start, stop, limit):
        return sorted(k for k in self.data if start <= k < stop and self.where[k] == partition)[:limit]

    def _staged_sends(self, staged):
        return []


class Sent:
    def __init__(self) -> None:
        self.records: list = []

    async def send(self, *args: Any, **kwargs: Any) -> None:
        self.records.append((args, kwargs))


def record(topic: str, partition: int, offset: int, value: Any) -> Any:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset, value=raw,
                                                   key=None, timestamp=None))


def build(model: bool = True, assigned=None, settings=None):
    settings = settings or Settings()
    tables = {name: MemoryTable() for name in ("profiles", "recommendations", "popularity", "transitions",
                                                  "user_factors", "event_ids", "erasures", "answered")}
    holder = ModelHolder()
    if model:
        ids = [f"p{i}" for i in range(6)]
        shipped = sp.csr_matrix(np.eye(6, k=1, dtype=np.float32))  # p_i -> p_{i+1}
        holder.offer(ModelArtifact("m1", ids, np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32),
                                   item_category=["c"] * 6, transitions=shipped), 1.0)
    popularity = PopularityIndex(window_s=10**9, bucket_s=3600, refresh_s=0)
    ranker = Ranker(settings, popularity, TransitionIndex(), holder)
    dead, rerouted = Sent(), Sent()
    processor = UserEventProcessor(IngestContext(
        settings, IngestTables(**tables), index=popularity, ranker=ranker, dead_letters=dead,
        topic_for=lambda name: rerouted, partitions_of=lambda topic: N, assigned=assigned))
    return processor, tables, ranker, dead, rerouted


async def run(processor, records):
    rest = await processor.process(records)
    await rest


def view(user: str, product: str, ts: float, n: int) -> dict:
    return {"event_id": f"e{n}", "user_id": user, "product_id": product, "timestamp": ts, "category": "c"}


def test_a_batch_leaves_profiles_entries_and_ready_lists_that_the_ranker_agrees_with():
    processor, tables, ranker, dead, rerouted = build()
    user = "alice"
    p = user_partition(user, N)
    events = [view(user, "p0", 10 * DAY, 0), view(user, "p1", 10 * DAY + 60, 1), view(user, "p2", 11 * DAY, 2)]
    batch = [record("amazon-product-views", p, 100 + n, e) for n, e in enumerate(events)]
    asyncio.run(run(processor, batch))
    profile = tables["profiles"].data[user]
    assert [r[0] for r in profile["recent"]] == ["p0", "p1", "p2"]
    # same day both ways, the next active day forwards, in entries owned by the user's partition
    assert tables["transitions"].data[f"p0@{p}"]["next"] == {"p1": 1, "p2": 1}
    assert tables["transitions"].data[f"p1@{p}"]["next"] == {"p0": 1, "p2": 1}
    assert {tables["transitions"].where[k] for k in tables["transitions"].data} == {p}
    assert tables["popularity"].data[f"p1@{p}"][COUNT] == 1
    stored = tables["recommendations"].data[user]
    columns, strategy = ranker.score(ranker.models.active, [profile])[0]
    assert stored["strategy"] == strategy == "als+transitions"
    assert stored["ids"] == columns[0] and not set(stored["ids"]) & {"p0", "p1", "p2"}
    assert stored["ids"][0] == "p3"  # the shipped p2 -> p3 wins: p2 is the latest day's item
    assert not dead.records and not rerouted.records

    before = json.dumps(tables["transitions"].data, sort_keys=True)
    asyncio.run(run(processor, batch))  # Faust's replay after a rebalance: nothing moves
    assert json.dumps(tables["transitions"].data, sort_keys=True) == before
    assert tables["profiles"].data[user]["counts"] == {"view": 3}


def test_bad_and_misrouted_records_never_reach_the_state():
    processor, tables, _ranker, dead, rerouted = build(model=False)
    user = "bob"
    p = user_partition(user, N)
    batch = [record("amazon-product-views", p, 1, b"{not json"),
             record("amazon-product-views", (p + 1) % N, 2, view(user, "p1", DAY, 7)),
             record("amazon-product-views", p, 3, view(user, "p2", DAY, 8))]
    asyncio.run(run(processor, batch))
    assert len(dead.records) == 1 and dead.records[0][0][1].code == "not_json"
    assert len(rerouted.records) == 1 and rerouted.records[0][1]["key"] == b"bob"
    assert [r[0] for r in tables["profiles"].data[user]["recent"]] == ["p2"]
    # no model: the list is popularity, and the one item is seen
    assert tables["recommendations"].data[user]["strategy"] in ("popular", "popular_affinity")


def test_records_of_a_partition_revoked_since_they_were_fetched_are_left_to_the_new_owner():
    user = "carol"
    p = user_partition(user, N)
    owned: set = {("amazon-product-views", p)}
    processor, tables, _ranker, dead, rerouted = build(model=False, assigned=lambda: owned)
    asyncio.run(run(processor, [record("amazon-product-views", p, 1, view(user, "p1", DAY, 1))]))
    owned.clear()  # revoked
    asyncio.run(run(processor, [record("amazon-product-views", p, 2, view(user, "p2", DAY, 2))]))
    assert [r[0] for r in tables["profiles"].data[user]["recent"]] == ["p1"]
    assert f"p1@{p}" not in tables["transitions"].data  # the pair p1 -> p2 is the new owner's to count
    assert not dead.records and not rerouted.records


def test_an_event_id_seen_again_behind_hundreds_of_its_users_events_is_applied_once():
    processor, tables, _ranker, _dead, _rerouted = build(model=False)
    user = "dave"
    p = user_partition(user, N)
    topic = "amazon-product-views"
    first = view(user, "p0", DAY, 0)
    asyncio.run(run(processor, [record(topic, p, 0, first)]))
    # 300 other events of the user (a profile used to remember only its last 256 ids) ...
    for start in range(1, 301, 100):
        asyncio.run(run(processor, [record(topic, p, n, view(user, f"q{n}", DAY + n, n))
                                    for n in range(start, start + 100)]))
    # ... then the first one again at a new offset, and twice inside one batch with a new one.
    again = [record(topic, p, 400, first), record(topic, p, 401, view(user, "p9", DAY + 500, 999)),
             record(topic, p, 402, view(user, "p9", DAY + 500, 999))]
    asyncio.run(run(processor, again))
    profile = tables["profiles"].data[user]
    assert profile["counts"] == {"view": 302}
    for item in ("p0", "p9"):
        assert sum(e[COUNT] for k, e in tables["popularity"].data.items() if k.startswith(f"{item}@")) == 1
    assert "ids" not in profile  # the ids live in their own table, not in every profile write


def test_an_event_whose_id_was_stored_but_whose_profile_was_lost_is_applied_when_read_again():
    # The ids' changelog is acknowledged before the profiles': after a crash between the two,
    # the table knows the event and the profile does not. Its own record must still apply.
    processor, tables, _ranker, _dead, _rerouted = build(model=False)
    user, topic = "erin", "amazon-product-views"
    p = user_partition(user, N)
    rec = record(topic, p, 7, view(user, "p1", DAY, 1))
    asyncio.run(run(processor, [rec]))
    del tables["profiles"].data[user]  # the lost profile write
    processor.forget_kept()  # the restarted worker keeps nothing of the batches before the crash
    asyncio.run(run(processor, [rec]))  # the same record, read again
    assert tables["profiles"].data[user]["counts"] == {"view": 1}
    asyncio.run(run(processor, [record(topic, p, 8, view(user, "p1", DAY, 1))]))  # a true duplicate
    assert tables["profiles"].data[user]["counts"] == {"view": 1}


def test_the_event_ids_state_holds_one_window_of_events_and_duplicates_inside_it_are_caught():
    window = 7 * DAY
    processor, tables, _ranker, _dead, _rerouted = build(model=False, settings=Settings(dedup_window_s=window))
    user, topic = "frank", "amazon-product-views"
    p = user_partition(user, N)
    per_day = 20
    offset = 0
    sizes = []
    for day in range(30):
        batch = []
        for i in range(per_day):
            batch.append(record(topic, p, offset, view(user, f"x{i}", (day + 1) * DAY + i, offset)))
            offset += 1
        asyncio.run(run(processor, batch))
        sizes.append(len(tables["event_ids"].data))
    # One key per event of the current epoch and the one before (an epoch is a window), and the
    # partition's clock: between one and two windows of events, never more.
    window_events = 7 * per_day
    assert max(sizes) <= 2 * window_events + 1
    assert min(sizes[14:]) >= window_events + 1
    # Steady: the same at the same phase of two epochs.
    assert sizes[-1] == sizes[-8]
    # A duplicate of an event six days back is caught; one of an event 20 days back has left the
    # window and is applied as a new event (the contract's guarantee is the window).
    six_days_back = (30 - 6) * per_day
    twenty_back = (30 - 20) * per_day
    before = tables["profiles"].data[user]["counts"]["view"]
    asyncio.run(run(processor, [
        record(topic, p, offset, view(user, "x0", (30 - 6 + 1) * DAY, six_days_back)),
        record(topic, p, offset + 1, view(user, "x0", (30 - 20 + 1) * DAY, twenty_back))]))
    assert tables["profiles"].data[user]["counts"]["view"] == before + 1


def _counts(tables) -> dict:
    return {k: e["next"] for k, e in tables["transitions"].data.items() if not k.endswith("\x1fhistory")}


def test_transitions_stay_exact_when_a_crash_lost_the_profile_and_topics_are_read_again_in_another_order():
    """The case the failover test found: a batch's transition records survived a crash, its
    profile write did not, and the user's events on two topics are read again in the other
    order. Counted from the profile's rows, the pair between them was lost; from the user's
    transition history, which is in the entries' table, it is not."""
    user = "gina"
    p = user_partition(user, N)
    x = record("amazon-product-views", p, 10, view(user, "p1", DAY + 60, 1))
    y = record("amazon-purchases", p, 4, view(user, "p2", DAY + 120, 2))
    expected_proc, expected, _r, _d, _rr = build(model=False)
    asyncio.run(run(expected_proc, [x]))
    asyncio.run(run(expected_proc, [y]))
    assert _counts(expected)[f"p1@{p}"] == {"p2": 1} and _counts(expected)[f"p2@{p}"] == {"p1": 1}

    processor, tables, _ranker, _dead, _rerouted = build(model=False)
    asyncio.run(run(processor, [x]))
    del tables["profiles"].data[user]               # the profile write lost, the transitions kept
    processor2, tables2, _r2, _d2, _rr2 = build(model=False)
    for name in tables:                               # a new owner with what survived
        tables2[name].data, tables2[name].where = dict(tables[name].data), dict(tables[name].where)
    asyncio.run(run(processor2, [y]))                 # read again: the purchases topic first
    asyncio.run(run(processor2, [x]))
    assert _counts(tables2) == _counts(expected)
    assert tables2["profiles"].data[user]["counts"] == {"view": 1, "purchase": 1}


def test_the_transition_history_is_bounded_and_a_replay_changes_nothing():
    settings = Settings(profile_recent_items=3)
    processor, tables, _ranker, _dead, _rerouted = build(model=False, settings=settings)
    user = "hank"
    p = user_partition(user, N)
    batch = [record("amazon-product-views", p, n, view(user, f"p{n}", DAY + n, n)) for n in range(5)]
    asyncio.run(run(processor, batch))
    history = tables["transitions"].data[f"{user}\x1fhistory"]
    assert [r[0] for r in history["rows"]] == ["p2", "p3", "p4"]
    before = json.dumps(tables["transitions"].data, sort_keys=True)
    asyncio.run(run(processor, batch))
    assert json.dumps(tables["transitions"].data, sort_keys=True) == before


def served_record(user: str, at: float, items: list[str], offset: int, p: int, stale: bool = False) -> Any:
    return record("recsys-served", p, offset, {"user_id": user, "served_at": at, "model_version": "m1",
                                               "strategy": "als+transitions", "items": items, "via": "http",
                                               **({"stale": True} if stale else {})})


def test_an_answer_ranked_live_for_want_of_a_current_ready_list_has_the_user_ranked_again():
    """After a model switch a user who only reads has an older model's ready list: each answer is
    ranked live until the list is made again. The stale answer's record makes it; a plain
    answer leaves the list alone, and a stale answer to an id with no state makes none."""
    processor, tables, ranker, dead, _ = build()
    user = "gus"
    p = user_partition(user, N)
    asyncio.run(run(processor, [record("amazon-product-views", p, 3, view(user, "p2", 10 * DAY - 60, 0))]))
    current = dict(tables["recommendations"].data[user])
    old = {**current, "model_version": "an-older-model", "ids": ["p0"], "scores": [1.0], "categories": [None]}
    tables["recommendations"].data[user] = old
    asyncio.run(run(processor, [served_record(user, 10 * DAY, ["p0"], 5, p)]))
    assert tables["recommendations"].data[user] == old          # a plain answer: not ranked again
    asyncio.run(run(processor, [served_record(user, 10 * DAY + 1, ["p0"], 6, p, stale=True)]))
    remade = tables["recommendations"].data[user]
    assert remade["model_version"] == ranker.models.active.version != "an-older-model"
    assert remade["ids"] == current["ids"] and remade["generated_at"] > old["generated_at"]
    assert len(tables["profiles"].data[user]["answers"]) == 2
    asyncio.run(run(processor, [served_record("ghost", 10 * DAY, ["p1"], 1, user_partition("ghost", N), stale=True)]))
    assert "ghost" not in tables["profiles"].data and "ghost" not in tables["recommendations"].data
    assert not dead.records


def test_served_answers_fold_into_the_profile_and_count_a_hit_once_in_either_order_and_under_replays():
    from recsys_faust.online.attribution import Key

    key = Key("m1", "als+transitions", "")
    for answer_first in (True, False):
        processor, tables, _ranker, dead, _ = build()
        user = "dora"
        p = user_partition(user, N)
        answer = served_record(user, 10 * DAY, ["p3", "p4"], 5, p)
        bought = record("amazon-purchases", p, 7, {**view(user, "p4", 10 * DAY + 60, 1), "quantity": 1})
        asyncio.run(run(processor, [record("amazon-product-views", p, 3, view(user, "p2", 10 * DAY - 60, 0))]))
        list_before = dict(tables["recommendations"].data[user])
        first, second = (answer, bought) if answer_first else (bought, answer)
        asyncio.run(run(processor, [first]))
        if answer_first:  # an answer alone changes the profile, not the ready list
            assert tables["recommendations"].data[user] == list_before
        asyncio.run(run(processor, [second]))
        asyncio.run(run(processor, [first, second]))  # replayed after a rebalance: nothing counts twice
        fig = processor.ctx.online.by_key[key]
        assert (fig.answers, fig.hits, fig.items) == (1, 1, {"p3", "p4"}), answer_first
        stored = tables["profiles"].data[user]["answers"]
        assert len(stored) == 1 and stored[0][5] == 1
        assert not dead.records


def test_a_bad_served_record_is_dead_lettered_with_its_reason():
    processor, tables, _ranker, dead, _ = build()
    p = user_partition("erin", N)
    asyncio.run(run(processor, [record("recsys-served", p, 1, {"user_id": "erin", "served_at": 1.0, "items": "p1",
                                                               "model_version": "m1", "strategy": "als"}),
                                record("recsys-served", p, 2, {"user_id": "erin", "served_at": 1.0, "items": ["p1"],
                                                               "model_version": "m1", "strategy": "als",
                                                               "stale": "yes"})]))
    assert [d[0][1].code for d in dead.records] == ["wrong_type", "wrong_type"]
    assert "'stale' must be true or false" in dead.records[1][0][1].detail
    assert "erin" not in tables["profiles"].data and not processor.ctx.online.by_key


def test_an_ab_test_ranks_each_variant_its_own_way_in_one_batch():
    from recsys_faust.ranking.policy.variants import assign

    settings = Settings().with_overrides(ab_variants="control=blend,solo=als,plain=popular")
    processor, tables, ranker, dead, _ = build(settings=settings)
    users = [f"ab-{i}" for i in range(30)]
    batch = []
    for n, user in enumerate(users):
        p = user_partition(user, N)
        batch += [record("amazon-product-views", p, 10 + 2 * n, view(user, "p1", 10 * DAY, 2 * n)),
                  record("amazon-product-views", p, 11 + 2 * n, view(user, "p2", 10 * DAY + 60, 2 * n + 1))]
    asyncio.run(run(processor, batch))
    want = {"control": "als+transitions", "solo": "als", "plain": ("popular", "popular_affinity")}
    seen = set()
    for user in users:
        variant = assign(user, settings.ranking.variants).name
        seen.add(variant)
        stored = tables["recommendations"].data[user]
        assert stored["strategy"] in want[variant], (user, variant, stored["strategy"])
        # the same list the read path computes live for the user
        items, strategy = ranker.build_list(tables["profiles"].data[user], 50)
        assert strategy == stored["strategy"] and [i["product_id"] for i in items] == stored["ids"]
    assert seen == set(want) and not dead.records


def test_ids_that_left_the_window_are_deleted_once_though_the_next_batch_is_folded_before_the_deletes_are_stored():
    """The pipeline folds batch N+1 before batch N is stored: N+1's sweep of the expired ids
    found N's deletes still in the store and deleted every expired id a second time."""
    processor, tables, _ranker, _dead, _rerouted = build(model=False, settings=Settings(dedup_window_s=DAY))
    ids = tables["event_ids"]
    deleted: dict[str, int] = {}
    store = ids.store_staged

    def counting_store(staged):
        for records in staged.by_partition.values():
            for kb, vb in records:
                if vb is None:
                    deleted[kb.decode()] = deleted.get(kb.decode(), 0) + 1
        return store(staged)

    ids.store_staged = counting_store
    user = "dana"
    p = user_partition(user, N)
    topic = "amazon-product-views"
    asyncio.run(run(processor, [record(topic, p, 1, view(user, "p1", DAY, 1)),
                                record(topic, p, 2, view(user, "p2", DAY + 60, 2))]))
    first_day = sorted(k for k in ids.data if k.startswith(dedup.EPOCH_PREFIX))
    assert len(first_day) == 2 and len(ids.data) == 3  # one key an event, and the partition's clock

    async def overlapped() -> None:
        # Two days (epochs) on, the first day's ids have expired; a day later the clock enters
        # the next epoch, and that batch is folded before the one before it is stored.
        rest2 = await processor.process([record(topic, p, 3, view(user, "p3", 3 * DAY, 3))])
        rest3 = await processor.process([record(topic, p, 4, view(user, "p4", 4 * DAY, 4))])
        await rest2
        await rest3

    asyncio.run(overlapped())
    assert not set(first_day) & set(ids.data)
    assert {key: deleted.get(key) for key in first_day} == {key: 1 for key in first_day}
    assert tables["profiles"].data[user]["counts"] == {"view": 4}


def test_a_restarted_worker_reads_the_partitions_clock_back_and_still_finds_the_ids_of_a_later_epoch():
    """The epoch an id is recorded under comes from the partition's clock, which only moves
    forward: a worker restarted at records older than the clock (Faust replays from the last
    commit) must look where the ids were recorded, not in the epoch of the records it reads."""
    settings = Settings(dedup_window_s=DAY)
    processor, tables, _ranker, _dead, _rerouted = build(model=False, settings=settings)
    user, topic = "gina", "amazon-product-views"
    p = user_partition(user, N)
    asyncio.run(run(processor, [record(topic, p, 1, view(user, "p1", 10 * DAY + 5, 1))]))  # epoch 10
    assert tables["event_ids"].data[dedup.clock_key(p)] == 10
    restarted = UserEventProcessor(processor.ctx)  # the same tables, nothing kept in memory
    # A repeat of e1 carrying an event time two epochs back, at a new offset: still a duplicate.
    asyncio.run(run(restarted, [record(topic, p, 2, {**view(user, "p1", 8 * DAY, 1)})]))
    assert tables["profiles"].data[user]["counts"] == {"view": 1}
    assert tables["event_ids"].data[dedup.clock_key(p)] == 10  # the clock did not move back


def test_ids_an_older_version_stored_are_still_found_and_expire_by_the_hour_as_before():
    """Tables written before epochs hold an id key and an hour key an event: an upgraded worker
    must catch their repeats, and delete them once they leave the window."""
    settings = Settings(dedup_window_s=DAY)
    processor, tables, _ranker, _dead, _rerouted = build(model=False, settings=settings)
    user, topic = "hana", "amazon-product-views"
    p = user_partition(user, N)
    ids = tables["event_ids"]
    # e1 as an older version stored it (offset 5); its profile is not needed here.
    legacy_id, legacy_time = dedup.id_key(user, "e1"), dedup.time_key(5 * DAY, user, "e1")
    ids.data[legacy_id] = dedup.entry(5 * DAY, Source(topic, p, 5))
    ids.data[legacy_time] = 1
    ids.where[legacy_id] = ids.where[legacy_time] = p
    asyncio.run(run(processor, [record(topic, p, 6, view(user, "p1", 5 * DAY + 10, 1))]))  # a repeat of e1
    assert user not in tables["profiles"].data
    asyncio.run(run(processor, [record(topic, p, 7, view(user, "p2", 5 * DAY + 20, 2))]))  # a new event
    assert tables["profiles"].data[user]["counts"] == {"view": 1}
    # A day and more later both legacy keys are gone, and the partition is looked up as a new one.
    asyncio.run(run(processor, [record(topic, p, 8, view(user, "p3", 6 * DAY + 7_200, 3))]))
    assert legacy_id not in ids.data and legacy_time not in ids.data
    asyncio.run(run(processor, [record(topic, p, 9, view(user, "p4", 6 * DAY + 3 * 3_600, 4))]))
    assert processor.event_ids.legacy[p] is False
    assert all(k.startswith((dedup.EPOCH_PREFIX, dedup.CLOCK_PREFIX)) for k in ids.data)


def test_an_expiry_cut_at_its_bound_resumes_where_it_stopped_and_deletes_every_expired_id_once(monkeypatch):
    monkeypatch.setattr(dedup, "SWEEP_MAX_KEYS", 3)
    processor, tables, _ranker, _dead, _rerouted = build(model=False, settings=Settings(dedup_window_s=DAY))
    ids = tables["event_ids"]
    user, topic = "ines", "amazon-product-views"
    p = user_partition(user, N)
    asyncio.run(run(processor, [record(topic, p, n, view(user, f"p{n}", DAY + n, n)) for n in range(8)]))
    day_one = sorted(k for k in ids.data if k.startswith(dedup.EPOCH_PREFIX))
    assert len(day_one) == 8
    scans: list[str] = []
    between = ids.keys_between
    ids.keys_between = lambda part, start, stop, limit: scans.append(start) or between(part, start, stop, limit)
    for n in range(8, 12):  # epoch 3: day one's ids expire, three a batch
        asyncio.run(run(processor, [record(topic, p, n, view(user, f"p{n}", 3 * DAY + n, n))]))
    assert not set(day_one) & set(ids.data)
    # Each scan started where the one before ended (the first at the bound of the complete scan
    # of the first batch, the next ones after the last key of a cut scan), not at the prefix.
    epoch_scans = [start for start in scans if start.startswith(dedup.EPOCH_PREFIX)]
    assert epoch_scans[0] == dedup.expired_epochs_below(1)
    assert day_one[2] < epoch_scans[1] <= day_one[3] and day_one[5] < epoch_scans[2] <= day_one[6]


def test_after_a_rebalance_the_next_batch_folds_what_the_store_holds_not_what_was_kept():
    # A partition that went to another worker and came back: its recovery wrote the other
    # worker's values into the store. What this processor kept of its own batches is stale.
    processor, tables, _ranker, _dead, _rerouted = build(model=False)
    user, topic = "gina", "amazon-product-views"
    p = user_partition(user, N)
    asyncio.run(run(processor, [record(topic, p, 1, view(user, "p1", DAY, 1))]))
    recovered = json.loads(json.dumps(tables["profiles"].data[user]))
    recovered["counts"]["view"] = 5  # what the other worker folded meanwhile
    recovered["applied"][f"{topic}:{p}"] = 9
    tables["profiles"].data[user] = recovered
    entry_key = f"p1@{p}"
    entry = json.loads(json.dumps(tables["popularity"].data[entry_key]))
    entry[COUNT] = 7
    entry[APPLIED][f"{topic}:{p}"] = 9
    tables["popularity"].data[entry_key] = entry
    # Without the rebalance the kept values are folded (the store is not read): the next batch
    # would count on top of 1, not 5.
    processor.forget_kept()
    asyncio.run(run(processor, [record(topic, p, 10, view(user, "p1", DAY + 1, 2))]))
    assert tables["profiles"].data[user]["counts"] == {"view": 6}
    assert tables["popularity"].data[entry_key][COUNT] == 8


def test_kept_values_stand_in_for_the_store_between_batches():
    processor, tables, _ranker, _dead, _rerouted = build(model=False)
    user, topic = "hal", "amazon-product-views"
    p = user_partition(user, N)
    asyncio.run(run(processor, [record(topic, p, 1, view(user, "p1", DAY, 1))]))
    asked = []
    for table in ("profiles", "popularity", "transitions"):
        original = tables[table].read_many
        tables[table].read_many = lambda keys, original=original, table=table: (asked.append((table, [k for k, _ in keys])),
                                                                                 original(keys))[1]
    asyncio.run(run(processor, [record(topic, p, 2, view(user, "p1", DAY + 1, 2))]))
    assert tables["profiles"].data[user]["counts"] == {"view": 2}
    assert all(not keys for _, keys in asked), asked  # nothing of the first batch read back


def test_answers_to_a_user_with_no_event_make_no_state_until_the_users_first_event():
    """Anyone with a read token can ask for any id: the answers served to ids that never had an
    event must not each leave a profile behind."""
    processor, tables, _ranker, dead, _ = build()
    p = user_partition("fay", N)
    asyncio.run(run(processor, [served_record(f"ghost-{n}", 10 * DAY, ["p1"], n, user_partition(f"ghost-{n}", N))
                                for n in range(5)]))
    assert not any(k.startswith("ghost-") for k in tables["profiles"].data) and not processor.ctx.online.by_key
    asyncio.run(run(processor, [served_record("fay", 10 * DAY, ["p3"], 6, p),
                                record("amazon-product-views", p, 8, view("fay", "p2", 10 * DAY + 1, 1))]))
    assert tables["profiles"].data["fay"]["counts"] == {"view": 1}   # the first event makes the profile
    assert not dead.records
