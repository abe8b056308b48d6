"""The settings of each component, one section model each; ``Settings`` composes them.

A component is handed its own section (the sink ``settings.sink``, the drift detector
``settings.drift``, ...). Each field is set by ``RECSYS_<FIELD NAME IN CAPITALS>``, the wiring
ones also by their documented names (``KAFKA_BROKER``, ``DATABASE_URL``, ``WEB_PORT``, ...), so a
field's variable does not change with the section it sits in. The comments are the
documentation: ``settings_doc`` renders docs/configuration.md from them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .values import MODEL_SHIPPING, SCORING_MODES, EventWeights, SettingsError, Variant, drift_features, parse_fields, \
    parse_variants

PACKAGE_DIR = Path(__file__).resolve().parent.parent


class Section(BaseModel):
    """A frozen group of settings; ``secret`` gives a ``SecretStr`` field's plain value."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, validate_default=False)

    def secret(self, name: str) -> Optional[str]:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


class KafkaSettings(Section):
    """The broker, its clients' timing and the topics the app creates."""

    app_id: str = "recsys-faust"  # Faust app id: the consumer group and the prefix of changelog topics
    broker: str = Field("kafka://127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BROKER", "BROKER_URL", "RECSYS_BROKER"))  # Kafka bootstrap URLs, comma-separated (kafka://host:port)
    topics_file: Optional[Path] = None  # topics.yaml to use (default: the one beside the package, or ./topics.yaml)
    user_partitions: int = 0      # 0: as topics.yaml says; else overrides per-user topics (dev/test)
    replication_factor: int = 0   # 0: as topics.yaml says; 1 on a single dev broker
    # Extra configs of the changelog topics the workers create (JSON object, e.g.
    # {"segment.ms": "600000"}); min.insync.replicas is set from the replication factor.
    changelog_topic_config: dict[str, str] = Field(default_factory=dict)
    # Within what Apache Kafka accepts by default (group.min.session.timeout.ms = 6 s); the dev
    # stack and the tests run a broker that accepts 1 s and set 2 s for fast failover.
    broker_session_timeout: float = 10.0
    broker_heartbeat_interval: float = 3.0  # consumer group heartbeat
    broker_rebalance_timeout: float = 10.0  # how long a rebalance may take before members are dropped
    broker_request_timeout: float = 30.0  # one Kafka request's timeout
    broker_commit_interval: float = 1.0  # offsets of processed events are committed this often
    # Standby replicas make failover faster but are off by default: with them, a worker taking
    # over partitions mid-stream sometimes never resumed consuming them on the dev broker
    # (caught by the two-worker exactness test, ~1 run in 4); without them, 0 in 12 runs.
    table_standby_replicas: int = 0
    # Fetch long-poll. Kafka answers a fetch as soon as a record arrives, so this bounds only idle
    # fetching (Kafka's own default); the dev broker Tansu holds fetches for it, and runs with 25 ms.
    fetch_max_wait_ms: int = 500
    fetch_min_interval_ms: int = Field(0, ge=0)  # a fetch starts at least this long after the previous answer (0: at once; Tansu: 8)
    producer_idempotence: bool = True  # the client producers' retries write once (Kafka); the Tansu dev broker cannot: false there
    producer_linger_s: float = 0.005          # batch changelog records for up to 5 ms
    producer_max_batch_bytes: int = 1_000_000   # bytes per partition batch

    @model_validator(mode="after")
    def _has_a_broker(self) -> "KafkaSettings":
        if not self.broker_urls:
            raise ValueError("KAFKA_BROKER is empty")
        return self

    @property
    def broker_urls(self) -> list[str]:
        return [u.strip() for u in self.broker.replace(";", ",").split(",") if u.strip()]

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port list for plain Kafka clients (the faust URL scheme stripped)."""
        return [url.split("://", 1)[1] if "://" in url else url for url in self.broker_urls]

    def resolved_topics_file(self) -> Path:
        """Where topics.yaml is: the setting, the working directory, then the source tree."""
        candidates = [self.topics_file] if self.topics_file else []
        candidates += [Path.cwd() / "topics.yaml", PACKAGE_DIR.parent / "topics.yaml"]
        for path in candidates:
            if path and path.is_file():
                return path
        raise SettingsError(
            "topics.yaml not found (set RECSYS_TOPICS_FILE); looked in: "
            + ", ".join(str(p) for p in candidates if p)
        )


class BrokerSecuritySettings(Section):
    """How the clients authenticate to the brokers (TLS, SASL)."""

    kafka_security_protocol: str = Field("PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "RECSYS_KAFKA_SECURITY_PROTOCOL"))  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "RECSYS_KAFKA_SASL_MECHANISM"))  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "RECSYS_KAFKA_SASL_USERNAME"))  # SASL user
    kafka_sasl_password: Optional[SecretStr] = Field(None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "RECSYS_KAFKA_SASL_PASSWORD"))  # SASL password (secret)
    kafka_ssl_cafile: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "RECSYS_KAFKA_SSL_CAFILE"))  # CA bundle that signed the brokers' certificates
    kafka_ssl_certfile: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SSL_CERTFILE", "RECSYS_KAFKA_SSL_CERTFILE"))  # client certificate (mutual TLS)
    kafka_ssl_keyfile: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SSL_KEYFILE", "RECSYS_KAFKA_SSL_KEYFILE"))  # client key (mutual TLS)


class WebSettings(Section):
    """The HTTP server of each worker: where it listens, its limits and readiness."""

    web_port: int = Field(6066, validation_alias=AliasChoices("WEB_PORT", "RECSYS_WEB_PORT"), gt=0)  # this worker's HTTP port (API, demo page, /metrics)
    web_host: str = Field(default_factory=socket.gethostname, validation_alias=AliasChoices("WEB_HOST", "RECSYS_WEB_HOST"))  # the host name other workers reach this one at (forwarded requests)
    web_bind: str = Field("0.0.0.0", validation_alias=AliasChoices("WEB_BIND", "RECSYS_WEB_BIND"))  # the interface the HTTP server listens on
    rate_limit_rps: float = Field(0.0, ge=0)   # per client on the read and ingest routes; 0: off
    rate_limit_burst: int = Field(0, ge=0)     # requests a client may make at once (0: one second's worth)
    auth_failure_rps: float = Field(1.0, gt=0)  # failed authentications an address may make per second ...
    auth_failure_burst: int = Field(20, gt=0)   # ... and at once; past that its requests get 429 unchecked
    trusted_proxies: str = ""  # addresses or networks (comma-separated) whose X-Forwarded-For names the client: the load balancer
    ready_broker_timeout_s: float = Field(6.0, gt=0)  # readiness 503 when the broker has not answered for this long
    ready_stall_s: float = Field(60.0, gt=0)          # ... or a partition with records behind has not moved for this long
    forward_timeout_s: float = Field(2.0, gt=0)       # a request forwarded to the user's owner waits this long; then recommendations degrade to popular items

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"


class SecuritySettings(Section):
    """Who may call which route, and which event fields are sealed at rest."""

    api_token: Optional[SecretStr] = None      # admin routes (reload, clear-cache); unset: they refuse
    read_tokens: Optional[SecretStr] = None    # comma-separated; profile, recommendations, similar, trending
    ingest_tokens: Optional[SecretStr] = None  # comma-separated; POST /api/events/*
    metrics_token: Optional[SecretStr] = None  # comma-separated; /metrics (unset: open)
    tokens_file: Optional[Path] = None         # lines RECSYS_READ_TOKENS=... etc. overriding those lists, re-read within 1 s of a change
    field_keys: Optional[SecretStr] = None     # comma-separated Fernet keys, newest first: sensitive fields sealed (unset: kept as sent)
    encrypted_fields: str = "review.text,user-event.properties"  # kind.field list sealed with field_keys
    # The trainer's Ed25519 public key (base64; `recsys-faust keys models` makes a pair): workers
    # then fold only model announcements and pins signed with its private key (unset: unchecked).
    model_verify_key: Optional[str] = None
    backup_key: Optional[SecretStr] = None  # `backup` signs its manifest with it (HMAC) and `restore` refuses a backup it did not sign
    # Shared by the workers of a cluster: proves a request one worker forwards to another
    # (web/forwarding.py); unset: forwarded requests are rate limited again by their owner.
    forward_secret: Optional[SecretStr] = None
    model_signing_key: Optional[SecretStr] = None  # the private key: where `train --publish` and `models activate` run, never on workers

    @field_validator("encrypted_fields")
    @classmethod
    def _field_list(cls, value: str) -> str:
        parse_fields(value)
        return value


class IngestSettings(Section):
    """The write path's micro-batches, input limits and the values kept decoded."""

    batch_size: int = Field(500, gt=0)            # events taken per micro-batch
    batch_within: float = 0.02       # seconds to wait filling a batch (adds to freshness)
    # micro-batches whose changelog sends may be outstanding at once (1: each batch waits for the
    # one before's; more: a produce round trip no longer holds back the next batches' visibility)
    changelog_in_flight: int = Field(4, gt=0)
    max_event_bytes: int = Field(65_536, gt=0)    # larger payloads are dead-lettered
    max_future_skew_s: float = 86_400.0  # timestamps further in the future are rejected
    state_cache_keys: int = Field(50_000, ge=0)  # stored item entries and histories kept decoded, per table (0: none)
    profile_cache_keys: int = Field(20_000, ge=0)  # stored user profiles kept decoded (about 4.5 KB each; 0: none)


