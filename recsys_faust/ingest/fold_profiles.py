"""Step 3: each user's served answers and events folded into their profile (one read, one write).

Returns, besides the profiles, what the later steps fold next: the interactions each item's
popularity entry and each user's transition history take, the ``event_ids`` entries of the
events applied, and the online counts (what users took of the answers they were served).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from ..online import attribution
from ..popularity.trending import entry_key
from ..profiles import dedup
from ..profiles.profile import APPLIED, DUPLICATE, REPLAY, ProfileConfig, apply_event, new_profile
from .accept import Accepted, ServedAnswer
from .event_ids import IdLookup

#: A changed profile as the steps pass it on: (user_id, profile, partition).
UserState = tuple[str, dict, int]


@dataclass(frozen=True)
class AnswerRules:
    """How a served answer is folded into a profile (online/attribution.py)."""

    window_s: float
    answers_kept: int
    items_kept: int


@dataclass
class OnlineCounts:
    """A batch's online counts, added to the stats once the batch is stored."""

    answers: list[attribution.AnswerFolded] = field(default_factory=list)
    interactions: list[attribution.InteractionFolded] = field(default_factory=list)


@dataclass
class ProfilesFolded:
    touched: list[UserState]         # changed by events, or answered from a stale ready list: stored and ranked again
    answered: list[UserState]        # changed by a served answer alone: stored, not ranked
    outcomes: Counter                # (topic, outcome) -> events, counted once the batch is visible
    pop_updates: dict[str, list[Accepted]]    # popularity entry key -> interactions
    interactions: dict[str, list[Accepted]]   # user_id -> interactions for their history
    new_ids: list[tuple[str, Any, int]]       # event_ids entries of the events applied
    online: OnlineCounts
    unknown_answered: int = 0                 # answers to users with no state, not kept


def users_of(by_user: dict[str, list[Accepted]],
             served: dict[str, list[ServedAnswer]]) -> list[tuple[str, int]]:
    """The batch's users with their partition: those with events, then those only answered."""
    users = [(user_id, acc[-1].source.partition) for user_id, acc in by_user.items()]
    users += [(user_id, answers[-1].source.partition) for user_id, answers in served.items()
              if user_id not in by_user]
    return users


def fold_profiles(users: Sequence[tuple[str, int]], stored: Iterable[Optional[dict]],
                  by_user: dict[str, list[Accepted]], served: dict[str, list[ServedAnswer]],
                  ids: IdLookup, cfg: ProfileConfig, rules: AnswerRules) -> ProfilesFolded:
    """Fold each of ``users`` (their ``stored`` profiles, None for a new user).

    Answers go first: an interaction of the same batch is then measured against them.
    ``ids.known`` is extended with the batch's own new ids.
    """
    out = ProfilesFolded([], [], Counter(), {}, {}, [], OnlineCounts())
    keys = iter(ids.keys)  # in the order of ``by_user``, as the lookup built them
    for (user_id, partition), profile in zip(users, stored):
        if profile is None and user_id not in by_user:
            # Answers served to a user with no event yet make no profile: a read token must not
            # grow state without bound (any id can be asked for). Their hits count from the
            # user's first event on.
            out.unknown_answered += len(served.get(user_id, ()))
            continue
        profile = profile or new_profile(user_id)
        took_answer, stale = fold_answers(profile, served.get(user_id, ()), out.online, rules)
        changed = False
        for acc in by_user.get(user_id, ()):
            changed |= _fold_event(profile, user_id, acc, next(keys)[0], ids.known, cfg, rules, out)
        if changed or stale:
            # An answer ranked live for want of a ready list of the serving model (a model
            # switch, a cleared cache): ranked again here, the next answers read the list.
            out.touched.append((user_id, profile, partition))
        elif took_answer:
            out.answered.append((user_id, profile, partition))
    return out


def _fold_event(profile: dict, user_id: str, acc: Accepted, ev_keys: tuple[str, ...], known: dict[str, Any],
                cfg: ProfileConfig, rules: AnswerRules, out: ProfilesFolded) -> bool:
    """One event into ``profile``; True when it changed the profile."""
    ev = acc.event
    seen = dedup.verdict(next((known[k] for k in ev_keys if k in known), None), acc.source)
    if seen == dedup.DUPLICATE:
        out.outcomes[(acc.source.topic, DUPLICATE)] += 1
        return False
    outcome = apply_event(profile, ev, acc.source, cfg)
    # A replayed event the table does not know (applied before the table existed, or
    # expired) is recorded too: its later duplicates are then found.
    if seen == dedup.NEW and outcome in (APPLIED, REPLAY):
        known[ev_keys[0]] = value = dedup.entry(ev.ts, acc.source)
        out.new_ids.append((ev_keys[0], value, acc.source.partition))
    out.outcomes[(acc.source.topic, outcome)] += 1
    # Popularity entries dedup by their own offsets (they may lag the profile after a crash);
    # only a second record of the same event_id is skipped here. The transition histories,
    # likewise, by theirs (fold_items.fold_histories).
    if ev.is_interaction and outcome != DUPLICATE:
        out.pop_updates.setdefault(entry_key(ev.product_id, acc.source.partition), []).append(acc)
        out.interactions.setdefault(user_id, []).append(acc)
    if outcome == APPLIED and ev.is_interaction and profile.get("answers"):
        out.online.interactions.append(
            attribution.fold_interaction(profile, ev.product_id, ev.ts, window_s=rules.window_s))
    return outcome == APPLIED


def fold_answers(profile: dict, served: Sequence[ServedAnswer], online: OnlineCounts,
                 rules: AnswerRules) -> tuple[bool, bool]:
    """A user's served answers into their profile (replays skipped by the profile's offsets,
    like events); (one was new, a new one was stale). Not counted in ``recsys_events_total``,
    which counts the shop's events: the answers are counted by the online figures."""
    took = stale = False
    for s in served:
        topic, partition, offset = s.source
        tp = f"{topic}:{partition}"
        last = profile["applied"].get(tp)
        if last is not None and offset <= last:
            continue
        profile["applied"][tp] = offset
        online.answers.append(attribution.fold_answer(
            profile, s.served, window_s=rules.window_s, kept=rules.answers_kept, items_kept=rules.items_kept))
        took = True
        stale |= s.served.stale
    return took, stale
