"""The hole rules of kafka/holes.py: a record past a hole waits for it, and every hole closes
(a hole that never closes stalls its partition for good: every record past it held back)."""

from recsys_faust.kafka.holes import Holes

K = ("amazon-product-views", 2)


def test_records_past_a_hole_wait_and_its_own_record_closes_it():
    h = Holes()
    assert h.open(K, 10, 13, committed=8) == 10
    assert not h.holds_back(K, 9)            # before the hole: read (a re-read from the commit)
    assert h.holds_back(K, 13) and h.holds_back(K, 11)
    assert not h.holds_back(K, 10) and not h         # the hole's record: read, and the hole closed
    assert not h.holds_back(K, 11)
    assert not h.holds_back(("amazon-purchases", 2), 99)   # other partitions never wait


def test_a_hole_never_opens_below_the_commit():
    """Offsets below the commit are done (by this worker or the partition's previous owner):
    the killed worker committed 412, the survivor's fetcher skipped 400..415."""
    h = Holes()
    assert h.open(K, 400, 416, committed=412) == 412
    assert not h.holds_back(K, 412) and not h
    assert h.open(K, 400, 410, committed=412) is None and not h   # all of them done: nothing to wait for
    assert h.open(K, 400, 410, committed=None) == 400              # no commit known: wait from the first


def test_a_second_hole_before_the_first_moves_the_wait_back():
    h = Holes()
    h.open(K, 20, 25, committed=None)
    h.open(K, 12, 14, committed=None)
    assert h.get(K) == 12 and h.holds_back(K, 20)


def test_a_seek_past_a_hole_closes_it_and_a_seek_before_it_keeps_it():
    """The failure this rule fixes: a hole below the offset a partition is sought to is never
    delivered again, so it would hold back every later record of the partition."""
    h = Holes()
    h.open(K, 100, 105, committed=None)
    other = ("amazon-purchases", 0)
    h.open(other, 50, 52, committed=None)
    assert h.sought({K: 90, other: 51}) == [other]     # K re-read from 90 passes its hole; other cannot
    assert h.get(K) == 100 and h.get(other) is None
    assert h.sought({K: 100}) == [] and h.get(K) == 100   # sought to the hole itself: it comes next
    assert h.sought({("amazon-reviews", 0): 7}) == [] and h.get(K) == 100


def test_a_partition_gone_to_another_worker_takes_its_hole_along():
    h = Holes()
    h.open(K, 100, 105, committed=None)
    h.open(("amazon-purchases", 0), 5, 7, committed=None)
    h.keep_only([("amazon-purchases", 0), ("amazon-reviews", 1)])
    assert h.as_dict() == {("amazon-purchases", 0): 5}
    assert not h.holds_back(K, 200)
