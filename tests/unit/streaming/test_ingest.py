"""AheadOfStore: batch N+1 folds from batch N's values until N is stored."""

from recsys_faust.streaming.ingest import AheadOfStore


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
    ahead.hold(1, [("u1", folded_by_1)])
    got = ahead.read_many(table, [("u1", 0), ("u2", 0), ("u3", 1)])
    assert got == [folded_by_1, {"v": "stored"}, None]
    assert got[0] is folded_by_1          # the same object: batch 2 folds on top of it
    assert table.asked == [["u2", "u3"]]  # only what is not held is read
    # Batch 2 changes u1 again before batch 1 is stored: releasing batch 1 must keep it.
    ahead.hold(2, [("u1", folded_by_1)])
    ahead.release(1)
    assert ahead.read_many(table, [("u1", 0)]) == [folded_by_1] and len(ahead) == 1
    ahead.release(2)
    assert len(ahead) == 0
    assert ahead.read_many(table, [("u1", 0)]) == [{"v": "stored"}]