class ProfileSettings(Section):
    """User profiles: what each keeps, de-dup and activity windows."""

    profile_recent_items: int = Field(50, gt=0)       # recent interactions kept per user
    # An event_id seen again within this much event time of its partition's clock (the newest
    # event time seen there) is applied once (profiles/dedup.py); state holds each id for one
    # to two windows.
    dedup_window_s: float = Field(7 * 86_400, gt=0)
    tumbling_window_s: int = Field(3_600, gt=0)  # profile activity windows: size
    tumbling_expires_s: int = 86_400  # ... kept this long past their end
    hopping_window_s: int = Field(3_600, gt=0)  # hopping activity windows: size
    hopping_step_s: int = Field(900, gt=0)  # ... a new one starts every step
    hopping_expires_s: int = 21_600  # ... kept this long past their end

    @model_validator(mode="after")
    def _whole_steps(self) -> "ProfileSettings":
        if self.hopping_window_s % self.hopping_step_s:
            raise ValueError("RECSYS_HOPPING_WINDOW_S must be a multiple of RECSYS_HOPPING_STEP_S")
        return self


class PopularitySettings(Section):
    """Item popularity and trending, and what one interaction weighs."""

    popularity_bucket_s: int = Field(3_600, gt=0)  # item popularity is counted in buckets of this size
    trending_window_s: int = Field(7 * 86_400, gt=0)  # trending and cold-start popularity look back this far
    trending_refresh_s: float = 0.5     # the ranked trending lists are rebuilt at most this often
    weights: EventWeights = Field(default_factory=EventWeights)  # RECSYS_WEIGHT_VIEW / _PURCHASE / _REVIEW_PER_STAR


