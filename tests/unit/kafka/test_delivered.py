"""Offsets delivered to the agents, so a gap counts as skipped only where nothing was delivered
(kafka/delivered.py)."""

from recsys_faust.kafka.delivered import MAX_RANGES, Delivered


def test_ranges_grow_merge_and_a_gap_subtracts_them():
    d = Delivered()
    for o in [*range(100, 130), *range(140, 145), 135]:
        d.add("tp", o)
    assert d.ranges("tp") == [(100, 129), (135, 135), (140, 144)]
    assert list(d.undelivered("tp", 101, 150)) == [(130, 135), (136, 140), (145, 150)]
    for o in range(130, 135):
        d.add("tp", o)
    assert d.ranges("tp") == [(100, 135), (140, 144)]


def test_records_read_ahead_of_a_seek_are_not_a_gap():
    d = Delivered()
    for o in range(100, 131):   # delivered before the seek to 100, then 131 after it
        d.add("tp", o)
    assert list(d.undelivered("tp", 100, 131)) == []


def test_prune_forget_and_the_bound():
    d = Delivered()
    for o in range(0, 10):
        d.add("tp", o)
    d.prune("tp", 5)
    assert d.ranges("tp") == [(5, 9)]
    d.forget("tp")
    assert d.ranges("tp") == [] and list(d.undelivered("tp", 0, 3)) == [(0, 3)]
    for o in range(0, 4 * MAX_RANGES, 2):
        d.add("tp", o)
    assert len(d.ranges("tp")) == MAX_RANGES
