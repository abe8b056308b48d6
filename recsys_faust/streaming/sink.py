"""Sink agents' processors: valid events and answers -> PostgreSQL, acked only once durable.

The agents take micro-batches with ``take_events``; Faust acks a batch's events only after the
processor returns, and commits only acked offsets (after a producer flush, see
kafka/transport.py), so an offset is committed only when its rows are in PostgreSQL.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Sequence

import psycopg
from faust.types import EventT, TopicT

from ..events.deadletter import dead_letter
from ..events.model import Invalid, TOPIC_DATA_DRIFT, TOPIC_MODEL_METRICS, TOPIC_SYSTEM_METRICS
from ..events.validate import validate_event
from ..settings import Settings
from ..sink.rows import event_row, response_row, ts
from ..sink.writer import PostgresSink

log = logging.getLogger(__name__)


class SinkProcessor:
    def __init__(self, settings: Settings, sink: PostgresSink, dead_letters: TopicT,
                 stopping: Callable[[], bool]) -> None:
        self.settings = settings
        self.sink = sink
        self.dead_letters = dead_letters
        self.stopping = stopping

    async def events(self, records: Sequence[EventT]) -> None:
        batches: dict[str, list[tuple]] = defaultdict(list)
        for rec in records:
            msg = rec.message
            ev = validate_event(msg.topic, msg.value, max_bytes=self.settings.max_event_bytes,
                                max_future_skew_s=self.settings.max_future_skew_s)
            if isinstance(ev, Invalid):
                continue  # dead-lettered (once) by the user_event_processor
            table, row = event_row(ev, (msg.topic, msg.partition, msg.offset))
            batches[table].append(row)
        await self._write(batches, records)

    async def responses(self, records: Sequence[EventT]) -> None:
        rows = [r for r in (response_row(rec.value) if isinstance(rec.value, dict) else None for rec in records) if r]
        await self._write({"recommendation_responses": rows}, records)

    async def observations(self, records: Sequence[EventT]) -> None:
        """Model announcements, drift alerts and metric snapshots."""
        import json

        batches: dict[str, list[tuple]] = defaultdict(list)
        for rec in records:
            v = rec.value if isinstance(rec.value, dict) else None
            topic = rec.message.topic
            try:
                if v is None:
                    raise ValueError("not a JSON object")
                if "artifact_npz_b64" in v or topic.endswith("model-updates"):
                    manifest = {k: val for k, val in v.items() if k != "artifact_npz_b64"}
                    batches["model_versions"].append((str(v["model_version"]), ts(v["created_at"]), json.dumps(manifest)))
                elif topic == TOPIC_DATA_DRIFT:
                    batches["drift_alerts"].append((v["feature"], v["statistic"], ts(v["window_start"]), ts(v["window_end"]),
                                                    float(v["value"]), float(v["threshold"]), ts(v["timestamp"]),
                                                    json.dumps(v.get("details"))))
                elif topic in (TOPIC_SYSTEM_METRICS, TOPIC_MODEL_METRICS):
                    source = v.get("worker") or v.get("model_version") or ""
                    batches["metric_snapshots"].append((v["metric"], str(source), ts(v["timestamp"]), float(v["value"]),
                                                        json.dumps(v.get("labels") or {})))
            except (KeyError, TypeError, ValueError) as exc:
                await self._reject(rec, f"{type(exc).__name__}: {exc}")
        await self._write(batches, records)

    async def _write(self, batches: dict[str, list[tuple]], records: Sequence[EventT]) -> None:
        if not any(batches.values()):
            return
        try:
            await self.sink.write(batches, stop=self.stopping)
        except psycopg.Error as exc:  # not transient: the rows themselves are refused
            log.exception("PostgreSQL refused a batch of %d records", len(records))
            for rec in records:
                await self._reject(rec, f"{type(exc).__name__}: {exc}"[:500])

    async def _reject(self, rec: EventT, detail: str) -> None:
        msg = rec.message
        value = msg.value if isinstance(msg.value, (bytes, type(None))) else str(msg.value).encode()
        key = msg.key if isinstance(msg.key, (bytes, type(None))) else str(msg.key).encode()
        await self.dead_letters.send(key=key, value=dead_letter(
            Invalid("sink_rejected", detail), topic=msg.topic, partition=msg.partition, offset=msg.offset,
            key=key, value=value, worker=self.settings.worker_name))


