"""sink/processor.py: which rows a batch of records becomes, which records are dead-lettered
(and which are not, because the event processor already did), and that a batch PostgreSQL
refuses is dead-lettered record by record instead of stopping the stream. The writer is a
recording stand-in; tests/integration/test_sink.py runs the real one against PostgreSQL."""

from __future__ import annotations

import json
from types import SimpleNamespace

import psycopg

from recsys_faust.settings import Settings
from recsys_faust.sink.processor import SinkProcessor


class Writer:
    def __init__(self, refuse: bool = False) -> None:
        self.batches: list[dict] = []
        self.refuse = refuse

    async def write(self, batches, stop):
        if self.refuse:
            raise psycopg.errors.NumericValueOutOfRange("value out of range")
        self.batches.append({t: list(rows) for t, rows in batches.items() if rows})


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send(self, rec, invalid):
        self.sent.append((rec.message.topic, rec.message.offset, invalid.code))


def rec(topic, value, offset=0):
    raw = json.dumps(value).encode() if not isinstance(value, bytes) else value
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"k", value=raw))


def processor(refuse=False):
    writer, dead = Writer(refuse), DeadLetters()
    return SinkProcessor(Settings(), writer, dead, stopping=lambda: False), writer, dead


VIEW = {"event_id": "e1", "user_id": "u1", "product_id": "p1", "timestamp": 1_700_000_000}
LOGIN = {"event_id": "e2", "user_id": "u1", "event_type": "login", "timestamp": 1_700_000_001}


async def test_events_become_rows_with_their_source_and_invalid_ones_are_left_to_the_processor():
    p, writer, dead = processor()
    await p.events([rec("amazon-product-views", VIEW, 5), rec("amazon-user-events", LOGIN, 6),
                    rec("amazon-product-views", b"not json", 7)])
    (batch,) = writer.batches
    (row,) = batch["interactions"]
    assert row[:3] == ("e1", "view", "u1") and row[-3:] == ("amazon-product-views", 0, 5)
    (urow,) = batch["user_events"]
    assert urow[:3] == ("e2", "u1", "login") and urow[-1] == 6
    assert dead.sent == []   # the event processor dead-letters it, once


async def test_a_batch_of_only_invalid_events_writes_nothing():
    p, writer, _ = processor()
    await p.events([rec("amazon-product-views", {"user_id": "u"})])
    assert writer.batches == []


async def test_responses_and_observations_rows_and_their_rejects():
    p, writer, dead = processor()
    await p.responses([rec("amazon-recommendation-responses",
                           {"request_id": "r1", "user_id": "u1", "items": [{"product_id": "a", "score": 1}],
                            "model_version": "m", "strategy": "als", "timestamp": 1.0}, 0),
                       rec("amazon-recommendation-responses", {"user_id": "u1"}, 1)])
    assert [r[:2] for r in writer.batches[0]["recommendation_responses"]] == [("r1", "u1")]
    await p.observations([
        rec("amazon-data-drift", {"feature": "kind", "statistic": "psi", "window_start": 0, "window_end": 60,
                                  "value": 0.4, "threshold": 0.2, "timestamp": 61}, 0),
        rec("amazon-model-updates", {"model_version": "m1", "created_at": 5, "artifact_npz_b64": "AAAA",
                                     "metrics": {"ndcg": 0.06}}, 1),
        rec("amazon-system-metrics", {"metric": "events_per_s", "worker": "w1", "timestamp": 9, "value": 3}, 2),
        rec("amazon-data-drift", {"feature": "kind"}, 3),
    ])
    batch = writer.batches[1]
    assert batch["drift_alerts"][0][:2] == ("kind", "psi")
    version, _, manifest = batch["model_versions"][0]
    assert version == "m1" and "artifact_npz_b64" not in json.loads(manifest)  # no model bytes in SQL
    assert batch["metric_snapshots"][0][:2] == ("events_per_s", "w1")
    assert dead.sent == [("amazon-recommendation-responses", 1, "sink_rejected"),
                         ("amazon-data-drift", 3, "sink_rejected")]


async def test_a_batch_postgresql_refuses_is_dead_lettered_record_by_record():
    p, _, dead = processor(refuse=True)
    await p.events([rec("amazon-product-views", VIEW, 1), rec("amazon-product-views", {**VIEW, "event_id": "e9"}, 2)])
    assert dead.sent == [("amazon-product-views", 1, "sink_rejected"), ("amazon-product-views", 2, "sink_rejected")]
