"""What the write path is given: its tables and collaborators, in one object instead of a long
argument list (the worker builds it once; the unit tests build it with in-memory tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from faust.types import EventT, TopicT

from ..drift.monitor import DriftMonitor
from ..kafka.table import StrKeyTable
from ..online.stats import OnlineStats
from ..popularity.trending import PopularityIndex
from ..ranking.policy.ranker import Ranker
from ..ranking.runtime.scorer import InlineScorer, Scorer
from ..settings import Settings
from ..streaming.deadletters import DeadLetters


@dataclass(frozen=True)
class IngestTables:
    """The changelog tables a batch writes (each partitioned like the input topics)."""

    profiles: StrKeyTable
    recommendations: StrKeyTable
    popularity: StrKeyTable
    transitions: StrKeyTable
    user_factors: StrKeyTable
    event_ids: StrKeyTable
    # erasure/: the marks of erased users, and the request agent's answered offsets (deleted with
    # the user). Without them (unit tests of other steps) erasures change the other tables only.
    erasures: Optional[StrKeyTable] = None
    answered: Optional[StrKeyTable] = None


@dataclass
class IngestContext:
    """The tables, indexes and senders one worker's write path uses.

    ``topic_for`` names an input topic's Faust topic (re-routed records are sent there);
    ``partitions_of`` a topic's partition count (None: unknown, nothing is re-routed);
    ``assigned`` the (topic, partition) pairs this worker owns now (None: all of them).
    """

    settings: Settings
    tables: IngestTables
    index: PopularityIndex
    ranker: Ranker
    dead_letters: DeadLetters
    topic_for: Callable[[str], TopicT]
    partitions_of: Callable[[str], Optional[int]]
    drift: Optional[DriftMonitor] = None
    # records waiting behind a micro-batch on its partitions (kafka/lag.batch_backlog): tells the
    # drift detector when the worker reads a backlog
    backlog: Optional[Callable[[Sequence[EventT]], int]] = None
    scorer: Scorer = field(default_factory=InlineScorer)
    assigned: Optional[Callable[[], Any]] = None
    online: OnlineStats = field(default_factory=OnlineStats)
