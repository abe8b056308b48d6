"""Every worker's in-memory copies of cluster-wide state, each fed by a tail of its topic.

The popularity and transition indexes read the item tables' changelogs (all partitions; the
records this worker wrote itself, already applied, are skipped by offset), the model holder
reads amazon-model-updates, and the cache epoch reads recsys-control. All of it is rebuilt
from the topics at every start: no state that a table or topic cannot rebuild.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .. import metrics
from ..catalogue.rules import Rules, parse_rule
from ..events.model import TOPIC_CATALOGUE, TOPIC_CONTROL, TOPIC_MODEL_UPDATES, Invalid
from ..kafka.own_writes import OwnWrites
from ..kafka.read_all import TopicReader
from ..kafka.replicated import ReplicatedChangelog
from ..kafka.table import StrKeyTable
from ..popularity.trending import PopularityIndex
from ..ranking.maths.ann import AnnConfig
from ..ranking.model.active import ModelHolder
from ..ranking.model.payload import decode as decode_model
from ..ranking.model.announcement import check
from ..ranking.model.registry import ModelRegistry, registry_for
from ..transitions.index import TransitionIndex, is_history_key_bytes
from ..settings import Settings

log = logging.getLogger("recsys_faust")

CACHE_EPOCH_KEY = "cache_epoch"


@dataclass(frozen=True)
class Replicas:
    popularity: PopularityIndex
    popularity_tail: ReplicatedChangelog
    transitions: TransitionIndex
    transitions_tail: ReplicatedChangelog
    models: ModelHolder
    registry: ModelRegistry
    models_tail: ReplicatedChangelog
    catalogue: "CatalogueFollower"

    @property
    def tails(self) -> tuple[ReplicatedChangelog, ...]:
        return (self.popularity_tail, self.transitions_tail, self.models_tail, self.catalogue.tail)


def _item_tail(settings: Settings, table: StrKeyTable, apply: Callable[[list], None],
               ignore_key: Optional[Callable[[Optional[bytes]], bool]] = None) -> ReplicatedChangelog:
    """A tail of an item table's changelog that skips this worker's own, applied records."""
    own = OwnWrites()
    table.on_changelog_sent = own.add
    return ReplicatedChangelog(settings, table.changelog_topic.get_topic_name(), apply, skip=own.contains,
                               skip_from=own.skip_from, ignore_key=ignore_key)


def replicate(settings: Settings, popularity_table: StrKeyTable, transitions_table: StrKeyTable) -> Replicas:
    popularity = PopularityIndex(window_s=settings.popularity.trending_window_s, bucket_s=settings.popularity.popularity_bucket_s,
                                 refresh_s=settings.popularity.trending_refresh_s)
    transitions = TransitionIndex()
    models = ModelHolder(settings.ranking.transitions_max_successors, ann_min_items=settings.ranking.ann_min_items,
                         ann=AnnConfig(ef_search=settings.ranking.ann_ef_search))
    registry = registry_for(settings)
    return Replicas(
        popularity=popularity,
        popularity_tail=_item_tail(settings, popularity_table, popularity.put_many),
        transitions=transitions,
        transitions_tail=_item_tail(settings, transitions_table, transitions.put_many, is_history_key_bytes),
        models=models,
        registry=registry,
        models_tail=ReplicatedChangelog(settings, TOPIC_MODEL_UPDATES,
                                        ModelFollower(registry, models, Path(settings.training.models_dir),
                                                      refetch=lambda version: asyncio.run(
                                                          read_announcement(settings, registry, version))).on_records,
                                        timestamps=True),
        catalogue=CatalogueFollower(settings, Rules()),
    )


class ModelFollower:
    """Folds amazon-model-updates into the registry and serves the version it chooses
    (ranking/model/registry.py: the newest publication, or a version activated after it).

    A model is loaded on a thread of its own, never on the event loop: a large one is read,
    checked (sha256) and indexed for seconds, while agents and web views carry on serving the
    previous version. Loads run one at a time in the order chosen, and a load overtaken by a
    newer choice is dropped, so the last choice is what is served."""

    def __init__(self, registry: ModelRegistry, models: ModelHolder, models_dir: Optional[Path] = None,
                 refetch: Optional[Callable[[str], Optional[dict[str, Any]]]] = None) -> None:
        self.registry = registry
        self.models = models
        self.models_dir = models_dir
        # A version whose inline artifact the registry dropped is read from the topic again
        # (on the loader thread: ``read_announcement``).
        self.refetch = refetch
        self._wanted: Optional[str] = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")

    def on_records(self, records: list[tuple[str, Any]]) -> None:
        self.registry.apply(records)
        chosen = self.registry.chosen()
        if chosen is None:
            return
        version = str(chosen["model_version"])
        active = self.models.active
        if version == self._wanted or (self._wanted is None and active is not None and active.version == version):
            return
        self._wanted = version
        self._executor.submit(self._load, chosen)

    def _load(self, chosen: dict[str, Any]) -> None:
        version = str(chosen["model_version"])
        if version != self._wanted:
            return  # a newer choice came while this one waited
        try:
            if chosen.get("stripped"):
                refetched = self.refetch(version) if self.refetch is not None else None
                if refetched is None:
                    raise ValueError(f"model {version}'s artifact is no longer held and could not be read again")
                chosen = refetched
            artifact = decode_model(chosen, self.models_dir, self.registry.limits)
            if version == self._wanted:
                self.models.switch(artifact, float(chosen.get("created_at") or 0))
        except Exception:  # noqa: BLE001 - a broken announcement must not stop the worker
            log.exception("could not load model %s from amazon-model-updates; still serving %s", version,
                          self.models.active.version if self.models.active else "no model")
            if version == self._wanted:
                self._wanted = None  # the next record on the topic tries again

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class CacheControl:
    """The cluster-wide cache epoch (``POST /api/clear-cache``): set here, applied everywhere
    through the compacted control topic, which every worker tails from the beginning."""

    def __init__(self, settings: Settings, apply: Callable[[float], None], control_topic: Any) -> None:
        self.settings = settings
        self.apply = apply
        self.topic = control_topic
        self.tail = ReplicatedChangelog(settings, TOPIC_CONTROL, self.on_records)

    def on_records(self, records: list[tuple[str, Any]]) -> None:
        """Admin state from the control topic (the newest value of each key wins)."""
        for key, value in records:
            if key == CACHE_EPOCH_KEY and isinstance(value, dict):
                try:
                    self.apply(float(value["cache_epoch"]))
                except (KeyError, TypeError, ValueError):
                    log.warning("control topic: ignoring a malformed cache_epoch record %r", value)

    async def clear(self) -> dict[str, Any]:
        """Set the cluster-wide cache epoch: applied here at once, on every worker via the topic."""
        epoch = time.time()
        await self.topic.send(key=CACHE_EPOCH_KEY, value={
            "cache_epoch": epoch, "worker": self.settings.process.worker_name, "timestamp": epoch})
        self.apply(epoch)
        metrics.CACHE_CLEARS.inc()
        return {"cleared": True, "cache_epoch": epoch,
                "detail": "ready lists generated before cache_epoch are no longer served, on every worker; "
                          "answers are computed live until each user's next event rebuilds the list"}


class CatalogueFollower:
    """Folds recsys-catalogue into the worker's ``Rules`` (the newest record of each item wins; a
    tombstone removes its rule). A record that is not a rule is logged and skipped: the topic is
    open to any producer, and one bad record must not stop a worker or hide the others."""

    def __init__(self, settings: Settings, rules: Rules) -> None:
        self.rules = rules
        self.refused = 0
        self.tail = ReplicatedChangelog(settings, TOPIC_CATALOGUE, self.on_records)

    def on_records(self, records: list[tuple[str, Any]]) -> None:
        for key, value in records:
            if value is None:
                self.rules.put(key, None)
                continue
            rule = parse_rule(value, key)
            if isinstance(rule, Invalid):
                self.refused += 1
                log.warning("recsys-catalogue: record for %r refused: %s", key, rule)
                continue
            self.rules.put(rule.product_id, rule)
        for kind, n in self.rules.counts().items():
            metrics.CATALOGUE_RULES.labels(kind).set(n)
        metrics.CATALOGUE_RULES.labels("refused").set(self.refused)


async def read_announcement(settings: Settings, registry: ModelRegistry, version: str) -> Optional[dict[str, Any]]:
    """``version``'s announcement as the topic holds it now, checked as the registry checks a
    record (its signature included); None when it is gone or fails the check."""
    reader = TopicReader(settings, TOPIC_MODEL_UPDATES, max_partition_fetch_bytes=settings.training.max_model_bytes,
                         fetch_max_bytes=settings.training.max_model_bytes)
    found: Optional[tuple[Optional[bytes], float]] = None
    wanted = version.encode("utf-8")
    async for records in reader.batches():
        for record in records:
            if record.key == wanted:
                found = (record.value, record.timestamp / 1000)
    if found is None or found[0] is None:
        return None
    try:
        value, reason = check(version, json.loads(found[0]), found[1], registry.limits, registry.verifier)
    except ValueError:
        return None
    if reason is not None:
        log.warning("model %s read again from amazon-model-updates is refused: %s", version, reason)
    return value if reason is None else None