class RankingSettings(Section):
    """Ranked lists: size, the blend of ALS and transitions, HNSW, A/B variants."""

    rec_list_size: int = Field(50, gt=0)             # items kept in each user's ready list
    affinity_boost: float = 1.0  # weight of the user's category affinity in the popular fallback
    transitions_max_successors: int = Field(100, gt=0)  # successors kept per item and partition (memory bound)
    blend_als_weight: float = Field(1.0, ge=0)          # weight of the z-scored ALS scores
    blend_transitions_weight: float = Field(0.75, ge=0)  # weight of the z-scored transition scores (0: off)
    ann_min_items: int = Field(50_000, gt=0)   # catalogues this large are ranked on HNSW candidates (ranking/maths/ann.py)
    ann_ef_search: int = Field(128, gt=0)      # HNSW search breadth: recall against speed (bench --scale measures both)
    ab_variants: str = ""              # A/B test: name=spec[:weight],... (spec: blend, als, popular or A/T weights); empty: none

    @field_validator("ab_variants")
    @classmethod
    def _variants(cls, value: str) -> str:
        parse_variants(value)
        return value

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The parsed ``ab_variants``."""
        return parse_variants(self.ab_variants)


class ScoringSettings(Section):
    """Where a micro-batch's ALS maths runs."""

    mode: str = Field("process", validation_alias=AliasChoices("RECSYS_SCORING"))  # where a micro-batch's ALS maths runs: process, thread or inline
    scoring_nice: int = Field(10, ge=0, le=19)  # the scoring process's niceness above the worker's (0: the same)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in SCORING_MODES:
            raise ValueError(f"RECSYS_SCORING={value!r}: expected one of {', '.join(SCORING_MODES)}")
        return value


