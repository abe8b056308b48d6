"""transitions/index.py: stream entries (replays, the bound), the merged index, the
shipped counts, and the blend in score_batch against the offline blend."""

from collections import Counter

import numpy as np
import scipy.sparse as sp

from recsys_faust.ranking.model.active import ActiveModel, ModelHolder
from recsys_faust.ranking.model.artifact import ModelArtifact
from recsys_faust.popularity.trending import PopularityIndex
from recsys_faust.ranking.policy.ranker import Ranker
from recsys_faust.ranking.maths.scores import transition_candidates
from recsys_faust.transitions.index import (
    TransitionCounts, TransitionIndex, apply_successors, entry_key, new_entry, query_items, successor_updates,
)
from recsys_faust.transitions.counts import DAY_S, blend, counts_from_histories, latest_day_items, pairs_for_event
from recsys_faust.settings import Settings

D = DAY_S


def test_a_replayed_source_changes_nothing_and_offsets_are_per_topic_partition():
    e = new_entry("a")
    assert apply_successors(e, {"b": 1, "c": 1}, ("amazon-views", 0, 5))
    assert not apply_successors(e, {"b": 1, "c": 1}, ("amazon-views", 0, 5))   # the same record again
    assert not apply_successors(e, {"b": 1}, ("amazon-views", 0, 4))        # an older one
    assert apply_successors(e, {"b": 1}, ("amazon-purchases", 0, 1))        # another topic's offsets
    assert e["next"] == {"c": 1, "b": 2}  # b counted last: it is the most recent key


def test_the_bound_drops_the_weakest_and_among_equals_the_least_recent():
    e = new_entry("a")
    for n, item in enumerate(["x", "y", "z", "x"]):
        apply_successors(e, {item: 1}, ("t", 0, n), max_successors=3)
    assert e["next"] == {"y": 1, "z": 1, "x": 2}
    apply_successors(e, {"w": 1}, ("t", 0, 10), max_successors=3)  # y is the oldest of the 1s
    assert e["next"] == {"z": 1, "x": 2, "w": 1}
    assert len(e["next"]) == 3


def test_profile_rows_folded_event_by_event_give_the_offline_counts():
    """The stream's rule (successor_updates over the profile's recent rows) and the offline
    counts (counts_from_histories) are one rule: same counts on the same histories."""
    rng = np.random.default_rng(3)
    n, n_items = 300, 20
    users = rng.integers(0, 12, n)
    ts = np.sort(rng.integers(0, 15 * D, n)).astype(np.float64)
    items = rng.integers(0, n_items, n)
    offline = counts_from_histories(users, items, ts, n_items).toarray()
    entries: dict[str, dict] = {}
    recent: dict[int, list] = {}
    for offset, (u, i, t) in enumerate(zip(users.tolist(), items.tolist(), ts.tolist())):
        rows = recent.setdefault(u, [])
        for src, dsts in successor_updates(rows, f"p{i}", t).items():
            e = entries.setdefault(entry_key(src, u % 3), new_entry(src))
            apply_successors(e, dsts, ("t", u % 3, offset), max_successors=10_000)
        rows.append([f"p{i}", "purchase", t, None, None])
    index = TransitionIndex()
    index.put_many(entries.items())
    streamed = np.zeros((n_items, n_items))
    for a in range(n_items):
        for b, c in index.successors(f"p{a}").items():
            streamed[a, int(b[1:])] = c
    assert np.array_equal(streamed, offline)
    assert index.pairs == sum(len(e["next"]) for e in entries.values())


def _offline_counts(history: list[tuple[str, float]]) -> Counter:
    """The offline rule's counts of one user's history: pairs_for_event folded in time order."""
    counts: Counter = Counter()
    done: list[tuple[str, float]] = []
    for item, ts in sorted(history, key=lambda h: h[1]):
        counts.update(pairs_for_event(done, item, ts))
        done.append((item, ts))
    return counts


