"""Small builders shared by unit tests of several packages (one home for each)."""

from recsys_faust.popularity.trending import apply_to_entry, new_entry

#: Popularity bucket of the test entries (seconds).
B = 100


def popularity_entry(pid, cat, events, partition=0):
    """A popularity entry with ``events`` = [(ts, weight)] applied at offsets 0, 1, ..."""
    e = new_entry(pid)
    for off, (ts, w) in enumerate(events):
        apply_to_entry(e, ts=ts, weight=w, category=cat, source=("t", partition, off), bucket_s=B, retention_s=1000)
    return e
