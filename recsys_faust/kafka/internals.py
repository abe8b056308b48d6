"""Every private attribute of Faust, mode and aiokafka the project relies on, in one list, and
the helpers through which code outside ``kafka/`` reaches them.

Checked against faust-streaming 0.15.3, mode-streaming 0.7.1 and aiokafka 0.14.0 (the versions
``constraints.txt`` pins). ``tests/unit/kafka/test_internals.py`` fails when an installed version
no longer has one of them, so an upgrade shows what to re-check before anything runs. Each entry
names where it is used and why a public API does not do.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

#: (module, class, attribute, where it is used: why)
INTERNALS: tuple[tuple[str, str, str, str], ...] = (
    # faust-streaming: the consumer's offset books (kafka/transport.py WorkerConsumer, kafka/flow.py)
    ("faust.transport.consumer", "Consumer", "_new_offset",
     "transport.py: replaced by flow.next_commit, which never commits past an offset no stream acked"),
    ("faust.transport.consumer", "Consumer", "_add_gap",
     "transport.py: a no-op; gaps are counted by delivered.py where nothing was delivered"),
    ("faust.transport.consumer", "Consumer", "_commit_tps", "transport.py: commits logged and counted"),
    ("faust.transport.consumer", "Consumer", "_read_offset", "transport.py: the offsets delivered so far"),
    ("faust.transport.consumer", "Consumer", "_acked", "transport.py: the acked offsets per partition"),
    ("faust.transport.consumer", "Consumer", "_acked_index", "transport.py: the same, as a set"),
    ("faust.transport.consumer", "Consumer", "_committed_offset", "transport.py, lag.py: the last commit"),
    ("faust.transport.consumer", "Consumer", "_gap", "transport.py: offsets the broker skipped"),
    ("faust.transport.drivers.aiokafka", "Consumer", "_new_consumer_thread",
     "transport.py: the consumer thread that verifies end offsets"),
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_create_worker_consumer",
     "transport.py: fetch wait and read_committed set on the worker's aiokafka consumer"),
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_create_client_consumer",
     "transport.py: a probe consumer for end offsets"),
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_highwaters",
     "transport.py: end offsets verified against a fresh fetch"),
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_consumer",
     "transport.py: the aiokafka consumer behind the thread"),
    ("faust.transport.producer", "ProducerBuffer", "pending", "transport.py LeanProducerBuffer: its queue's size"),
    ("faust.streams", "Stream", "_on_stream_event_out", "streaming/pipeline.py ack_events: one ack per batch"),
    ("faust.streams", "Stream", "_on_message_out", "streaming/pipeline.py ack_events: one ack per batch"),
    ("faust.assignor.partition_assignor", "PartitionAssignor", "_tps_url",
     "web/views.py: which worker owns a user's partition (forwarded requests)"),
    ("faust.tables.base", "Collection", "_new_store_by_url", "table.py: the changelog-backed RocksDB store"),
    ("faust.tables.base", "Collection", "_serializer_from_type", "table.py: str keys without Faust's codec"),
    ("faust.stores.rocksdb", "Store", "_dbs", "table.py, store.py: batched reads and writes per partition"),
    ("faust.stores.rocksdb", "Store", "_db_for_partition", "table.py: batched reads and writes per partition"),
    ("faust.stores.rocksdb", "Store", "_open_for_partition", "store.py: RocksDB options per table"),
    ("faust.transport.drivers.aiokafka", "Producer", "_ensure_producer",
     "table.py, worker/: one record batch per changelog partition; the served-answer sender"),
    # mode-streaming: the flow control that clears agent buffers (kafka/flow.py says why)
    ("mode.utils.queues", "FlowControlEvent", "_suspend", "flow.py: suspension kept as mode does it"),
    ("mode.utils.queues", "FlowControlEvent", "_resume", "flow.py: resume without clearing buffers"),
    ("mode.services", "Service", "_stopped", "transport.py: an idle consumer is not counted as stalled"),
    ("mode.services", "Service", "_crashed", "transport.py: an idle consumer is not counted as stalled"),
    # aiokafka
    ("aiokafka.consumer.consumer", "AIOKafkaConsumer", "_client",
     "read_all.py, replicated.py, ops/retrain.py: a metadata refresh that sees topics just created"),
    ("aiokafka.consumer.consumer", "AIOKafkaConsumer", "_fetcher", "transport.py FetchPacer"),
    ("aiokafka.consumer.consumer", "AIOKafkaConsumer", "_fetch_max_wait_ms", "transport.py: the fetch long-poll"),
    ("aiokafka.consumer.consumer", "AIOKafkaConsumer", "_isolation_level", "transport.py: read_committed"),
    ("aiokafka.consumer.fetcher", "Fetcher", "_proc_fetch_request", "transport.py FetchPacer: paced fetches"),
)


async def refresh_metadata(consumer: Any) -> None:
    """Metadata for every topic now, those created a moment ago too (``partitions_for_topic``
    answers from a cache that may predate them)."""
    await consumer._client.force_metadata_update()


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer behind Faust's (started with the app): record batches built by hand."""
    return app.producer._ensure_producer()


def stream_ack_hooks(stream: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The two callbacks ``Stream.ack`` makes per event, to make them for a batch at once."""
    return stream._on_stream_event_out, stream._on_message_out


def owner_url_of(app: Any) -> Optional[Any]:
    """The assignor's partition -> worker URL map (None before the first assignment)."""
    return getattr(app.assignor, "_tps_url", None)


def committed_offsets(consumer: Any) -> dict:
    """The consumer's last committed offset per partition."""
    return getattr(consumer, "_committed_offset", {})