class OnlineSettings(Section):
    """Online metrics: which served answers users took."""

    online_tracking: bool = True       # every answer served is recorded on recsys-served and folded into its user's profile
    attribution_window_s: float = Field(86_400.0, gt=0)  # an interaction this long after an answer can be its hit
    online_answers_kept: int = Field(5, gt=0)   # answers remembered per user (the profile grows by about 150 bytes each)
    online_items_kept: int = Field(10, gt=0)    # items remembered per answer (the head of the list)
    online_metrics_s: float = Field(60.0, gt=0)  # how often a worker posts its online figures to amazon-model-metrics
    served_linger_ms: float = Field(100.0, ge=0, le=10_000)  # recsys-served records wait this long to share a producer batch


class DriftSettings(Section):
    """The drift detector's windows and thresholds."""

    drift_window_s: float = Field(300.0, gt=0)      # tumbling window (processing time) of the drift detector
    drift_min_events: int = Field(500, gt=0)        # per feature and window per worker; smaller windows are not judged
    drift_threshold: float = Field(0.2, gt=0)       # population stability index above which an alert is published
    drift_max_buckets: int = Field(30, gt=0)        # buckets kept per feature (categories beyond are "(other)")
    drift_ks_threshold: float = Field(0.1, gt=0, le=1)  # KS statistic D (numeric features) above which an alert goes out ...
    drift_ks_alpha: float = Field(0.01, gt=0, lt=1)     # ... when its p-value is also below this
    drift_sample_size: int = Field(2000, gt=0)      # numeric values (and distinct users) kept per feature and window
    # a window in which a micro-batch had more records than this waiting behind it is not judged:
    # a backlog is read at each topic's own pace (a restart, a restore); 0: every window is judged
    drift_max_backlog: int = Field(1_000, ge=0)


class RetrainSettings(Section):
    """Retraining on its own (`recsys-faust retrain --watch`)."""

    retrain_drift_features: str = "catalogue"      # drift alerts on these (comma-separated; empty: none) start a retrain
    retrain_min_hit_rate: float = Field(0.0, ge=0, le=1)  # the served model's cluster hit rate below this starts one (0: off)
    retrain_min_answers: int = Field(1_000, gt=0)  # ... once it has served at least this many answers
    retrain_cooldown_s: float = Field(3_600.0, ge=0)  # at most one retrain per this many seconds
    retrain_gate: float = Field(0.8, ge=0)         # publish only at NDCG@10 >= this x the served model's (0: always)

    @field_validator("retrain_drift_features")
    @classmethod
    def _drift_features(cls, value: str) -> str:
        try:
            drift_features(value)
        except ValueError as exc:
            raise ValueError(f"RECSYS_RETRAIN_DRIFT_FEATURES: {exc}") from None
        return value

    @property
    def retrain_features(self) -> tuple[str, ...]:
        return drift_features(self.retrain_drift_features)


class ProcessSettings(Section):
    """The worker process: production mode, its name, GC, the GIL, the event-loop watch, metric snapshots."""

    # Refuse to start with a token or password that is a placeholder or shorter than 32
    # characters, or without RECSYS_MODEL_VERIFY_KEY (docker/ sets it; the dev stack does not).
    production: bool = False
    worker_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")  # this worker's name in logs, metrics and health (default: host:port)
    metrics_snapshot_s: float = 60.0   # how often a worker posts its counters to amazon-system-metrics
    gc_gen0_threshold: int = Field(200_000, gt=0)   # surviving allocations between young GC passes (Python's default: 700)
    gc_sweep_interval_s: float = Field(3_600.0, gt=0)  # full collection of what micro-batches froze: one pause of the event loop (worker/collector.py)
    gil_switch_interval_s: float = Field(0.0005, gt=0)  # how soon a thread waiting for the GIL gets it (Python: 0.005)
    loop_watch_interval_s: float = Field(0.025, ge=0)  # event-loop lag probe (recsys_event_loop_lag_seconds); 0: off
    loop_stall_log_s: float = Field(0.05, gt=0)        # a loop stuck this long gets its stack logged


