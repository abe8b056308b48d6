"""``recsys-faust models list|activate|prune``: the model lifecycle, through amazon-model-updates.

Nothing here talks to a worker: every worker follows the topic (``ranking/model/registry.py``), so a
record written here switches the whole cluster, and a worker started later, or restarted,
comes back on the same version.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import aiokafka

from ..events.model import TOPIC_MODEL_UPDATES
from ..kafka.clients import client_kwargs
from ..kafka.read_all import TopicReader
from ..ranking.model.announcement import signed
from ..ranking.model.registry import ACTIVE_KEY, ModelRegistry, registry_for
from ..settings import Settings


class ModelsError(RuntimeError):
    pass


async def read_registry(settings: Settings) -> ModelRegistry:
    """The registry as the topic holds it now (every record, to its end)."""
    registry = registry_for(settings)
    reader = TopicReader(settings, TOPIC_MODEL_UPDATES, max_partition_fetch_bytes=settings.training.max_model_bytes,
                         fetch_max_bytes=settings.training.max_model_bytes)
    async for records in reader.batches():
        registry.apply((r.key.decode("utf-8", "replace") if r.key is not None else "",
                        _json(r.value), r.timestamp / 1000) for r in records)
    return registry


def _json(raw: Optional[bytes]) -> Any:
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return "undecodable"  # refused by the registry's check, with the others


async def _send(settings: Settings, records: list[tuple[str, Optional[dict[str, Any]]]]) -> None:
    producer = aiokafka.AIOKafkaProducer(acks="all", **client_kwargs(settings))
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(TOPIC_MODEL_UPDATES, key=key.encode("utf-8"),
                                         value=None if value is None else json.dumps(value).encode())
    finally:
        await producer.stop()


async def activate(settings: Settings, version: str) -> dict[str, Any]:
    """Pin ``version`` (on the topic already): every worker switches to it, a rollback included."""
    registry = await read_registry(settings)
    if version not in registry.versions:
        known = ", ".join(sorted(registry.versions)) or "none"
        raise ModelsError(f"{version} is not on {TOPIC_MODEL_UPDATES} (announced: {known}); "
                          f"publish it first (`recsys-faust train --publish`, or POST /api/reload-models)")
    pin = signed(settings, {"model_version": version, "activated_at": time.time()})
    await _send(settings, [(ACTIVE_KEY, pin)])
    return pin


async def prune(settings: Settings, keep: int) -> list[str]:
    """Tombstones for every version but the newest ``keep`` and the one served (and for a pin on a
    pruned version); returns the versions pruned."""
    if keep < 1:
        raise ModelsError("--keep must be at least 1")
    registry = await read_registry(settings)
    doomed = registry.to_prune(keep)
    records: list[tuple[str, Optional[dict[str, Any]]]] = [(version, None) for version in doomed]
    if registry.pin is not None and str(registry.pin["model_version"]) in doomed:
        records.append((ACTIVE_KEY, None))  # a pin on a version that is gone pins nothing
    await _send(settings, records)
    return doomed
