"""Sink agents' processors: valid events and answers -> PostgreSQL, acked only once durable.

The agents take micro-batches with ``run_batches`` (streaming/pipeline.py), which acks a batch's
records only after the processor returns (an error stops the worker instead), and Faust commits
only acked offsets (after a producer flush, see
kafka/transport.py), so an offset is committed only when its rows are in PostgreSQL. Records the
sink cannot store (not JSON, fields missing, refused by PostgreSQL) are dead-lettered.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any, Callable, Optional, Sequence

import psycopg
from faust.types import EventT

from ..events.model import Invalid, Source, TOPIC_DATA_DRIFT, TOPIC_MODEL_METRICS, TOPIC_SYSTEM_METRICS
from ..events.protect import FieldCipher
from ..events.validate import validate_erasure, validate_event
from ..settings import Settings
from .rows import event_row, response_row, ts
from .writer import PostgresSink
from ..streaming.deadletters import DeadLetters

log = logging.getLogger(__name__)


def _json_object(value: Any) -> Optional[dict]:
    try:
        obj = json.loads(value) if isinstance(value, (bytes, str)) else value
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class SinkProcessor:
    def __init__(self, settings: Settings, sink: PostgresSink, dead_letters: DeadLetters,
                 stopping: Callable[[], bool]) -> None:
        self.settings = settings
        # With field keys, what a producer sent in plaintext is sealed before it is stored.
        self.cipher = FieldCipher.from_settings(settings)
        self.sink = sink
        self.dead_letters = dead_letters
        self.stopping = stopping

    async def events(self, records: Sequence[EventT]) -> None:
        batches: dict[str, list[tuple]] = defaultdict(list)
        for rec in records:
            msg = rec.message
            ev = validate_event(msg.topic, msg.value, max_bytes=self.settings.ingest.max_event_bytes,
                                max_future_skew_s=self.settings.ingest.max_future_skew_s)
            if isinstance(ev, Invalid):
                continue  # dead-lettered (once) by the user_event_processor
            payload = self.cipher.seal(ev.kind, ev.payload) if self.cipher is not None else None
            table, row = event_row(ev, Source(msg.topic, msg.partition, msg.offset), payload)
            batches[table].append(row)
        await self._write(batches, records)

    async def erasures(self, records: Sequence[EventT]) -> None:
        """recsys-erasures: each user's rows from before their erasure deleted, an audit row kept
        (``PostgresSink.erase``). A record that is not an erasure is the event processor's to
        dead-letter (it reads the same topic); here it is skipped."""
        erasures = []
        for rec in records:
            erasure = validate_erasure(rec.message.value, max_bytes=self.settings.ingest.max_event_bytes)
            if isinstance(erasure, Invalid):
                continue
            erasures.append((erasure.user_id, erasure.erased_at))
        if erasures:
            deleted = await self.sink.erase(erasures, stop=self.stopping)
            log.info("erased %d user(s) from PostgreSQL: %s", len(erasures),
                     ", ".join(f"{sum(d.values())} row(s)" for d in deleted))

    async def responses(self, records: Sequence[EventT]) -> None:
        rows = []
        for rec in records:
            row = response_row(_json_object(rec.message.value) or {})
            if row is None:
                await self._reject(rec, "not a recommendation response (JSON object with request_id, user_id)")
            else:
                rows.append(row)
        await self._write({"recommendation_responses": rows}, records)

    async def observations(self, records: Sequence[EventT]) -> None:
        """Model announcements, drift alerts and metric snapshots."""
        batches: dict[str, list[tuple]] = defaultdict(list)
        for rec in records:
            v = _json_object(rec.message.value)
            topic = rec.message.topic
            try:
                if v is None:
                    raise ValueError("not a JSON object")
                if topic == TOPIC_DATA_DRIFT:
                    batches["drift_alerts"].append((v["feature"], v["statistic"], ts(v["window_start"]), ts(v["window_end"]),
                                                    float(v["value"]), float(v["threshold"]), ts(v["timestamp"]),
                                                    json.dumps({**(v.get("details") or {}),
                                                                **({"reference": v["reference"]} if v.get("reference") else {})})))
                elif topic in (TOPIC_SYSTEM_METRICS, TOPIC_MODEL_METRICS):
                    source = v.get("worker") or v.get("model_version") or ""
                    batches["metric_snapshots"].append((v["metric"], str(source), ts(v["timestamp"]), float(v["value"]),
                                                        json.dumps(v.get("labels") or {})))
                else:  # amazon-model-updates: the manifest, without the artifact bytes
                    manifest = {k: val for k, val in v.items() if k != "artifact_npz_b64"}
                    batches["model_versions"].append((str(v["model_version"]), ts(v["created_at"]), json.dumps(manifest)))
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
        await self.dead_letters.send(rec, Invalid("sink_rejected", detail))