def test_the_bisecting_pair_rule_changes_the_counts_as_the_offline_rule_on_any_history():
    """successor_updates is the difference the event makes to the offline counts of the user's
    time-ordered history, wherever in time it falls (late events, repeats, several a day, a new
    day between two active ones); query_items are latest_day_items."""
    rng = np.random.default_rng(8)
    for _ in range(600):
        n = int(rng.integers(0, 12))
        rows = sorted(([f"p{int(rng.integers(0, 6))}", "view", float(rng.integers(0, 5 * D)), None, None]
                       for _ in range(n)), key=lambda r: r[2])
        item, ts = f"p{int(rng.integers(0, 6))}", float(rng.integers(0, 6 * D))
        history = [(r[0], r[2]) for r in rows]
        expected = _offline_counts(history + [(item, ts)])
        expected.subtract(_offline_counts(history))
        got = {(a, b): d for a, ds in successor_updates(rows, item, ts).items() for b, d in ds.items()}
        assert got == {pair: d for pair, d in expected.items() if d}
        assert query_items(rows) == latest_day_items(history)


def test_counts_do_not_depend_on_the_order_events_arrive_in():
    """A user's events read from several topics arrive out of time order: folded in any order,
    the stream's counts are the offline counts of the time-ordered histories (the independent
    model of the integration tests relies on it)."""
    rng = np.random.default_rng(21)
    for trial in range(40):
        n, n_items = 60, 8
        users = rng.integers(0, 4, n)
        ts = rng.integers(0, 8 * D, n).astype(np.float64)
        items = rng.integers(0, n_items, n)
        order = np.argsort(ts, kind="stable")
        offline = counts_from_histories(users[order], items[order], ts[order], n_items).toarray()
        entries: dict[str, dict] = {}
        recent: dict[int, list] = {}
        for offset in rng.permutation(n).tolist():
            u, i, t = int(users[offset]), int(items[offset]), float(ts[offset])
            rows = recent.setdefault(u, [])
            for src, deltas in successor_updates(rows, f"p{i}", t).items():
                e = entries.setdefault(src, new_entry(src))
                apply_successors(e, deltas, None, max_successors=10_000)
            rows.append([f"p{i}", "view", t, None, None])
            rows.sort(key=lambda r: r[2])
        streamed = np.zeros((n_items, n_items))
        for src, e in entries.items():
            for dst, c in e["next"].items():
                streamed[int(src[1:]), int(dst[1:])] = c
        assert np.array_equal(streamed, offline), trial


def test_query_items_are_the_latest_active_day():
    rows = [["a", "view", 1.0, None, None], ["b", "view", 2 * D + 1, None, None], ["c", "view", 2 * D + 7, None, None]]
    assert query_items(rows) == ["b", "c"]
    assert query_items([]) == []


def _model(n_items: int, factors: int, transitions=None, seed: int = 0) -> ActiveModel:
    rng = np.random.default_rng(seed)
    art = ModelArtifact("m1", [f"p{i}" for i in range(n_items)], rng.normal(size=(n_items, factors)).astype(np.float32),
                        item_category=[f"c{i % 3}" for i in range(n_items)], params={}, manifest={},
                        transitions=transitions)
    return ActiveModel.build(art, 1.0)


def _candidates(ranker, model, profiles):
    """{user position: {item index: score}} as score_batch sees them."""
    rows, q = ranker.pack(model, profiles)
    r, c, v = transition_candidates(q, 0, q.users, model.scoring.transitions, len(model.item_ids))
    out = {pos: {} for pos in rows}
    for row, col, val in zip(r.tolist(), c.tolist(), v.tolist()):
        out[rows[row]][col] = val
    return out


