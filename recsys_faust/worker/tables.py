"""The worker's tables: per-user state co-partitioned with the input topics, per-partition item
entries replicated to every worker. Declared here, in one place, so their names (and so their
changelog topics) never drift between workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..app import RecsysApp, rocksdb_options
from ..kafka.table import StrKeyTable
from ..settings import Settings


@dataclass(frozen=True)
class Tables:
    profiles: StrKeyTable
    recommendations: StrKeyTable
    answered: StrKeyTable
    user_factors: StrKeyTable
    popularity: StrKeyTable
    transitions: StrKeyTable
    event_ids: StrKeyTable
    erasures: StrKeyTable


def changelog_config(settings: Settings, replication_factor: int) -> dict[str, str]:
    """Changelog topic configs: acks=all writes survive one broker lost (min.insync.replicas 2 of
    3, as topics.yaml gives the inputs), plus RECSYS_CHANGELOG_TOPIC_CONFIG."""
    config = {"min.insync.replicas": str(min(2, replication_factor - 1))} if replication_factor >= 2 else {}
    return {**config, **settings.kafka.changelog_topic_config}


def declare_tables(app: RecsysApp, settings: Settings, partitions: int) -> Tables:
    opts = rocksdb_options(settings)
    config = changelog_config(settings, app.conf.topic_replication_factor)

    def user_table(name: str, help_: str) -> Any:
        return app.Table(name, default=None, partitions=partitions, key_type=str, use_partitioner=True,
                         options=dict(opts), help=help_, extra_topic_configs=dict(config))

    def item_table(name: str, help_: str) -> Any:
        # Keys "<product_id>@<partition>": written only by the owner of that partition, stored and
        # changelogged on it (no use_partitioner), read by every worker through ReplicatedChangelog.
        return app.Table(name, default=None, partitions=partitions, key_type=str, options=dict(opts), help=help_,
                         extra_topic_configs=dict(config))

    # key_type=str: raw UTF-8 keys (kafka/table.StrKeyTable) for changelogs, stores and routing.
    return Tables(
        profiles=user_table("user_profiles", "Per-user profile: recent items, counts, windows, affinities"),
        recommendations=user_table("recommendations", "Per-user ready top-N list"),
        answered=user_table("answered_requests", "Last answered request offset per user and partition"),
        user_factors=user_table("user_factors", "Per-user ALS vector folded in from recent interactions"),
        popularity=item_table("item_popularity", "Per-partition item popularity buckets"),
        transitions=item_table("item_transitions", "Per-partition item successor counts (what users took next)"),
        # Keys are "<prefix><epoch><user><event id>" (profiles/dedup.py), written on their user's
        # partition explicitly: no use_partitioner (the key is not a user id), never replicated.
        event_ids=item_table("event_ids", "Event ids applied within the de-duplication window"),
        # Keys "e<US><sha256 of the user id>" (erasure/forget.py), on the erased user's partition:
        # the time before which their records are dropped. Never replicated.
        erasures=item_table("erasures", "Erased users' marks: records from before the erasure are dropped"),
    )
