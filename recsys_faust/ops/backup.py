"""``recsys-faust backup DIR`` / ``restore DIR``: what a stack cannot rebuild, kept outside it.

Tables are not backed up: every table is a fold of the topics, and workers on an empty data dir
rebuild them from the topics (tests/integration/test_single_worker.py shows it exact). So a
backup is the topics of ``topics.yaml`` (the inputs in partition and offset order, and the
compacted control and model topics), the database (every table as CSV, ``sink/copy_backup.py``:
restorable into any PostgreSQL 14+ major version), the model artifacts, and a manifest with counts and checksums that ``restore`` checks
before it writes anything.

Topics are read up to the ends they had when the backup started (kafka/read_all.py), so a
backup of a stack that keeps taking events ends, and holds what was there when it began.

Restored records are produced with the time of the restore as their Kafka timestamp, and the
original timestamp in the ``recsys-original-timestamp`` header: with their original timestamps,
records older than a topic's ``retention.ms`` would be deleted by the broker minutes after the
restore. Events carry their own time in their ``timestamp`` field, which is what every fold
reads, so nothing the workers compute changes.

A backup is data an attacker may have touched on its way back: ``restore`` resolves every path
the manifest names and refuses one outside the backup (reading) or outside the models dir
(writing), and with ``RECSYS_BACKUP_KEY`` set the manifest carries an HMAC-SHA256
(``manifest.json.hmac``) checked before anything is read or written, so its checksums are the
backup's own and not a forger's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

import aiokafka

from ..kafka.clients import client_kwargs
from ..kafka.read_all import TopicMissing, TopicReader, topics_with_records
from ..kafka.topics import apply_topics, plan_from_settings
from ..ranking.model.artifact import sha256_file
from ..settings import Settings
from ..sink.copy_backup import TABLES, DatabaseRestoreError, dump_tables, load_tables

MANIFEST = "manifest.json"
MANIFEST_MAC = "manifest.json.hmac"
FORMAT = 2  # 2: the database as CSV per table (sink/copy_backup.py)
#: The Kafka timestamp a restored record had when it was backed up (milliseconds, as text).
ORIGINAL_TS_HEADER = "recsys-original-timestamp"


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why and what to do."""


