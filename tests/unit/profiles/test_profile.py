import json

from recsys_faust.events.model import Event
from recsys_faust.profiles.profile import (
    APPLIED, DUPLICATE, REPLAY, ProfileConfig, apply_event, new_profile, profile_view, top_categories,
)
from recsys_faust.profiles.windows import WindowSpec, add_to_windows
from recsys_faust.settings import EventWeights

CFG = ProfileConfig(recent_items=3, tumbling=WindowSpec(60, 60, 120),
                    hopping=WindowSpec(60, 20, 40), weights=EventWeights(1, 4, 0.8))


def ev(i, kind="view", ts=1000.0, product="p1", cat="c1", rating=None, event_type=None):
    return Event(kind, f"e{i}", "u1", ts, product_id=None if kind == "user-event" else product,
                 category=cat if kind != "user-event" else None, rating=rating, event_type=event_type)


def test_counts_recent_affinity():
    p = new_profile("u1")
    apply_event(p, ev(1, ts=1000, product="a", cat="x"), ("v", 0, 1), CFG)
    apply_event(p, ev(2, "purchase", ts=1010, product="b", cat="y"), ("pu", 0, 1), CFG)
    apply_event(p, ev(3, "review", ts=1020, product="c", cat="x", rating=5), ("r", 0, 1), CFG)
    apply_event(p, ev(4, "user-event", ts=1030, event_type="login"), ("ue", 0, 1), CFG)
    apply_event(p, ev(5, ts=1040, product="d", cat="z"), ("v", 0, 2), CFG)
    assert p["counts"] == {"view": 2, "purchase": 1, "review": 1, "login": 1}
    assert [r[0] for r in p["recent"]] == ["b", "c", "d"]  # bounded to 3, oldest dropped
    assert p["affinity"] == {"x": 5.0, "y": 4.0, "z": 1.0}
    assert top_categories(p, 2) == [("x", 0.5), ("y", 0.4)]
    assert (p["first_seen"], p["last_seen"]) == (1000, 1040)


def test_replays_and_duplicates_change_nothing():
    p = new_profile("u1")
    assert apply_event(p, ev(1), ("v", 0, 10), CFG) == APPLIED
    snapshot = repr(p)
    assert apply_event(p, ev(1), ("v", 0, 10), CFG) == REPLAY        # same offset again
    assert apply_event(p, ev(9), ("v", 0, 3), CFG) == REPLAY         # older offset
    assert repr(p) == snapshot
    assert apply_event(p, ev(2), ("v", 1, 0), CFG) == APPLIED        # another partition is independent


def test_a_profile_from_before_the_event_ids_table_still_refuses_its_remembered_ids():
    # Same event_id at a new offset is the event_ids table's to find (tests/unit/streaming);
    # a profile written by an older version carries its last ids, which are still honoured.
    p = new_profile("u1")
    apply_event(p, ev(1), ("v", 0, 10), CFG)
    p["ids"] = ["e1"]
    snapshot = repr(p)
    assert apply_event(p, ev(1), ("v", 0, 11), CFG) == DUPLICATE
    assert repr(p) == snapshot


def test_out_of_order_events_sorted_in_recent():
    p = new_profile("u1")
    apply_event(p, ev(1, ts=100, product="late"), None, CFG)
    apply_event(p, ev(2, ts=50, product="early"), None, CFG)
    assert [r[0] for r in p["recent"]] == ["early", "late"]
    assert profile_view(p, CFG)["recent_items"][0]["product_id"] == "late"


def test_events_of_one_instant_give_the_same_profile_in_any_arrival_order():
    """They come on different topics, so a rebuild from the topics meets them in another order
    than the live run did (found by the backup-restore test: the same rows, swapped)."""
    from itertools import permutations

    same = [ev(1, "purchase", ts=500, product="b"), ev(2, ts=500, product="b"), ev(3, ts=500, product="a"),
            ev(4, "review", ts=500, product="b", rating=4), ev(5, ts=400, product="z")]
    views = set()
    for order in permutations(same):
        p = new_profile("u1")
        for e in order:
            apply_event(p, e, None, CFG)
        views.add(json.dumps(profile_view(p, CFG), sort_keys=True))
    assert len(views) == 1
    newest = [(r["product_id"], r["kind"]) for r in profile_view(p, CFG)["recent_items"]]
    assert newest == [("b", "review"), ("b", "purchase"), ("b", "view")]  # bounded to 3: the funnel's last steps


def test_tumbling_window_assignment_and_expiry():
    spec = WindowSpec(60, 60, 120)
    w = {}
    add_to_windows(w, spec, 10, "view", 10)
    add_to_windows(w, spec, 70, "view", 70)
    add_to_windows(w, spec, 75, "purchase", 75)
    assert w == {"0": {"view": 1}, "60": {"view": 1, "purchase": 1}}
    add_to_windows(w, spec, 200, "view", 200)  # window 0 closes at 60, expires at 180
    assert sorted(w) == ["180", "60"]
    add_to_windows(w, spec, 5, "view", 200)  # late event for an expired window: not counted
    assert "0" not in w


def test_hopping_window_counts_event_in_every_window_containing_it():
    spec = WindowSpec(60, 20, 1000)
    w = {}
    add_to_windows(w, spec, 65, "view", 65)
    assert sorted(w, key=int) == ["20", "40", "60"]
    assert all(v == {"view": 1} for v in w.values())


def test_window_spec_rejects_bad_sizes():
    import pytest
    with pytest.raises(ValueError):
        WindowSpec(50, 20, 0)


def test_skipping_the_expiry_scan_gives_the_windows_a_full_scan_gives():
    """apply_event expires windows only when stream time crosses an expiry step; over random
    streams with late events and fractional times, every step must equal expiring each time."""
    import random

    rng = random.Random(11)
    for spec in (WindowSpec(60, 60, 120), WindowSpec(60, 20, 40), WindowSpec(3600, 900, 21600)):
        fast, full = {}, {}
        stream_time = None
        for _ in range(3000):
            base = stream_time if stream_time is not None else 0.0
            ts = max(0.0, base + rng.uniform(-3 * spec.size, spec.step / 2))  # many late events
            previous = stream_time
            stream_time = ts if stream_time is None else max(stream_time, ts)
            kind = rng.choice(["view", "purchase"])
            add_to_windows(fast, spec, ts, kind, stream_time, previous)
            add_to_windows(full, spec, ts, kind, stream_time)  # no previous: always scans
            assert fast == full


def test_window_counting_matches_the_specs_definitions():
    """add_to_windows computes the unexpired windows containing ts as one range; over random
    streams (late events, fractional times) it must count exactly the windows that
    ``starts_for`` lists and ``is_expired`` keeps."""
    import random

    from recsys_faust.profiles.windows import expire_windows

    rng = random.Random(5)
    for spec in (WindowSpec(60, 60, 120), WindowSpec(60, 20, 40), WindowSpec(3600, 900, 21600), WindowSpec(60, 20, 0)):
        fast, ref = {}, {}
        stream_time = None
        for _ in range(3000):
            base = stream_time if stream_time is not None else 1_000.0
            ts = max(0.0, base + rng.uniform(-3 * spec.size - spec.expires, spec.step / 2))
            stream_time = ts if stream_time is None else max(stream_time, ts)
            add_to_windows(fast, spec, ts, "view", stream_time)
            for start in spec.starts_for(ts):
                if not spec.is_expired(start, stream_time):
                    bucket = ref.setdefault(str(start), {})
                    bucket["view"] = bucket.get("view", 0) + 1
            expire_windows(ref, spec, stream_time)
            assert fast == ref
