"""The tables' RocksDB store: the changelog is the log, so RocksDB writes skip its own.

Every value a worker writes to RocksDB also goes to the table's changelog topic, and an input
offset is committed only once the changelog holds its state (kafka/table.py, ``ChangelogPipe``).
RocksDB's write-ahead log is then a second log of the same writes: on the full Amazon stream
the worker wrote 2,123 bytes an event to disk with it and 83 without (the memtables flush later;
over a long run each value still reaches the disk once, so about half the bytes are saved). Its
CPU cost was within the noise of alternated runs. Kafka Streams makes the same choice for its
RocksDB stores (``setDisableWAL(true)``).

Why no state is lost without it:

- Each partition's database also holds the changelog offset it has applied (Faust's persisted
  offset, written after the values it covers). A crash loses the writes that were only in the
  memtables. RocksDB installs memtable flushes in write order, so what survives is a prefix of
  the writes: values and offset together, never an offset ahead of its values.
- At start, Faust's recovery reads each changelog from that offset to its end, which puts back
  every lost write. Replayed inputs are skipped by the state's own offsets, as after any crash.
- A clean stop flushes the memtables (``flush``), and a revoked partition starts its flush, so a
  restart with the same data dir reads only what came after, as it did with the write-ahead log.

The cost is on the crash path only: the recovery reads up to a memtable's worth of records more
(``RECSYS_ROCKSDB_WRITE_BUFFER_SIZE`` per partition and table). ``RECSYS_ROCKSDB_WAL=true`` keeps
RocksDB's own log.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Set

from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.types import TP, CollectionT
from rocksdict import WriteOptions

log = logging.getLogger(__name__)

#: The key in the table options (``app.rocksdb_options``) that keeps RocksDB's write-ahead log.
WAL_OPTION = "keep_wal"


class ChangelogBackedStore(FaustRocksDBStore):
    """Faust's RocksDB store, its databases written without RocksDB's write-ahead log."""

    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        if not self.rocksdb_options.extra_options.get(WAL_OPTION, False):
            # Every write through this handle: ours (kafka/table.py), and Faust's recovery and
            # persisted offsets, so both stay in one order.
            options = WriteOptions()
            options.disable_wal = True
            db.set_write_options(options)
        return db

    def flush(self, partitions: Iterable[int], *, wait: bool = True) -> None:
        """Flush the memtables of these partitions' open databases to disk (``wait=False``:
        start the flushes in RocksDB's background threads and return)."""
        for partition in partitions:
            db = self._dbs.get(partition)
            if db is None:
                continue
            try:
                db.flush(wait)
            except Exception as exc:  # noqa: BLE001 - the changelog still has the writes
                log.warning("could not flush %s partition %d: %r; a restart reads them from the changelog",
                            self.table_name, partition, exc)

    def revoke_partitions(self, table: CollectionT, tps: Set[TP]) -> None:
        # Not waited for: a rebalance runs on the event loop, and a flush of every revoked
        # partition's memtables would hold it. Closing the database waits for the flush.
        self.flush((tp.partition for tp in tps if tp.topic in table.changelog_topic.topics), wait=False)
        super().revoke_partitions(table, tps)

    async def stop(self) -> None:
        self.flush(list(self._dbs))
        await super().stop()