def test_candidates_take_the_larger_of_shipped_and_streamed_per_pair_and_follow_changes():
    shipped = sp.csr_matrix(np.array([[0, 3, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    model = _model(4, 2, shipped)
    holder = ModelHolder()
    holder._active = model
    index = TransitionIndex()
    ranker = Ranker(Settings(), PopularityIndex(window_s=10, bucket_s=1), index, holder)
    index.put("p0@0", {"item": "p0", "next": {"p1": 1, "p3": 2, "gone": 9}, "applied": {}})
    index.put("p0@1", {"item": "p0", "next": {"p2": 1, "p3": 1}, "applied": {}})
    index.put("new@1", {"item": "new", "next": {"p1": 2}, "applied": {}})  # an item the model lacks
    day = [["p0", "view", 10.0, None, None], ["p2", "view", 20.0, None, None]]
    profiles = [{"recent": day}, {"recent": [["new", "view", 5.0, None, None]]}, {"recent": [["p1", "view", 1.0, None, None]]}]
    got = _candidates(ranker, model, profiles)
    # from p0: p1 shipped 3 > streamed 1; p2 1 and 1; p3 streamed 2 + 1 over partitions ("gone"
    # is not in the catalogue); from p2: p0 shipped 1. Summed over the two query items.
    assert got[0] == {1: 3.0, 2: 1.0, 3: 3.0, 0: 1.0}
    assert got[1] == {1: 2.0}    # streamed only: the query item is not in the model
    assert got[2] == {}          # p1 has no successors: an ALS row without candidates
    index.put("p0@1", {"item": "p0", "next": {"p2": 5}, "applied": {}})  # a newer entry replaces the old
    assert _candidates(ranker, model, profiles[:1])[0] == {1: 3.0, 2: 5.0, 3: 2.0, 0: 1.0}
    assert index.next_items("p0", model, 3) == [("gone", 9.0), ("p2", 5.0), ("p1", 3.0)]
    index.put("p0@0", None)
    index.put("p0@1", None)
    assert not index.knows("p0") and index.pairs == 1  # "new"'s one successor
    assert _candidates(ranker, model, profiles[:1])[0] == {1: 3.0, 2: 1.0, 0: 1.0}


def test_capped_counts_keep_each_rows_largest():
    m = sp.csr_matrix(np.array([[0, 5, 1, 3, 3], [1, 0, 0, 0, 0], [0] * 5, [0] * 5, [0] * 5], dtype=np.float32))
    capped = TransitionCounts.capped(m, 2).matrix.toarray()
    assert capped[0].tolist() == [0, 5, 0, 3, 0]  # 5, then the tie of 3s broken by lower index
    assert capped[1].tolist() == [1, 0, 0, 0, 0]


def test_the_served_blend_equals_the_offline_blend_of_dense_matrices():
    """score_batch blends without a dense transitions matrix; its lists must be the top of the
    offline ``transitions.blend`` (z-scores over the whole catalogue), seen items removed."""
    rng = np.random.default_rng(5)
    n_items, f, users = 70, 5, 9
    shipped = sp.random(n_items, n_items, density=0.05, random_state=1, format="csr", dtype=np.float32)
    shipped.data = np.ceil(shipped.data * 4)
    model = _model(n_items, f, shipped, seed=2)
    holder = ModelHolder()
    holder._active = model
    index = TransitionIndex()
    for n in range(120):  # streamed entries on two partitions
        a, part = int(rng.integers(0, n_items)), int(rng.integers(0, 2))
        e = index._entries.get(f"p{a}@{part}") or new_entry(f"p{a}")
        apply_successors(e, Counter(f"p{int(b)}" for b in rng.integers(0, n_items, 3)), ("t", part, n))
        index.put(f"p{a}@{part}", dict(e, next=dict(e["next"])))
    ranker = Ranker(Settings(), PopularityIndex(window_s=10, bucket_s=1), index, holder)
    profiles = []
    for u in range(users):
        hist = rng.choice(n_items, size=int(rng.integers(1, 6)), replace=False)
        days = rng.integers(0, 3, size=len(hist)) * D
        profiles.append({"recent": sorted(([f"p{i}", "view", float(t), None, None] for i, t in zip(hist, days)),
                                          key=lambda r: r[2])})
    profiles.append({"recent": [["unknown", "view", 0.0, None, None]]})  # nothing known: not scored
    scored = ranker.score(model, profiles, n=10)
    assert scored[-1] is None
    fold = model.foldin
    w = Settings().popularity.weights.als_weight("view", None)
    dense = shipped.toarray()
    for u, p in enumerate(profiles[:-1]):
        hist = np.array([int(r[0][1:]) for r in p["recent"]])
        x = fold.user_vector(hist, np.full(len(hist), w))
        t = np.zeros(n_items)
        for pid in query_items(p["recent"]):
            streamed = np.zeros(n_items)
            for item, c in index.successors(pid).items():
                streamed[int(item[1:])] += c
            t += np.maximum(streamed, dense[int(pid[1:])])
        expected = blend((x @ model.foldin.Y.T)[None, :], t[None, :], als_weight=1.0, transitions_weight=0.75)[0]
        if not t.any():
            expected = x @ model.foldin.Y.T  # no candidates: plain ALS scores
        expected[hist] = -np.inf
        order = np.lexsort((np.arange(n_items), -expected))[:10]
        columns, strategy = scored[u]
        assert strategy == ("als+transitions" if t.any() else "als")
        assert columns[0] == [f"p{i}" for i in order], u
        assert np.allclose(columns[1], expected[order], atol=1e-4)


def test_a_model_holder_caps_shipped_counts_like_the_stream():
    counts = sp.csr_matrix(np.triu(np.ones((6, 6), dtype=np.float32), 1))
    holder = ModelHolder(max_successors=2)
    art = _model(6, 2).artifact
    art.transitions = counts
    holder.offer(art, 2.0)
    assert np.diff(holder.active.transitions.matrix.indptr).max() == 2


def test_an_older_copy_read_back_never_replaces_a_newer_entry():
    """The changelog tail may read this worker's own record back after a newer local write
    (before the broker acknowledged it, so it is not skipped): the index keeps the newer one."""
    index = TransitionIndex()
    older = new_entry("a")
    apply_successors(older, {"b": 1}, ("t", 0, 1))
    newer = {"item": "a", "next": dict(older["next"]), "applied": dict(older["applied"])}
    apply_successors(newer, {"c": 1}, ("t", 0, 2))
    index.put("a@0", newer)
    index.put("a@0", {**older, "next": dict(older["next"]), "applied": dict(older["applied"])})
    assert index.successors("a") == {"b": 1, "c": 1} and index.pairs == 2
    apply_successors(newer, {"d": 1}, ("t", 0, 3))  # the same object, changed in place, put again
    index.put("a@0", newer)
    assert index.successors("a") == {"b": 1, "c": 1, "d": 1} and index.pairs == 3


def test_a_users_contributions_are_what_their_history_added_and_never_below_zero_past_the_bound():
    """What erasure takes back (``contributions``) must equal every change the user's history
    applied, whatever the bound dropped, and no pair may be taken below the user's own count (it
    would take other users' counts with it)."""
    import random

    from recsys_faust.events.model import Source
    from recsys_faust.transitions import index as tix

    spilled = 0
    for seed in range(300):
        rng = random.Random(seed)
        history, applied = tix.new_history(), {}
        for n in range(rng.randrange(5, 40)):
            ts = rng.randrange(8) * tix.DAY_S + rng.randrange(3600)   # late events split days
            deltas = tix.fold_into_history(history, f"p{rng.randrange(6)}", "view", ts,
                                           Source("v", 0, n), rng.choice([3, 4, 6]))
            tix.add_counts(applied, deltas)
            assert all(c > 0 for dsts in applied.values() for c in dsts.values()), (seed, n, applied)
        assert tix.contributions(history) == applied, seed
        assert all(c > 0 for dsts in history.get("spilled", {}).values() for c in dsts.values())
        spilled += bool(history.get("spilled"))
    assert spilled > 100  # the bound dropped rows in most runs: the spilled path was exercised
