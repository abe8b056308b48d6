"""The table class of every recsys table: raw UTF-8 keys, and a batched write path.

Raw keys: Faust serializes table keys as JSON whatever the app's key_serializer says
(``Collection._serializer_from_type``), so the changelog, the store and ``table_route`` would
hash ``b'"u10"'`` while the input topics hash ``b'u10'``.

Batched writes: ``table[key] = value`` costs, per key, a JSON encode for the store and another
for the changelog, a FutureMessage through Faust's producer buffer, one ``producer.send`` and a
RocksDB write of the persisted offset when the send completes. Profiling the event path showed
that at about 45 us per write, four times per event: more than all the recommendation maths.
``encode_many`` + ``store_staged`` and ``send_all_staged`` do the same work
once per micro-batch: one encode per value (the same bytes go to RocksDB and to the
changelog), one RocksDB write batch and one Kafka record batch per changelog partition, and one
persisted-offset write per partition. The changelog records are exactly those Faust writes, so
recovery, standbys and ``table_route`` are unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import faust
from faust.types import TP
from rocksdict import WriteBatch

from . import codecs
from .store import ChangelogBackedStore
from .partitioning import user_partition

log = logging.getLogger(__name__)


class ChangelogWriteError(RuntimeError):
    """A changelog batch could not be written: state in RocksDB is ahead of the changelog."""


class _Tombstone:
    def __repr__(self) -> str:
        return "TOMBSTONE"


#: A value for ``encode_many`` that deletes its key: from the store, and from the changelog (a
#: record with a null value, which Faust's recovery applies as a delete and compaction drops).
TOMBSTONE: Any = _Tombstone()


@dataclass(frozen=True)
class StagedWrites:
    """Encoded records (``StrKeyTable.encode_many``), stored by ``store_staged``, their changelog
    sent by ``send_all_staged``."""

    by_partition: dict[int, list[tuple[bytes, Optional[bytes]]]]  # None: a delete


def merge_staged(first: StagedWrites, then: StagedWrites) -> StagedWrites:
    """``first``'s records, then ``then``'s, per partition (a later record of a key wins)."""
    if not first.by_partition:
        return then
    merged = {p: list(records) for p, records in first.by_partition.items()}
    for p, records in then.by_partition.items():
        merged.setdefault(p, []).extend(records)
    return StagedWrites(merged)


class StrKeyTable(faust.Table):
    """A Faust table with raw UTF-8 keys, batched reads and writes, and a one-read ``get``."""

    _changelog_error: Optional[BaseException] = None
    # Called with (partition, first offset, last offset) of every changelog batch the broker
    # acknowledged (see kafka/own_writes.py).
    on_changelog_sent: Optional[Callable[[int, int, int], None]] = None

    def _new_store_by_url(self, url: Any) -> Any:
        """RocksDB tables get ``ChangelogBackedStore`` (no write-ahead log; kafka/store.py)."""
        if str(url).startswith("rocksdb:"):
            return ChangelogBackedStore(
                url, self.app, self, table_name=self.name, key_type=self.key_type,
                key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                value_type=self.value_type, loop=self.loop, options=self.options)
        return super()._new_store_by_url(url)

    def _serializer_from_type(self, typ: Any) -> Any:
        if typ is str:
            return codecs.CODEC_NAME
        if typ is None:  # untyped values: JSON, through the fast codec
            return codecs.JSON_CODEC
        return super()._serializer_from_type(typ)

    @property
    def changelog_error(self) -> Optional[BaseException]:
        """The first failed changelog batch, if any (the consumer refuses to commit after one)."""
        return self._changelog_error

    def _rocksdb_store(self) -> Any:
        """The RocksDB store, whose per-partition databases the batched paths use directly."""
        store = self.data
        if self.value_serializer != codecs.JSON_CODEC or not hasattr(store, "_db_for_partition"):
            raise TypeError(f"batched table access needs a RocksDB table with value_serializer={codecs.JSON_CODEC!r}")
        return store

    def get(self, key: Any, default: Any = None) -> Any:
        """One key's value with one RocksDB read (the serving path: a request, a profile view).

        Faust's ``get`` asks ``key in table`` and then reads the key (two reads; for a key it has
        not indexed yet, a bloom-filter probe and a read in every partition's database each
        time) and decodes through its serializer stack: a tenth of a recommendation request.
        Here the partition is the key's hash for a per-user table (Faust's key index is an LRU
        of 1,000 keys: with 15k users it missed nearly always and every partition's database
        was read, measured at 12% of a request), the value comes from one read, decoded by
        orjson. Other stores and key types take Faust's path.
        """
        store = self.data
        if not isinstance(key, str) or not hasattr(store, "_db_for_partition") \
                or self.value_serializer != codecs.JSON_CODEC:
            return super().get(key, default)
        kb = key.encode("utf-8")
        dbs = store._dbs
        hashed = None
        if self.use_partitioner and self.partitions:
            # A per-user table's key lives on the partition its key hashes to (the ingest path
            # and changelog recovery write there).
            hashed = dbs.get(user_partition(key, self.partitions))
            raw = hashed.get(kb) if hashed is not None else None
            if raw is not None:
                return codecs.loads_json(raw)
        for db in dbs.values():  # any other table, or a key a Faust-path write put elsewhere
            if db is hashed:
                continue
            raw = db.get(kb)
            if raw is not None:
                return codecs.loads_json(raw)
        return default

    def read_many(self, keys: Sequence[tuple[str, int]]) -> list[Optional[Any]]:
        """Values of ``(key, partition)`` pairs (None where missing): one multi-get per partition.

        ``table.get(key)`` looks a key up through Faust's store wrappers and, for a key it has
        not seen yet, in every partition's database; a micro-batch knows each key's partition.
        """
        store = self._rocksdb_store()
        by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for pos, (key, partition) in enumerate(keys):
            by_partition[partition].append((pos, key.encode("utf-8")))
        out: list[Optional[Any]] = [None] * len(keys)
        loads = codecs.loads_json
        for partition, entries in by_partition.items():
            raws = store._db_for_partition(partition).get([kb for _, kb in entries])
            for (pos, kb), raw in zip(entries, raws):
                if raw is not None:
                    out[pos] = loads(raw)
        return out

    def keys_between(self, partition: int, start: str, stop: str, limit: int) -> list[str]:
        """Up to ``limit`` keys ``start <= key < stop`` of one partition's store, in order.

        A range scan of the sorted store: what the de-duplication window's expiry reads
        (profiles/dedup.py), without a pass over the other keys.
        """
        store = self._rocksdb_store()
        stop_b = stop.encode("utf-8")
        out: list[str] = []
        it = store._db_for_partition(partition).iter()
        try:
            it.seek(start.encode("utf-8"))
            while it.valid() and len(out) < limit:
                kb = it.key()
                if kb >= stop_b:
                    break
                out.append(kb.decode("utf-8"))
                it.next()
        finally:
            del it
        return out

    def encode_many(self, items: Sequence[tuple[str, Any, int]],
                    encoded: Sequence[tuple[str, bytes, int]] = ()) -> "StagedWrites":
        """``(key, value, partition)`` items encoded for ``store_staged``, not stored yet.

        Values are encoded once with the table's JSON codec: the same bytes go to RocksDB and
        to the changelog. Encoding is a snapshot: a value object changed afterwards (the next
        micro-batch folding more events into a profile) does not change what is stored.
        ``encoded`` items carry their JSON bytes already (encoded by the scoring process).
        """
        return self.encode_many_raw(items, encoded)[0]

    def encode_many_raw(self, items: Sequence[tuple[str, Any, int]], encoded: Sequence[tuple[str, bytes, int]] = ()
                        ) -> tuple["StagedWrites", list[Optional[bytes]]]:
        """``encode_many``, and the JSON of each of ``items`` in their order (None: a delete),
        for a reader in another process (the scoring process packs from the profiles' JSON)."""
        by_partition: dict[int, list[tuple[bytes, Optional[bytes]]]] = defaultdict(list)
        dumps = codecs.dumps_json
        raws: list[Optional[bytes]] = []
        for key, value, partition in items:
            raw = None if value is TOMBSTONE else dumps(value)
            raws.append(raw)
            by_partition[partition].append((key.encode("utf-8"), raw))
        for key, raw, partition in encoded:
            by_partition[partition].append((key.encode("utf-8"), raw))
        return StagedWrites(by_partition), raws

    def store_staged(self, staged: "StagedWrites") -> "StagedWrites":
        """Write encoded records to the local store, one RocksDB write batch per partition;
        their changelog records go out with ``send_all_staged``.

        ``partition`` is the partition the key lives on (the event's partition for the
        co-partitioned tables). The values are readable (served) as soon as this returns; a
        micro-batch stores every table first and then sends all changelogs, so a changelog send
        waiting for the broker does not delay what the batch makes visible. The producer flush
        before each offset commit (kafka/transport.py) covers the sends, so an acknowledged
        event's state is in the changelog before its offset is committed.
        """
        if self._changelog_error is not None:
            raise ChangelogWriteError(f"changelog of {self.name} failed earlier") from self._changelog_error
        if not staged.by_partition:
            return staged
        store = self._rocksdb_store()
        # Faust's key index (an LRU of 1,000 keys) is not kept up to date here: keeping it cost
        # 2.7% of the worker, and Faust's own lookups fall back to every partition's database.
        for partition, records in staged.by_partition.items():
            batch = WriteBatch(raw_mode=True)
            for kb, vb in records:
                if vb is None:
                    batch.delete(kb)
                else:
                    batch.put(kb, vb)
            store._db_for_partition(partition).write(batch)
        return staged

    def _staged_sends(self, staged: "StagedWrites") -> list[Any]:
        if not staged.by_partition:
            return []
        producer = self.app.producer._ensure_producer()
        topic = self.changelog_topic.get_topic_name()
        return [self._send_records(producer, topic, partition, records)
                for partition, records in staged.by_partition.items()]

    async def _send_records(self, producer: Any, topic: str, partition: int,
                            records: list[tuple[bytes, Optional[bytes]]]) -> list["asyncio.Future[Any]"]:
        """Hand the records to the producer; returns the batches' delivery futures."""
        batch, count = producer.create_batch(), 0
        delivered = []
        for kb, vb in records:
            if batch.append(key=kb, value=vb, timestamp=None) is None:
                # The batch is at producer_max_batch_size: send it and start another.
                delivered.append(await self._send_batch(producer, batch, count, topic, partition))
                batch, count = producer.create_batch(), 0
                if batch.append(key=kb, value=vb, timestamp=None) is None:
                    raise ValueError(f"a {len(vb or b'')}-byte value does not fit one producer batch")
            count += 1
        delivered.append(await self._send_batch(producer, batch, count, topic, partition))
        return delivered

    async def _send_batch(self, producer: Any, batch: Any, count: int, topic: str,
                          partition: int) -> "asyncio.Future[Any]":
        fut = await producer.send_batch(batch, topic, partition=partition)
        tp = TP(topic, partition)

        def on_done(f: "asyncio.Future[Any]") -> None:
            if f.cancelled() or f.exception() is not None:
                exc = f.exception() if not f.cancelled() else asyncio.CancelledError()
                if self._changelog_error is None:
                    self._changelog_error = exc
                log.error("changelog batch of %d records to %s[%d] failed: %r", count, topic, partition, exc)
                return
            # The offset of the batch's last record: recovery replays only what follows it.
            first = f.result().offset
            self.data.set_persisted_offset(tp, first + count - 1)
            if self.on_changelog_sent is not None:
                self.on_changelog_sent(partition, first, first + count - 1)

        fut.add_done_callback(on_done)
        return fut


async def send_all_staged(staged: Sequence[tuple[StrKeyTable, "StagedWrites"]], *, acked: bool = False) -> None:
    """Send the changelog batches of several tables' staged writes, every partition at once.

    aiokafka's ``send_batch`` waits until the partition's previous batch has left for the
    broker (its linger, then a produce round trip). Awaited one partition after another, a
    micro-batch writing four tables on four partitions waited sixteen times: measured 50 ms a
    batch at 500 events/s, and a worker that fell behind under load. Each (table, partition) is
    its own topic-partition, so the sends are independent and are awaited together; a
    partition's batches keep their order inside ``_send_records``.
    """
    sends = [send for table, writes in staged for send in table._staged_sends(writes)]
    if not sends:
        return
    handed = await asyncio.gather(*sends)
    if acked:  # the broker has them: a reader of the log sees them before anything sent later
        await asyncio.gather(*(fut for futures in handed for fut in futures))


class ChangelogPipe:
    """Successive micro-batches' changelog sends, in order, at most ``in_flight`` batches' at once.

    ``send_all_staged`` waits for the broker (aiokafka sends a partition's batch only once its
    previous batch is acknowledged): measured 13 to 30 ms a micro-batch at 500 events/s on a
    busy machine with the dev broker, and 15 to 105 ms on Apache Kafka sharing two cores with
    the worker. A batch's state is readable once stored, but the pipeline completes batches in
    order, so a batch that waited for the round trip held every later one back from being
    visible: on Kafka, most of the freshness lost. Here a batch's sends start and the batch goes
    on; a later batch waits for them only once ``in_flight`` batches' sends are outstanding
    (the back-pressure), and a partition's records still go out in order (each batch's sends
    start after the previous batch's completed).

    An event is acked once its batch is stored, before its changelog records are acknowledged:
    ``drain`` runs before every offset commit (``RecsysApp.before_commit``), so a committed
    offset still implies its state is in the changelog.
    """

    def __init__(self, in_flight: int = 1) -> None:
        self.in_flight = max(1, in_flight)
        self._last: Optional[asyncio.Future] = None
        self._outstanding: deque[asyncio.Future] = deque()

    async def send(self, *phases: Sequence[tuple[StrKeyTable, "StagedWrites"]]) -> None:
        """Start this batch's sends; returns once at most ``in_flight`` batches' sends (this one's
        included) are outstanding.

        Each phase is sent once the one before it is acknowledged (an order the changelogs must
        keep, ``ingest/`` says which); a phase's own sends go out together.
        """
        self._last = asyncio.ensure_future(self._after(self._last, phases))
        outstanding = self._outstanding
        outstanding.append(self._last)
        while outstanding and outstanding[0].done():
            done = outstanding.popleft()
            if not done.cancelled() and done.exception() is not None:
                raise done.exception()  # the worker stops; later sends never start (``_after``)
        while len(outstanding) > self.in_flight:
            await asyncio.shield(outstanding.popleft())

    async def drain(self) -> None:
        """Wait for every send started so far (raises the first error)."""
        if self._last is not None:
            await asyncio.shield(self._last)

    @staticmethod
    async def _after(previous: Optional[asyncio.Future],
                     phases: Sequence[Sequence[tuple[StrKeyTable, "StagedWrites"]]]) -> None:
        if previous is not None:
            await previous  # failed: this batch is not sent either (the worker is stopping)
        for n, staged in enumerate(phases):
            # Every phase but the last is acknowledged before the next is handed over: handed to
            # the producer is not in the log yet (a later phase's records could be read first).
            await send_all_staged(staged, acked=n < len(phases) - 1)
