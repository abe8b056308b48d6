"""profiles/dedup.py: the keys of the event_ids table and the expiry schedule."""

from recsys_faust.events.model import Source
from recsys_faust.profiles import dedup

S = Source("amazon-purchases", 3, 41)


def test_a_time_key_leads_back_to_its_id_key_whatever_the_ids_contain():
    for user, event in [("u1", "e1"), ("a\x1fb", "c\x1fd"), ("", "\x1f"), ("ü", "日本")]:
        assert dedup.id_key_of(dedup.time_key(1_700_000_000.5, user, event)) == dedup.id_key(user, event)


def test_time_keys_sort_by_event_time_and_apart_from_the_id_keys():
    early = dedup.time_key(3_600 * 5, "zzz", "e")
    late = dedup.time_key(3_600 * 50, "aaa", "e")
    assert early < late
    bound = dedup.expired_below(3_600 * 50 + 10, 3_600 * 10)  # keys of hours < 40 are out
    assert early < bound < late
    # no id key, whatever its user, falls into the range a sweep scans
    assert not dedup.TIME_PREFIX <= dedup.id_key("t", "x") < bound


def test_the_stored_source_tells_a_record_read_again_from_a_duplicate():
    stored = dedup.entry(10.0, S)
    assert dedup.verdict(None, S) == dedup.NEW
    assert dedup.verdict(stored, S) == dedup.OWN
    assert dedup.verdict(stored, S._replace(offset=42)) == dedup.DUPLICATE
    assert dedup.verdict(stored, S._replace(topic="amazon-product-views")) == dedup.DUPLICATE


def test_a_partition_is_scanned_once_per_hour_its_window_edge_moves_and_again_after_a_cut_scan():
    sw = dedup.Sweeper(window_s=86_400)
    t = 10 * 86_400.0
    first = sw.due(0, t)
    assert first is not None
    sw.scanned(0, first, complete=True)
    assert sw.due(0, t + 60) is None           # the same hour: nothing new has expired
    assert sw.due(1, t) is not None            # another partition has its own schedule
    later = sw.due(0, t + 3_600)
    assert later is not None and later > first
    sw.scanned(0, later, complete=False)       # stopped at SWEEP_MAX_KEYS
    assert sw.due(0, t + 3_600) == later       # so the next batch scans again
