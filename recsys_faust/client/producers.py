"""A small client API for other Python services: validated contract events, right key, right topic.

    async with ProductEventProducer.from_env() as p:
        await p.send_view("u1", "p9", category="snacks")

Every event is checked by the same validator the workers use, so a mistake fails here with a
readable ``InvalidEventError`` instead of ending up in the dead-letter topic. Keys are the raw
UTF-8 ``user_id`` and aiokafka partitions with murmur2, as the contract requires. The CLI's
``replay`` and the workers' HTTP ingestion go through ``prepare()`` too.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Union

from ..events.prepare import InvalidEventError, new_id, prepare
from ..kafka.producers import ContractProducer, MetricsProducer

__all__ = ["InvalidEventError", "MetricsProducer", "ProductEventProducer", "RecommendationRequestProducer",
           "ReviewProducer", "UserEventProducer", "new_id", "prepare"]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class ProductEventProducer(ContractProducer):
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


class ReviewProducer(ContractProducer):
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


class UserEventProducer(ContractProducer):
    async def send_user_event(
        self, user_id: str, event_type: str, *, timestamp: Optional[float] = None,
        properties: Optional[dict[str, Any]] = None, event_id: Optional[str] = None,
    ) -> dict[str, Any]:
        return await self.send_event("user-event", _drop_none({
            "event_id": event_id or new_id(), "user_id": user_id, "event_type": event_type,
            "timestamp": time.time() if timestamp is None else timestamp, "properties": properties,
        }))


class RecommendationRequestProducer(ContractProducer):
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
