"""Build the ``faust.App`` from one Settings object, and nothing else."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import faust
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from faust.types import TransportT

from .kafka import codecs
from .kafka.clients import ssl_context
from .kafka.flow import KeepBuffersFlowControl
from .kafka.monitor import LeanMonitor
from .kafka.store import WAL_OPTION
from .kafka.table import StrKeyTable
from .kafka.transport import Transport as VerifiedTransport
from .settings import Settings


class RecsysApp(faust.App):
    """A Faust app whose consumer verifies end offsets by fetch (see kafka/transport.py)."""

    settings: Settings
    #: Awaited before every offset commit (kafka/transport.py): writes an acked event still owes.
    before_commit: list[Callable[[], Awaitable[None]]]

    def _new_transport(self) -> TransportT:
        return VerifiedTransport(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        """Resuming the flow keeps the records the agents were handed (kafka/flow.py says why)."""
        return KeepBuffersFlowControl(loop=self.loop)


def _credentials(settings: Settings) -> Any:
    protocol = settings.broker_security.kafka_security_protocol.upper()
    if settings.broker_security.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.broker_security.kafka_sasl_username,
            password=settings.secret("kafka_sasl_password"),
            mechanism=settings.broker_security.kafka_sasl_mechanism.upper(),
            ssl_context=ssl_context(settings),
        )
    if "SSL" in protocol:
        return faust.SSLCredentials(ssl_context(settings))
    return None


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    return {
        "write_buffer_size": settings.storage.rocksdb_write_buffer_size,
        "max_write_buffer_number": settings.storage.rocksdb_max_write_buffer_number,
        "target_file_size_base": settings.storage.rocksdb_target_file_size_base,
        "block_cache_size": settings.storage.rocksdb_block_cache_size,
        "bloom_filter_size": settings.storage.rocksdb_bloom_filter_size,
        "max_open_files": settings.storage.rocksdb_max_open_files,
        "driver": "rocksdict",
        WAL_OPTION: settings.storage.rocksdb_wal,
    }


def internal_replication_factor(settings: Settings) -> int:
    """The replication factor topics.yaml gives the input topics (3 as shipped)."""
    from .events.model import INPUT_TOPICS
    from .kafka.topics import plan_from_settings

    return plan_from_settings(settings)[INPUT_TOPICS[0]].replication_factor


def create_app(settings: Settings) -> RecsysApp:
    codecs.register()
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    app = RecsysApp(
        settings.kafka.app_id,
        Table=StrKeyTable,
        Monitor=LeanMonitor,
        broker=settings.kafka.broker_urls,
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.storage.data_dir),
        key_serializer=codecs.CODEC_NAME,
        value_serializer=codecs.JSON_CODEC,
        web_port=settings.web.web_port,
        web_host=settings.web.web_host,
        web_bind=settings.web.web_bind,
        canonical_url=settings.web.web_url,
        table_standby_replicas=settings.kafka.table_standby_replicas,
        broker_session_timeout=settings.kafka.broker_session_timeout,
        broker_heartbeat_interval=settings.kafka.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.kafka.broker_rebalance_timeout,
        broker_request_timeout=settings.kafka.broker_request_timeout,
        broker_commit_interval=settings.kafka.broker_commit_interval,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=max(1_048_576, settings.ingest.max_event_bytes * 4),
        producer_linger=settings.kafka.producer_linger_s,
        producer_max_batch_size=settings.kafka.producer_max_batch_bytes,
        topic_disable_leader=True,
        # Changelogs and every other topic Faust creates: as replicated as the input topics.
        topic_replication_factor=settings.kafka.replication_factor or internal_replication_factor(settings),
    )
    app.settings = settings
    app.before_commit = []
    return app
