"""What a shop's back office sends: erasures (``users forget``) and catalogue rules (``catalog
load``), as records on their topics, acknowledged by every in-sync replica before returning."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from ..catalogue.rules import Rule, parse_rule
from ..events.model import TOPIC_CATALOGUE, Invalid
from ..events.prepare import prepare_erasure
from ..kafka.producers import ContractProducer
from ..settings import Settings

#: Rules sent between progress reports.
PROGRESS_EVERY = 1_000


class CatalogueFileError(ValueError):
    """A catalogue file row that is not a rule: its line and the reason."""


async def forget_users(settings: Settings, user_ids: Iterable[str], requested_by: str) -> list[dict[str, Any]]:
    """One erasure record per user on recsys-erasures; returns what was sent."""
    now = time.time()
    prepared = [(user_id, prepare_erasure(user_id, now, requested_by)) for user_id in user_ids]
    async with ContractProducer(settings) as producer:
        futures = [await producer.send_prepared(topic, key, value) for _, (topic, key, value) in prepared]
        for fut in futures:
            await fut
    return [{"user_id": user_id, "erased_at": now, "topic": topic} for user_id, (topic, _, _) in prepared]


def read_rules(path: Path) -> Iterator[Rule]:
    """Rules from a CSV: ``product_id`` (or ``item_id``, as the Amazon data's items.csv names it),
    optional ``category`` (``0`` or empty: none), ``available``, ``boost``, ``hidden_until``."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        id_field = "product_id" if "product_id" in fields else "item_id" if "item_id" in fields else None
        if id_field is None:
            raise CatalogueFileError(f"{path}: needs a product_id (or item_id) column; has {sorted(fields)}")
        for line, row in enumerate(reader, start=2):
            obj: dict[str, Any] = {"product_id": (row.get(id_field) or "").strip()}
            category = (row.get("category") or "").strip()
            if category and category != "0":
                obj["category"] = category
            try:
                if (row.get("available") or "").strip():
                    obj["available"] = row["available"].strip().lower() in ("1", "true", "yes")
                if (row.get("boost") or "").strip():
                    obj["boost"] = float(row["boost"])
                if (row.get("hidden_until") or "").strip():
                    obj["hidden_until"] = float(row["hidden_until"])
            except ValueError as exc:
                raise CatalogueFileError(f"{path}:{line}: {exc}")
            rule = parse_rule(obj)
            if isinstance(rule, Invalid):
                raise CatalogueFileError(f"{path}:{line}: {rule.detail}")
            yield rule


async def send_rules(settings: Settings, rules: Iterable[Rule],
                     progress: Optional[Callable[[int], None]] = None) -> int:
    """Each rule on recsys-catalogue (keyed by product_id); returns how many were sent."""
    sent = 0
    async with ContractProducer(settings, linger_ms=20) as producer:
        futures = []
        for rule in rules:
            value = json.dumps(rule.as_record(), separators=(",", ":")).encode("utf-8")
            futures.append(await producer.send_prepared(TOPIC_CATALOGUE, rule.product_id.encode("utf-8"), value))
            sent += 1
            if len(futures) >= PROGRESS_EVERY:
                for fut in futures:
                    await fut
                futures.clear()
                if progress is not None:
                    progress(sent)
        for fut in futures:
            await fut
    return sent
