"""Producers that send contract records: one aiokafka producer each, acks=all, idempotent.

``ContractProducer`` is the lifecycle and the validated send shared by the client SDK's
producers (client/producers.py) and the worker's own metrics posts (``MetricsProducer``).
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Optional

import aiokafka

from ..events.model import TOPIC_MODEL_METRICS, TOPIC_SYSTEM_METRICS, Invalid, metric_record
from ..events.prepare import InvalidEventError, prepare
from ..events.protect import FieldCipher
from ..settings import Settings
from .clients import client_kwargs


class ContractProducer:
    """Shared lifecycle: one aiokafka producer, acks=all, idempotent retries (a retried batch is
    written once, in order: the broker drops the duplicate by producer id and sequence)."""

    def __init__(self, settings: Settings, *, linger_ms: int = 5) -> None:
        self.settings = settings
        self.cipher = FieldCipher.from_settings(settings)  # RECSYS_FIELD_KEYS set: seal at the source
        self._producer = aiokafka.AIOKafkaProducer(
            acks="all",
            enable_idempotence=settings.kafka.producer_idempotence,
            linger_ms=linger_ms,
            max_request_size=max(1_048_576, settings.ingest.max_event_bytes * 2),
            **client_kwargs(settings),
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> "ContractProducer":
        return cls(Settings.from_env(), **kwargs)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> "ContractProducer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def send_event(self, kind: str, obj: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
        """Validate and send one event object; returns the object as sent."""
        topic, key, value = prepare(kind, obj, max_bytes=self.settings.ingest.max_event_bytes, cipher=self.cipher)
        fut = await self._producer.send(topic, value=value, key=key)
        if wait:
            await fut
        return obj

    async def send_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Validate and send many (kind, obj) pairs, awaiting all deliveries at the end."""
        futs = []
        for kind, obj in items:
            topic, key, value = prepare(kind, obj, max_bytes=self.settings.ingest.max_event_bytes, cipher=self.cipher)
            futs.append(await self._producer.send(topic, value=value, key=key))
        for fut in futs:
            await fut
        return len(futs)

    async def send_prepared(self, topic: str, key: bytes, value: bytes) -> Any:
        """Send a record ``prepare`` made; returns the delivery future (awaited by the caller)."""
        return await self._producer.send(topic, value=value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()


class MetricsProducer(ContractProducer):
    """System and model metrics in the contract's shape (not validated as user events)."""

    async def send_system_metric(
        self, metric: str, value: float, *, worker: str, labels: Optional[dict[str, Any]] = None
    ) -> None:
        obj = metric_record(metric, value, worker=worker, timestamp=time.time(), labels=labels)
        await self._send_plain(TOPIC_SYSTEM_METRICS, worker, obj)

    async def send_model_metric(
        self, metric: str, value: float, *, model_version: str, labels: Optional[dict[str, Any]] = None
    ) -> None:
        obj = metric_record(metric, value, model_version=model_version, timestamp=time.time(), labels=labels)
        await self._send_plain(TOPIC_MODEL_METRICS, model_version, obj)

    async def _send_plain(self, topic: str, key: str, obj: dict[str, Any]) -> None:
        if not isinstance(obj.get("metric"), str) or isinstance(obj.get("value"), bool) or not isinstance(
            obj.get("value"), (int, float)
        ):
            raise InvalidEventError(Invalid("wrong_type", "metric must be a string and value a number"))
        fut = await self._producer.send(topic, value=json.dumps(obj).encode(), key=key.encode())
        await fut
