"""OwnWrites: a tail skips exactly the offsets this process wrote, never another writer's."""

from __future__ import annotations

import random

from recsys_faust.kafka.own_writes import OwnWrites


def test_skips_only_offsets_inside_acknowledged_ranges():
    own = OwnWrites()
    own.add(0, 10, 14)
    own.add(0, 20, 20)
    own.add(1, 5, 6)
    seen = {off: own.contains(0, off) for off in range(0, 25)}
    assert [off for off, mine in seen.items() if mine] == [10, 11, 12, 13, 14, 20]
    assert own.contains(1, 5) and own.contains(1, 6) and not own.contains(1, 7)
    assert not own.contains(2, 10)  # a partition this process never wrote


def test_random_interleaving_with_another_writer_never_skips_theirs():
    rng = random.Random(7)
    own, mine, offset = OwnWrites(max_ranges=8), set(), 0
    log: list[int] = []
    for _ in range(500):
        n = rng.randint(1, 5)
        if rng.random() < 0.5:  # this process's batch
            own.add(3, offset, offset + n - 1)
            mine.update(range(offset, offset + n))
        log.extend(range(offset, offset + n))
        offset += n
        # the tail reads what has been written so far, in order, sometimes lagging
        while log and rng.random() < 0.7:
            off = log.pop(0)
            if own.contains(3, off):
                assert off in mine
    # a bounded memory only makes it skip less, never skip another writer's record
    for off in log:
        if own.contains(3, off):
            assert off in mine


def test_a_tail_seeking_past_its_own_runs_still_reads_every_record_of_another_writer():
    rng = random.Random(11)
    own, theirs, offset = OwnWrites(), set(), 0
    for _ in range(400):
        n = rng.randint(1, 6)
        if rng.random() < 0.6:
            own.add(2, offset, offset + n - 1)
        else:
            theirs.update(range(offset, offset + n))
        offset += n
    position, read, seeks = 0, set(), 0
    while position < offset:
        past = own.skip_from(2, position) if rng.random() < 0.8 else None
        if past is not None:
            assert past > position
            position, seeks = past, seeks + 1
            continue
        read.add(position)
        position += 1
    assert theirs <= read  # nothing of the other writer's was seeked over
    assert seeks > 100 and len(read) < offset * 0.6  # and most own records were never read
    assert own.skip_from(2, offset + 5) is None and own.skip_from(9, 0) is None
