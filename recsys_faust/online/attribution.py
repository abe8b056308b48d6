"""Attributing interactions to the answers a user was served, inside the user's profile.

Pure, like the rest of the profile: the event processor folds a user's served answers
(``recsys-served``) and interactions into ``profile["answers"]`` with these functions, and
counts what they return. The rule, both ways round: an answer is *hit* when the user viewed,
bought or reviewed one of its items at an event time within ``window_s`` after it was served.
Answers and interactions come on different topics, so either may be folded first; an answer
folded after the interaction finds it among the profile's recent rows. A hit is therefore the
same whatever the order of the two topics, and counted once, when the second of the two is
folded (the answer keeps its ``hit`` flag). Replays never reach these functions (the profile's
offsets stop them first), so the counts are exact under Faust's redeliveries.

The share of interactions that came from a recommendation is counted as interactions are
folded, against the answers already there: an interaction folded before its answer (rare: the
answer is served before the user acts) counts in neither of its figures.

An answer is a JSON array ``[served_at, model_version, strategy, variant, items, hit]`` (an
array for the same reason as the profile's rows: it is on every changelog record of the user).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from ..events.model import Served
from ..profiles.profile import ROW_PRODUCT, ROW_TS, Profile

A_AT, A_VERSION, A_STRATEGY, A_VARIANT, A_ITEMS, A_HIT = range(6)


class Key(NamedTuple):
    """What the online figures are kept per."""
    model_version: str
    strategy: str
    variant: str


def key_of(answer: list[Any]) -> Key:
    return Key(answer[A_VERSION], answer[A_STRATEGY], answer[A_VARIANT])


class AnswerFolded(NamedTuple):
    key: Key
    items: tuple[str, ...]
    hit: bool              # an interaction already in the profile hit it


class InteractionFolded(NamedTuple):
    hits: list[Key]                # answers this interaction hit for the first time
    exposed: Optional[Key]         # the newest answer in force at the interaction's time
    from_answer: Optional[Key]     # the newest answer in force that held the item


def fold_answer(profile: Profile, served: Served, *, window_s: float, kept: int, items_kept: int) -> AnswerFolded:
    """Remember ``served`` in the profile (its newest ``kept`` answers, ``items_kept`` items each)."""
    items = list(served.items[:items_kept])
    wanted = set(items)
    end = served.served_at + window_s
    hit = any(row[ROW_PRODUCT] in wanted and served.served_at <= row[ROW_TS] <= end for row in profile["recent"])
    answers = profile.setdefault("answers", [])
    answers.append([served.served_at, served.model_version, served.strategy, served.variant, items, 1 if hit else 0])
    if len(answers) > 1 and answers[-2][A_AT] > served.served_at:
        answers.sort(key=lambda a: a[A_AT])
    if len(answers) > kept:
        del answers[: len(answers) - kept]
    return AnswerFolded(Key(served.model_version, served.strategy, served.variant), tuple(items), hit)


def fold_interaction(profile: Profile, product_id: str, ts: float, *, window_s: float) -> InteractionFolded:
    """Mark the answers an interaction hits; returns what to count."""
    hits: list[Key] = []
    exposed: Optional[Key] = None
    from_answer: Optional[Key] = None
    for answer in profile.get("answers") or ():
        at = answer[A_AT]
        if not at <= ts <= at + window_s:
            continue
        key = key_of(answer)
        exposed = key   # answers are sorted by time: the last in force wins
        if product_id in answer[A_ITEMS]:
            from_answer = key
            if not answer[A_HIT]:
                answer[A_HIT] = 1
                hits.append(key)
    return InteractionFolded(hits, exposed, from_answer)
