"""A small client API for other Python services: validated contract events, right key, right topic.

    async with ProductEventProducer.from_env() as p:
        await p.send_view("u1", "p9", category="snacks")

Every event is checked by the same validator the workers use, so a mistake fails here with a
readable ``InvalidEventError`` instead of ending up in the dead-letter topic. Keys are the raw
UTF-8 ``user_id`` and aiokafka partitions with murmur2, as the contract requires. The CLI's
``replay`` and the workers' HTTP ingestion go through ``prepare()`` too.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterable, Optional, Union

import aiokafka

from ..events.model import (
    KIND_TOPICS,
    TOPIC_MODEL_METRICS,
    TOPIC_REQUESTS,
    TOPIC_SYSTEM_METRICS,
    Invalid,
    metric_record,
)
from ..events.validate import validate_event, validate_request
from ..events.protect import FieldCipher
from ..kafka.clients import client_kwargs
from ..settings import Settings


class InvalidEventError(ValueError):
    """The event breaks the contract; ``.invalid`` says how."""

    def __init__(self, invalid: Invalid) -> None:
        super().__init__(str(invalid))
        self.invalid = invalid


def new_id() -> str:
    return uuid.uuid4().hex


def prepare(kind: str, obj: dict[str, Any], *, max_bytes: int = 65_536,
            cipher: Optional[FieldCipher] = None) -> tuple[str, bytes, bytes]:
    """Validate one event object of ``kind`` and return (topic, key, value bytes), its sensitive
    fields sealed when a ``cipher`` is given (events/protect.py: at the source, before Kafka).

    ``kind`` is view, purchase, review, user-event or request. Raises InvalidEventError.
    """
    if kind == "request":
        topic = TOPIC_REQUESTS
        checked: Any = validate_request(obj, max_bytes=max_bytes)
    else:
        topic = KIND_TOPICS.get(kind)
        if topic is None:
            raise InvalidEventError(Invalid("unknown_kind", f"kind must be one of {sorted(KIND_TOPICS)} or request"))
        checked = validate_event(topic, obj, max_bytes=max_bytes)
    if isinstance(checked, Invalid):
        raise InvalidEventError(checked)
    if cipher is not None and kind != "request":
        obj = cipher.seal(kind, obj)
    value = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    if len(value) > max_bytes:
        raise InvalidEventError(Invalid("too_large", f"event is {len(value)} bytes, the limit is {max_bytes}"))
    return topic, checked.user_id.encode("utf-8"), value


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class _Producer:
    """Shared lifecycle: one aiokafka producer, acks=all, idempotent retries (a retried batch is
    written once, in order: the broker drops the duplicate by producer id and sequence)."""

    def __init__(self, settings: Settings, *, linger_ms: int = 5) -> None:
        self.settings = settings
        self.cipher = FieldCipher.from_settings(settings)  # RECSYS_FIELD_KEYS set: seal at the source
        self._producer = aiokafka.AIOKafkaProducer(
            acks="all",
            enable_idempotence=settings.producer_idempotence,
            linger_ms=linger_ms,
            max_request_size=max(1_048_576, settings.max_event_bytes * 2),
            **client_kwargs(settings),
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> "_Producer":
        return cls(Settings.from_env(), **kwargs)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> "_Producer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def send_event(self, kind: str, obj: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
        """Validate and send one event object; returns the object as sent."""
        topic, key, value = prepare(kind, obj, max_bytes=self.settings.max_event_bytes, cipher=self.cipher)
        fut = await self._producer.send(topic, value=value, key=key)
        if wait:
            await fut
        return obj

    async def send_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Validate and send many (kind, obj) pairs, awaiting all deliveries at the end."""
        futs = []
        for kind, obj in items:
            topic, key, value = prepare(kind, obj, max_bytes=self.settings.max_event_bytes, cipher=self.cipher)
            futs.append(await self._producer.send(topic, value=value, key=key))
        for fut in futs:
            await fut
        return len(futs)

    async def flush(self) -> None:
        await self._producer.flush()


class ProductEventProducer(_Producer):
    """Views and purchases."""

    async def send_view(
        self, user_id: str, product_id: str, *, timestamp: Optional[float] = None,
        category: Optional[str] = None, session_id: Optional[str] = None,
        price: Optional[float] = None, event_id: Optional[str] = None, **extra: Any,
    ) -> dict[str, Any]:
        return await self.send_event("view", _drop_none({
            "event_id": event_id or new_id(), "user_id": user_id, "product_id": product_id,
            "timestamp": time.time() if timestamp is None else timestamp,
            "category": category, "session_id": session_id, "price": price, **extra,
        }))

    async def send_purchase(
        self, user_id: str, product_id: str, *, timestamp: Optional[float] = None,
        quantity: Optional[int] = None, price: Optional[float] = None,
        category: Optional[str] = None, event_id: Optional[str] = None, **extra: Any,
    ) -> dict[str, Any]:
        return await self.send_event("purchase", _drop_none({
            "event_id": event_id or new_id(), "user_id": user_id, "product_id": product_id,
            "timestamp": time.time() if timestamp is None else timestamp,
            "quantity": quantity, "price": price, "category": category, **extra,
        }))


class ReviewProducer(_Producer):
    async def send_review(
        self, user_id: str, product_id: str, rating: Union[int, float], *,
        timestamp: Optional[float] = None, text: Optional[str] = None,
        category: Optional[str] = None, event_id: Optional[str] = None, **extra: Any,
    ) -> dict[str, Any]:
        return await self.send_event("review", _drop_none({
            "event_id": event_id or new_id(), "user_id": user_id, "product_id": product_id,
            "rating": rating, "timestamp": time.time() if timestamp is None else timestamp,
            "text": text, "category": category, **extra,
        }))


class UserEventProducer(_Producer):
    async def send_user_event(
        self, user_id: str, event_type: str, *, timestamp: Optional[float] = None,
        properties: Optional[dict[str, Any]] = None, event_id: Optional[str] = None,
    ) -> dict[str, Any]:
        return await self.send_event("user-event", _drop_none({
            "event_id": event_id or new_id(), "user_id": user_id, "event_type": event_type,
            "timestamp": time.time() if timestamp is None else timestamp, "properties": properties,
        }))


class RecommendationRequestProducer(_Producer):
    async def send_request(
        self, user_id: str, *, k: int = 10, exclude: Optional[list[str]] = None,
        category: Optional[str] = None, request_id: Optional[str] = None,
    ) -> str:
        """Ask for recommendations; the answer arrives on amazon-recommendation-responses."""
        rid = request_id or new_id()
        await self.send_event("request", _drop_none({
            "request_id": rid, "user_id": user_id, "k": k, "exclude": exclude,
            "category": category, "timestamp": time.time(),
        }))
        return rid


class MetricsProducer(_Producer):
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