def _b64(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _unb64(text: Optional[str]) -> Optional[bytes]:
    return None if text is None else base64.b64decode(text)


async def export_topic(settings: Settings, topic: str, path: Path,
                       progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Every record of ``topic`` as JSON lines (partition, offset, timestamp, key, value, headers)."""
    per_partition: dict[int, int] = {}
    reader = TopicReader(settings, topic)
    try:
        with path.open("w", encoding="utf-8") as out:
            async for records in reader.batches():
                for r in records:
                    out.write(json.dumps({"p": r.partition, "o": r.offset, "t": r.timestamp, "k": _b64(r.key),
                                          "v": _b64(r.value), "h": [[k, _b64(v)] for k, v in r.headers]}) + "\n")
                    per_partition[r.partition] = per_partition.get(r.partition, 0) + 1
                progress(len(records))
    except TopicMissing as exc:
        raise BackupError(str(exc)) from None
    return {"file": path.name, "partitions": len(reader.partitions), "records": sum(per_partition.values()),
            "per_partition": {str(p): n for p, n in sorted(per_partition.items())}, "sha256": sha256_file(path)}


async def import_topic(settings: Settings, topic: str, path: Path,
                       progress: Callable[[int], None] = lambda n: None) -> int:
    """The exported records produced again, each to its partition, in their offset order."""
    producer = aiokafka.AIOKafkaProducer(acks="all", linger_ms=5, enable_idempotence=False,
                                         max_batch_size=1_000_000, **client_kwargs(settings))
    await producer.start()
    sent = 0
    try:
        pending = []
        with path.open(encoding="utf-8") as f:
            rows = sorted((json.loads(line) for line in f), key=lambda r: (r["p"], r["o"]))
        for r in rows:
            headers = [(k, _unb64(v)) for k, v in r["h"] if k != ORIGINAL_TS_HEADER]
            headers.append((ORIGINAL_TS_HEADER, str(r["t"]).encode()))
            pending.append(await producer.send(
                topic, value=_unb64(r["v"]), key=_unb64(r["k"]), partition=r["p"], headers=headers))
            sent += 1
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                progress(len(pending))
                pending = []
        await asyncio.gather(*pending)
        progress(len(pending))
    finally:
        await producer.stop()
    return sent


def backup(settings: Settings, target: Path, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Write a backup of the stack ``settings`` points at into the empty directory ``target``."""
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new directory")
    (target / "topics").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": time.time(), "topics": {}, "database": None,
                                "models": []}
    plan = plan_from_settings(settings)
    for spec in plan.topics:
        echo(f"topic {spec.name} ...")
        manifest["topics"][spec.name] = asyncio.run(
            export_topic(settings, spec.name, target / "topics" / f"{spec.name}.jsonl"))
        echo(f"  {manifest['topics'][spec.name]['records']:,} records")
    if settings.sink.database_url:
        echo("database (every table as CSV, one snapshot) ...")
        manifest["database"] = asyncio.run(dump_tables(settings.sink.dsn,
                                                       target / "database", echo=echo))
    models = Path(settings.training.models_dir)
    if models.is_dir():
        shutil.copytree(models, target / "models")
        for path in sorted((target / "models").rglob("*")):
            if path.is_file():
                manifest["models"].append({"file": str(path.relative_to(target)), "sha256": sha256_file(path)})
    text = json.dumps(manifest, indent=2)
    (target / MANIFEST).write_text(text)
    key = settings.secret("backup_key")
    if key:
        (target / MANIFEST_MAC).write_text(_mac(key, text.encode("utf-8")))
    echo(f"backup written to {target} ({sum(t['records'] for t in manifest['topics'].values()):,} records, "
         f"database {'yes' if manifest['database'] else 'none'}, {len(manifest['models'])} model files)")
    return manifest


def _mac(key: str, data: bytes) -> str:
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()


def _inside(base: Path, relative: str) -> Path:
    """``base / relative``, refused when it resolves outside ``base`` (``..``, an absolute path, a link)."""
    path = (base / relative).resolve()
    if not path.is_relative_to(base.resolve()):
        raise BackupError(f"the manifest names {relative!r}, outside {base}: refused (a tampered backup?)")
    return path


def _check(source: Path, key: Optional[str], echo: Callable[[str], None]) -> dict[str, Any]:
    path = source / MANIFEST
    if not path.exists():
        raise BackupError(f"{source} holds no {MANIFEST}: not a recsys-faust backup")
    raw = path.read_bytes()
    if key:
        mac = source / MANIFEST_MAC
        if not mac.exists() or not hmac.compare_digest(mac.read_text().strip(), _mac(key, raw)):
            raise BackupError(f"{MANIFEST} is not signed with RECSYS_BACKUP_KEY (missing or wrong {MANIFEST_MAC}): "
                              f"refused before anything is written")
    else:
        echo("warning: RECSYS_BACKUP_KEY is not set: the manifest's checksums are not authenticated")
    manifest = json.loads(raw)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not {FORMAT}: restore it with the "
                          f"recsys-faust release that wrote it")
    files = [(_inside(source / "topics", t["file"]), t["sha256"]) for t in manifest["topics"].values()]
    if manifest["database"]:
        files += [(source / "database" / f"{name}.csv", t["sha256"])
                  for name, t in manifest["database"]["tables"].items() if name in TABLES]
    files += [(_inside(source / "models", str(Path(m["file"]).relative_to("models"))), m["sha256"])
              for m in manifest["models"]]
    for file, digest in files:
        if not file.exists() or sha256_file(file) != digest:
            raise BackupError(f"{file} is missing or damaged (checksum differs from the manifest)")
    return manifest


def restore(settings: Settings, source: Path, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring the stack ``settings`` points at (empty topics, empty database) back from ``source``."""
    manifest = _check(source, settings.secret("backup_key"), echo)
    models = Path(settings.training.models_dir)
    for m in manifest["models"]:  # every destination checked before the first write
        _inside(models, str(Path(m["file"]).relative_to("models")))
    plan = plan_from_settings(settings)
    asyncio.run(apply_topics(settings, plan))
    busy = asyncio.run(topics_with_records(settings, list(manifest["topics"])))
    if busy:
        raise BackupError(f"topics already hold records: {', '.join(busy)}; restore into an empty broker "
                          f"(records produced again would follow them and double every event)")
    for name, meta in manifest["topics"].items():
        n = asyncio.run(import_topic(settings, name, _inside(source / "topics", meta["file"])))
        if n != meta["records"]:
            raise BackupError(f"{name}: produced {n} of {meta['records']} records")
        echo(f"topic {name}: {n:,} records")
    if manifest["database"]:
        if not settings.sink.database_url:
            raise BackupError("the backup holds a database: set DATABASE_URL to restore it")
        try:
            asyncio.run(load_tables(settings.sink.dsn, source,
                                    manifest["database"], echo=echo))
        except DatabaseRestoreError as exc:
            raise BackupError(str(exc)) from None
        echo("database restored")
    if manifest["models"]:
        for m in manifest["models"]:
            rel = str(Path(m["file"]).relative_to("models"))
            dst = _inside(models, rel)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(_inside(source / "models", rel), dst)
        echo(f"{len(manifest['models'])} model files into {models}")
    echo("restored: start the workers on empty data dirs; they rebuild every table from the topics")
    return manifest