class SinkSettings(Section):
    """The PostgreSQL sink."""

    database_url: Optional[SecretStr] = Field(None, validation_alias=AliasChoices("DATABASE_URL", "RECSYS_DATABASE_URL"))  # PostgreSQL DSN for the sink (a secret: it may hold the password); unset: no sink
    sink_batch_size: int = 1_000       # records per sink transaction
    sink_batch_within: float = 0.2     # seconds to wait filling a sink batch
    db_pool_min: int = 1  # PostgreSQL connections kept open
    db_pool_max: int = 4  # PostgreSQL connections at most
    db_max_backoff_s: float = 5.0      # cap of the retry backoff while PostgreSQL is down
    db_migrate: bool = True            # workers migrate the schema at start; false: they wait for `db init` (a worker role without DDL)
    db_reader_password: Optional[SecretStr] = None  # `db init --reader-role NAME` sets this password on the role (SELECT only: the retrainer)
    db_worker_password: Optional[SecretStr] = None  # `db init --worker-role NAME` sets this password on the role

    @property
    def persistence_enabled(self) -> bool:
        return bool(self.database_url)

    @property
    def dsn(self) -> Optional[str]:
        """DATABASE_URL's plain value, for a connection (never for a log: ``without_password``)."""
        return self.secret("database_url")


class TrainingSettings(Section):
    """ALS training and how a model is shipped to the workers."""

    models_dir: Path = Path("./models")  # trained model artifacts (train writes, workers may read)
    als_factors: int = 128  # ALS latent factors (train)
    als_regularization: float = 1.0  # ALS L2 regularization
    als_alpha: float = 10.0  # ALS confidence scale: c = 1 + alpha * weight
    als_iterations: int = 15  # ALS iterations
    als_seed: int = 42  # ALS random seed (reproducible training)
    max_model_bytes: int = 64 * 1024 * 1024  # largest model message on amazon-model-updates
    model_max_items: int = Field(5_000_000, gt=0)  # workers refuse a model with more items (checked before anything is allocated)
    model_max_factors: int = Field(1_024, gt=0)    # ... or more factors (the fold-in allocates factors x factors)
    model_clock_skew_s: float = Field(0.0, ge=0)  # an announcement's time is clamped to the record's append time plus this
    # auto: the artifact inline while the message fits max_model_bytes, else by reference to its
    # directory under models_dir (which workers must then share: a volume); inline; reference.
    model_shipping: str = "auto"

    @field_validator("model_shipping")
    @classmethod
    def _shipping(cls, value: str) -> str:
        if value not in MODEL_SHIPPING:
            raise ValueError(f"RECSYS_MODEL_SHIPPING={value!r}: expected one of {', '.join(MODEL_SHIPPING)}")
        return value


class StorageSettings(Section):
    """Where the tables live, and RocksDB's sizes per table partition."""

    data_dir: Path = Path("./data")  # RocksDB tables and the local model cache
    rocksdb_write_buffer_size: int = 16 * 1024 * 1024  # bytes per memtable
    rocksdb_max_write_buffer_number: int = 3  # memtables per store
    rocksdb_target_file_size_base: int = 32 * 1024 * 1024  # bytes per SST file
    rocksdb_block_cache_size: int = 32 * 1024 * 1024  # bytes of block cache per store
    rocksdb_bloom_filter_size: int = 10  # bloom filter bits per key
    rocksdb_max_open_files: int = 256  # open SST files per store
    # RocksDB's own write-ahead log: off, the changelog topics are the log (kafka/store.py)
    rocksdb_wal: bool = False


#: section name -> its model, in the order the documentation lists them
SECTIONS: dict[str, type[Section]] = {
    "kafka": KafkaSettings, "broker_security": BrokerSecuritySettings, "web": WebSettings,
    "security": SecuritySettings, "ingest": IngestSettings, "profiles": ProfileSettings,
    "popularity": PopularitySettings, "ranking": RankingSettings, "scoring": ScoringSettings,
    "online": OnlineSettings, "drift": DriftSettings, "retrain": RetrainSettings, "process": ProcessSettings,
    "sink": SinkSettings, "training": TrainingSettings, "storage": StorageSettings,
}
#: field name -> the section it is in (field names are unique across sections)
FIELD_SECTION: dict[str, str] = {field: name for name, model in SECTIONS.items() for field in model.model_fields}
