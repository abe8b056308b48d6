"""Strict JSON for bodies that come from outside: one parser, one set of refusals.

``orjson`` already refuses what ``json`` lets through (NaN and Infinity, integers past 64
bits, invalid UTF-8, lone surrogates) and stops at 1,024 levels of nesting with an error
instead of Python's ``RecursionError`` (which ``json.loads`` raised as a 500 on a body nested
2,000 deep). On top of it: nesting deeper than ``MAX_DEPTH`` and, where asked, duplicate keys
(which ``json`` and ``orjson`` both resolve silently to the last value) are refused too.
"""

from __future__ import annotations

import json
from typing import Any, Union

import orjson

#: Events are flat objects with one nested ``properties`` object; 32 levels is far beyond any
#: valid body and far below what a recursive consumer of the value would choke on.
MAX_DEPTH = 32


class JsonRefused(ValueError):
    """``code`` (not_utf8, not_json, too_deep, duplicate_key) and a message for the caller."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed value (a scalar is 0), counted without recursion; stops
    counting past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonRefused("duplicate_key", f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def loads(raw: Union[bytes, str], *, max_depth: int = MAX_DEPTH, unique_keys: bool = True) -> Any:
    """The parsed value, or ``JsonRefused`` saying what is wrong (never another exception)."""
    if isinstance(raw, bytes):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused("not_utf8", f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc).lower() or "depth limit" in str(exc).lower():
            raise JsonRefused("too_deep", f"nested deeper than {max_depth} levels") from None
        raise JsonRefused("not_json", f"body is not JSON: {exc}") from None
    if depth(value, max_depth) > max_depth:
        raise JsonRefused("too_deep", f"nested deeper than {max_depth} levels")
    if unique_keys and isinstance(value, (dict, list)):
        json.loads(raw, object_pairs_hook=_no_duplicates)  # depth is bounded now: no recursion error
    return value
