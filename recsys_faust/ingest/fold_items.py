"""Step 4: the batch's interactions into item state: popularity entries, users' transition
histories and transition entries, each one write per touched key.

Each function takes the values read for its keys (``keys_*`` names them) and returns the
changed ones as ``(key, value, partition)``. Entries skip replays by their own offsets, which
assume the offsets of one topic-partition arrive ascending: interactions come grouped by user,
so each entry restores offset order before folding.
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..events.model import Source, mark_applied
from ..popularity.trending import apply_to_entry, new_entry
from ..settings import EventWeights
from ..transitions import index as tix
from .accept import Accepted

Changed = list[tuple[str, dict, int]]
#: transition entry key -> (source, count changes to its successors), from the histories
CountChanges = dict[str, list[tuple[Source, dict[str, int]]]]


def popularity_keys(pop_updates: dict[str, list[Accepted]]) -> list[tuple[str, int]]:
    return [(key, accs[0].source.partition) for key, accs in pop_updates.items()]


def fold_popularity(pop_updates: dict[str, list[Accepted]], stored: Iterable[Optional[dict]], *,
                    weights: EventWeights, bucket_s: float, retention_s: float) -> Changed:
    """The interactions into the per-partition popularity entries."""
    changed_entries: Changed = []
    for (key, accs), entry in zip(pop_updates.items(), stored):
        entry = entry or new_entry(accs[0].event.product_id)
        changed = False
        for acc in sorted(accs, key=lambda a: (a.source.topic, a.source.offset)):
            ev = acc.event
            changed |= apply_to_entry(entry, ts=ev.ts, weight=weights.weight(ev.kind, ev.rating),
                                      category=ev.category, source=acc.source, bucket_s=bucket_s,
                                      retention_s=retention_s)
        if changed:
            changed_entries.append((key, entry, accs[0].source.partition))
    return changed_entries


def history_keys(interactions: dict[str, list[Accepted]]) -> list[tuple[str, int]]:
    return [(tix.history_key(user_id), accs[0].source.partition) for user_id, accs in interactions.items()]


def fold_histories(interactions: dict[str, list[Accepted]], keys: list[tuple[str, int]],
                   stored: Iterable[Optional[dict]], max_rows: int) -> tuple[CountChanges, Changed]:
    """Each user's interactions into their transition history (transitions/index.py says why it
    is not the profile's rows); returns the count changes by entry key and the changed
    histories."""
    updates: CountChanges = {}
    changed: Changed = []
    for (key, partition), accs, history in zip(keys, interactions.values(), stored):
        history = history or tix.new_history()
        folded = False
        for acc in accs:
            ev = acc.event
            deltas = tix.fold_into_history(history, ev.product_id, ev.kind, ev.ts, acc.source, max_rows, tix.DAY_S)
            if deltas is None:
                continue  # a replay: its count changes are in the entries already
            folded = True
            for src, counts in deltas.items():
                updates.setdefault(tix.entry_key(src, partition), []).append((acc.source, counts))
        if folded:
            changed.append((key, history, partition))
    return updates, changed


def transition_keys(updates: CountChanges) -> list[tuple[str, int]]:
    return [(key, ups[0][0].partition) for key, ups in updates.items()]


def fold_transitions(updates: CountChanges, stored: Iterable[Optional[dict]], cap: int) -> Changed:
    """The count changes into the per-partition transition entries.

    Each entry takes the batch's changes not applied yet (by their sources' offsets), summed,
    in one step. Applied one by one in offset order, a user's changes came in another order
    than their history computed them (a view and a purchase: two topics), and a pair taken back
    before it was counted was lost at zero: a count off by one, for good, whenever a batch held
    both (and an erasure could not take the user back out exactly). Each user's own changes,
    in the order computed, never take a pair below zero, so neither does their sum.
    """
    changed_entries: Changed = []
    for (key, ups), entry in zip(updates.items(), stored):
        entry = entry or tix.new_entry(key.rpartition("@")[0])
        net: dict[str, int] = {}
        fresh = False
        for source, dsts in sorted(ups, key=lambda u: (u[0].topic, u[0].offset)):
            if not mark_applied(entry["applied"], source):
                continue  # a replay: its changes are in the entry already
            fresh = True
            for dst, d in dsts.items():
                net[dst] = net.get(dst, 0) + d
        if fresh:
            tix.apply_successors(entry, {dst: d for dst, d in net.items() if d}, None, cap)
            changed_entries.append((key, entry, ups[0][0].partition))
    return changed_entries


