"""The baseline for pipeline throughput: Faust's per-event floor, ``table[key] += 1`` per event.

Run as ``faust -A benchmarks.minimal_app worker``; GET /count says how many it counted.
"""

from __future__ import annotations

import os

import faust

from recsys_faust.kafka.transport import BaselineTransport

BROKER = os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092")
PARTITIONS = int(os.environ.get("RECSYS_USER_PARTITIONS", "4"))
TOPIC = os.environ.get("BENCH_TOPIC", "amazon-purchases")


class App(faust.App):
    def _new_transport(self):  # the dev broker needs the same end-offset care as the real worker
        return BaselineTransport(self.conf.broker_consumer, self)


app = App(
    os.environ.get("RECSYS_APP_ID", "bench-minimal"), broker=BROKER, store="rocksdb://", datadir=os.environ.get("RECSYS_DATA_DIR", "./bench-data"),
    web_port=int(os.environ.get("WEB_PORT", "6099")), web_host="127.0.0.1", web_bind="127.0.0.1",
    broker_session_timeout=2, broker_heartbeat_interval=0.3, broker_rebalance_timeout=2, broker_commit_interval=1,
    topic_disable_leader=True, consumer_auto_offset_reset="earliest",
    # the same replication as the worker it is measured against (3 on the three-broker row)
    topic_replication_factor=int(os.environ.get("RECSYS_REPLICATION_FACTOR", "1")),
)
events = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")
counts = app.Table("bench_counts", default=int, partitions=PARTITIONS)
processed = {"n": 0}


@app.agent(events)
async def count(stream):
    async for event in stream.events():
        counts[event.key] += 1
        processed["n"] += 1


@app.page("/count")
async def get_count(web, request):
    return web.json({"count": processed["n"]})


@app.page("/api/health")
async def health(web, request):
    return web.json({"status": "ok", "broker": {"status": "up"}, "popularity": {"caught_up": True}})
