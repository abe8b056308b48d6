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


def test_epoch_keys_sort_by_epoch_and_an_expiry_bound_keeps_the_current_and_the_last_epoch():
    window = 86_400.0
    epoch = dedup.epoch_of(10 * window + 5, window)
    assert epoch == 10
    bound = dedup.expired_epochs_below(epoch)
    assert dedup.epoch_key(8, "zzz", "e") < bound <= dedup.epoch_key(9, "", "")
    assert dedup.epoch_key(9, "a", "e") < dedup.epoch_key(10, "a", "e")
    # no clock key and no legacy key, whatever its user or id, falls into an expiry scan's range
    for key in (dedup.clock_key(3), dedup.id_key("g", "x"), dedup.time_key(0.0, "g", "x")):
        assert not dedup.EPOCH_PREFIX <= key < bound
    assert dedup.ID_PREFIX <= dedup.id_key("\uffff", "\uffff") < dedup.ID_END


def test_a_partition_is_scanned_when_its_bound_moves_and_a_cut_scan_resumes_after_its_last_key():
    sw = dedup.Sweeper(dedup.EPOCH_PREFIX)
    first = dedup.expired_epochs_below(5)
    assert sw.due(0, first) == dedup.EPOCH_PREFIX
    sw.scanned(0, first, [dedup.epoch_key(3, "u", "e")], complete=True)
    assert sw.due(0, first) is None             # the same epoch: nothing new has expired
    assert sw.due(1, first) == dedup.EPOCH_PREFIX  # another partition has its own schedule
    later = dedup.expired_epochs_below(6)
    assert sw.due(0, later) == first            # everything below the last bound is gone
    cut = [dedup.epoch_key(4, "u", "e1"), dedup.epoch_key(4, "u", "e2")]
    sw.scanned(0, later, cut, complete=False)   # stopped at SWEEP_MAX_KEYS
    start = sw.due(0, later)                    # so the next batch scans again, from after e2
    assert cut[-1] < start < dedup.epoch_key(4, "u", "e3")
    sw.scanned(0, later, [], complete=True)
    assert sw.due(0, later) is None and sw.due(0, dedup.expired_epochs_below(7)) == later
