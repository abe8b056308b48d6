"""The catalogue rules every worker holds, and how they change an answer. Pure.

A rule is one record on ``recsys-catalogue`` keyed by product_id (compacted: the newest rule of
each item is kept; a tombstone removes it). Every worker reads the whole topic and holds the
rules in memory (worker/replicas.py), and every answer goes through ``Rules.apply`` at answer
time, whatever built it (a ready list, a live ranking, similar items, trending): so a change
reaches every answer as soon as a worker has read it, without rebuilding a single list.

- ``available: false``, or ``hidden_until`` in the future: the item never appears.
- ``boost``: its score is multiplied by the boost, bounded to ``[1/MAX_BOOST, MAX_BOOST]``, and the
  candidates are ordered again (a negative score is divided instead, so a boost > 1 always
  raises an item). A boost reorders what was ranked; it never brings in an item that was not.
- ``category``: wins over the category events carried (answers and category filters).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

from ..events.model import Invalid

#: The largest factor a boost may move a score by (either way): a rule tunes, never overrules.
MAX_BOOST = 4.0
#: The longest product id and category (the input topics' own bound).
MAX_ID_LEN = 256


@dataclass(frozen=True)
class Rule:
    product_id: str
    available: bool = True
    category: Optional[str] = None
    boost: float = 1.0
    hidden_until: Optional[float] = None

    def hidden(self, now: float) -> bool:
        return not self.available or (self.hidden_until is not None and now < self.hidden_until)

    def as_record(self) -> dict[str, Any]:
        return {"product_id": self.product_id, "available": self.available, "category": self.category,
                "boost": self.boost, "hidden_until": self.hidden_until}


def parse_rule(obj: Any, product_id: Optional[str] = None) -> Union[Rule, Invalid]:
    """A rule from a JSON object (a record's value, or a PUT body for ``product_id``)."""
    if not isinstance(obj, Mapping):
        return Invalid("not_object", "a catalogue rule is a JSON object")
    pid = obj.get("product_id", product_id)
    if product_id is not None and pid != product_id:
        return Invalid("out_of_range", f"product_id {pid!r} differs from the path's {product_id!r}")
    if not isinstance(pid, str) or not 0 < len(pid) <= MAX_ID_LEN:
        return Invalid("wrong_type", f"'product_id' must be a string of 1 to {MAX_ID_LEN} characters")
    available = obj.get("available", True)
    if not isinstance(available, bool):
        return Invalid("wrong_type", "'available' must be true or false")
    category = obj.get("category")
    if category is not None and (not isinstance(category, str) or not 0 < len(category) <= MAX_ID_LEN):
        return Invalid("wrong_type", f"'category' must be null or a string of 1 to {MAX_ID_LEN} characters")
    boost = obj.get("boost", 1.0)
    if isinstance(boost, bool) or not isinstance(boost, (int, float)) or not math.isfinite(boost) or boost <= 0:
        return Invalid("out_of_range", "'boost' must be a positive number")
    if not 1 / MAX_BOOST <= boost <= MAX_BOOST:
        return Invalid("out_of_range", f"'boost' must be within [{1 / MAX_BOOST}, {MAX_BOOST}]")
    hidden_until = obj.get("hidden_until")
    if hidden_until is not None and (isinstance(hidden_until, bool) or not isinstance(hidden_until, (int, float))
                                     or not math.isfinite(hidden_until)):
        return Invalid("wrong_type", "'hidden_until' must be null or unix seconds")
    return Rule(pid, available, category, float(boost), None if hidden_until is None else float(hidden_until))


def _boosted(score: float, boost: float) -> float:
    return score * boost if score >= 0 else score / boost


class Rules:
    """Every item's rule, newest wins; ``apply`` takes an answer's candidates through them."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}
        # the items with something that changes an answer (most items have none)
        self._shaping: dict[str, Rule] = {}

    def put(self, product_id: str, rule: Optional[Rule]) -> None:
        if rule is None:
            self._rules.pop(product_id, None)
            self._shaping.pop(product_id, None)
            return
        self._rules[product_id] = rule
        if rule.available and rule.hidden_until is None and rule.boost == 1.0 and rule.category is None:
            self._shaping.pop(product_id, None)
        else:
            self._shaping[product_id] = rule

    def get(self, product_id: str) -> Optional[Rule]:
        return self._rules.get(product_id)

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def active(self) -> bool:
        """Whether any rule changes answers (none: answers pass through untouched, at no cost)."""
        return bool(self._shaping)

    def counts(self, now: Optional[float] = None) -> dict[str, int]:
        now = time.time() if now is None else now
        rules = self._shaping.values()
        return {"rules": len(self._rules), "hidden": sum(r.hidden(now) for r in rules),
                "boosted": sum(r.boost != 1.0 for r in rules), "categorised": sum(r.category is not None for r in rules)}

    def category(self, product_id: str, category: Optional[str]) -> Optional[str]:
        rule = self._shaping.get(product_id)
        return rule.category if rule is not None and rule.category is not None else category

    def visible(self, product_id: str, now: float) -> bool:
        rule = self._shaping.get(product_id)
        return rule is None or not rule.hidden(now)

    def apply(self, items: Iterable[Mapping[str, Any]], now: Optional[float] = None) -> list[dict[str, Any]]:
        """``items`` (dicts with product_id, score and maybe category, best first) with the rules
        applied: hidden ones out, categories replaced, boosted scores, best first again (ties
        keep their order)."""
        now = time.time() if now is None else now
        out: list[dict[str, Any]] = []
        boosted = False
        for it in items:
            rule = self._shaping.get(it["product_id"])
            if rule is None:
                out.append(dict(it))
                continue
            if rule.hidden(now):
                continue
            item = dict(it)
            if rule.category is not None:
                item["category"] = rule.category
            if rule.boost != 1.0 and item.get("score") is not None:
                item["score"] = round(_boosted(float(item["score"]), rule.boost), 6)
                boosted = True
            out.append(item)
        if boosted:
            out.sort(key=lambda it: -float(it.get("score") or 0.0))
        return out
