"""The topic handles a worker reads and writes, with the codecs each one needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..app import RecsysApp
from ..events.model import (
    INPUT_TOPICS, TOPIC_CATALOGUE, TOPIC_CONTROL, TOPIC_DATA_DRIFT, TOPIC_DEAD_LETTERS, TOPIC_ERASURES,
    TOPIC_REQUESTS, TOPIC_RESPONSES, TOPIC_SERVED, TOPIC_SYSTEM_METRICS,
)
from ..kafka import codecs


@dataclass(frozen=True)
class Topics:
    inputs: dict[str, Any]   # each input topic alone (reroutes go back to their own topic)
    all_inputs: Any          # every input topic, recsys-served and recsys-erasures, raw bytes (validated by the processor)
    requests: Any
    responses: Any
    dead_letters: Any
    control: Any
    drift: Any
    system_metrics: Any
    catalogue: Any           # raw bytes: the rules are checked where they are read (worker/replicas.py)


def declare_topics(app: RecsysApp, partitions: int) -> Topics:
    raw = codecs.RawBytesSchema
    return Topics(
        inputs={name: app.topic(name, partitions=partitions, schema=raw())
                for name in (*INPUT_TOPICS, TOPIC_SERVED, TOPIC_ERASURES)},
        all_inputs=app.topic(*INPUT_TOPICS, TOPIC_SERVED, TOPIC_ERASURES, schema=raw()),
        requests=app.topic(TOPIC_REQUESTS, partitions=partitions, schema=raw()),
        responses=app.topic(TOPIC_RESPONSES, key_serializer="str", value_serializer="json"),
        dead_letters=app.topic(TOPIC_DEAD_LETTERS, key_serializer="raw", value_serializer="json"),
        control=app.topic(TOPIC_CONTROL, key_serializer="str", value_serializer=codecs.JSON_CODEC),
        drift=app.topic(TOPIC_DATA_DRIFT, key_serializer="str", value_serializer=codecs.JSON_CODEC),
        system_metrics=app.topic(TOPIC_SYSTEM_METRICS, key_serializer="str", value_serializer="json"),
        catalogue=app.topic(TOPIC_CATALOGUE, schema=raw()),
    )
