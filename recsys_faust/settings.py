"""One typed, frozen settings object (pydantic-settings), built from the environment and a
``.env`` file.

Every size, window, timeout and weight that shapes behaviour lives here with a documented
default, so operators tune a deployment without reading code and tests build exact,
isolated configurations. Nothing else in the package reads ``os.environ``. Each field is
reachable as ``RECSYS_<FIELD NAME IN CAPITALS>``; the wiring ones also by their documented
names (``KAFKA_BROKER``, ``DATABASE_URL``, ``WEB_PORT``, ``KAFKA_SASL_PASSWORD``, ...). Values are
checked where they are declared (``gt=0`` and friends), and an error names the variable.
Passwords and tokens are ``SecretStr``: never printed, not even in a repr.
"""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
#: Where a micro-batch's ALS maths runs (RECSYS_SCORING; ranking/scorer.py).
SCORING_MODES = ("process", "thread", "inline")
#: How ``train --publish`` ships a model on amazon-model-updates (RECSYS_MODEL_SHIPPING; ranking/payload.py).
MODEL_SHIPPING = ("auto", "inline", "reference")
#: The features the drift detector judges (drift/; a unit test keeps the two lists equal).
DRIFT_FEATURES = ("kind", "category", "catalogue", "price", "rating", "events_per_user")


def drift_features(value: str) -> tuple[str, ...]:
    """The comma-separated feature names of ``value``; ValueError naming any the drift detector
    does not judge."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = sorted(set(names) - set(DRIFT_FEATURES))
    if unknown:
        raise ValueError(f"unknown drift feature(s) {', '.join(unknown)}; the drift detector judges "
                         f"{', '.join(DRIFT_FEATURES)}")
    return names


#: What ``Settings.from_env`` reads: (the environment, the environment over the .env file's
#: values). None: a plain ``Settings(...)`` reads nothing.
_ENVIRON: ContextVar[Optional[tuple[Mapping[str, str], Mapping[str, str]]]] = ContextVar("recsys_environ",
                                                                                          default=None)


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class EventWeights:
    """How much one interaction counts, for popularity, affinities and (later) ALS confidence.

    Views are cheap signals, purchases strong ones; a review counts by its rating so a
    one-star review adds little.
    """

    view: float = 1.0
    purchase: float = 4.0
    review_per_star: float = 0.8

    def weight(self, kind: str, rating: Optional[float] = None) -> float:
        if kind == "view":
            return self.view
        if kind == "purchase":
            return self.purchase
        if kind == "review":
            return self.review_per_star * float(rating if rating is not None else 3)
        return 0.0

    def als_weight(self, kind: str, rating: Optional[float] = None) -> float:
        """The ALS input value: the weight relative to a purchase (a purchase is 1.0).

        Keeps ALS's alpha meaningful whatever the weight scale: datasets of plain
        interactions (sent as purchases) train exactly like implicit feedback with r = 1.
        """
        return self.weight(kind, rating) / self.purchase


class _MappingEnv(EnvSettingsSource):
    """The environment source over a given mapping (``from_env(environ=...)``) instead of
    ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, Optional[str]]:
        return {k.lower(): v for k, v in self._environ.items() if v != ""}  # empty: the default


class Settings(BaseSettings):
    """Everything configurable, with defaults fit for Apache Kafka and one machine.

    Broker timeouts default to what Kafka accepts out of the box (docs/brokers.md); the dev
    stack and the tests set faster ones against the broker they start.
    """

    # --- identity and wiring -------------------------------------------------------------
    app_id: str = "recsys-faust"  # Faust app id: the consumer group and the prefix of changelog topics
    broker: str = Field("kafka://127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BROKER", "BROKER_URL", "RECSYS_BROKER"))  # Kafka bootstrap URLs, comma-separated (kafka://host:port)
    database_url: Optional[str] = Field(None, validation_alias=AliasChoices("DATABASE_URL", "RECSYS_DATABASE_URL"))  # PostgreSQL DSN for the sink; unset: no sink
    web_port: int = Field(6066, validation_alias=AliasChoices("WEB_PORT", "RECSYS_WEB_PORT"), gt=0)  # this worker's HTTP port (API, demo page, /metrics)
    web_host: str = Field(default_factory=socket.gethostname, validation_alias=AliasChoices("WEB_HOST", "RECSYS_WEB_HOST"))  # the host name other workers reach this one at (forwarded requests)
    web_bind: str = Field("0.0.0.0", validation_alias=AliasChoices("WEB_BIND", "RECSYS_WEB_BIND"))  # the interface the HTTP server listens on
    data_dir: Path = Path("./data")  # RocksDB tables and the local model cache
    models_dir: Path = Path("./models")  # trained model artifacts (train writes, workers may read)
    topics_file: Optional[Path] = None  # topics.yaml to use (default: the one beside the package, or ./topics.yaml)
    user_partitions: int = 0      # 0: as topics.yaml says; else overrides per-user topics (dev/test)
    replication_factor: int = 0   # 0: as topics.yaml says; 1 on a single dev broker
    # Extra configs of the changelog topics the workers create (JSON object, e.g.
    # {"segment.ms": "600000"}); min.insync.replicas is set from the replication factor.
    changelog_topic_config: dict[str, str] = Field(default_factory=dict)
    api_token: Optional[SecretStr] = None      # admin routes (reload, clear-cache); unset: they refuse
    read_tokens: Optional[SecretStr] = None    # comma-separated; profile, recommendations, similar, trending
    ingest_tokens: Optional[SecretStr] = None  # comma-separated; POST /api/events/*
    metrics_token: Optional[SecretStr] = None  # comma-separated; /metrics (unset: open)
    tokens_file: Optional[Path] = None         # lines RECSYS_READ_TOKENS=... etc. overriding those lists, re-read within 1 s of a change
    field_keys: Optional[SecretStr] = None     # comma-separated Fernet keys, newest first: sensitive fields sealed (unset: kept as sent)
    encrypted_fields: str = "review.text,user-event.properties"  # kind.field list sealed with field_keys
    rate_limit_rps: float = Field(0.0, ge=0)   # per client on the read and ingest routes; 0: off
    rate_limit_burst: int = Field(0, ge=0)     # requests a client may make at once (0: one second's worth)
    worker_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")  # this worker's name in logs, metrics and health (default: host:port)
    ready_broker_timeout_s: float = Field(6.0, gt=0)  # readiness 503 when the broker has not answered for this long
    ready_stall_s: float = Field(60.0, gt=0)          # ... or a partition with records behind has not moved for this long

    # --- broker security ------------------------------------------------------------------
    kafka_security_protocol: str = Field("PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "RECSYS_KAFKA_SECURITY_PROTOCOL"))  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "RECSYS_KAFKA_SASL_MECHANISM"))  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "RECSYS_KAFKA_SASL_USERNAME"))  # SASL user
    kafka_sasl_password: Optional[SecretStr] = Field(None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "RECSYS_KAFKA_SASL_PASSWORD"))  # SASL password (secret)
    kafka_ssl_cafile: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "RECSYS_KAFKA_SSL_CAFILE"))  # CA bundle that signed the brokers' certificates
    kafka_ssl_certfile: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SSL_CERTFILE", "RECSYS_KAFKA_SSL_CERTFILE"))  # client certificate (mutual TLS)
    kafka_ssl_keyfile: Optional[str] = Field(None, validation_alias=AliasChoices("KAFKA_SSL_KEYFILE", "RECSYS_KAFKA_SSL_KEYFILE"))  # client key (mutual TLS)

    # --- consumer group timing (seconds) -----------------------------------------------------
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

    # --- producer (table changelogs, responses, dead letters) ------------------------------------
    producer_idempotence: bool = True  # the client producers' retries write once (Kafka); the Tansu dev broker cannot: false there
    producer_linger_s: float = 0.005          # batch changelog records for up to 5 ms
    producer_max_batch_bytes: int = 1_000_000   # bytes per partition batch

    # --- hot path sizes -----------------------------------------------------------------------
    batch_size: int = Field(500, gt=0)            # events taken per micro-batch
    batch_within: float = 0.02       # seconds to wait filling a batch (adds to freshness)
    max_event_bytes: int = Field(65_536, gt=0)    # larger payloads are dead-lettered
    max_future_skew_s: float = 86_400.0  # timestamps further in the future are rejected

    # --- profile state ------------------------------------------------------------------------
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

    # --- popularity and serving -----------------------------------------------------------------
    popularity_bucket_s: int = Field(3_600, gt=0)  # item popularity is counted in buckets of this size
    trending_window_s: int = Field(7 * 86_400, gt=0)  # trending and cold-start popularity look back this far
    trending_refresh_s: float = 0.5     # the ranked trending lists are rebuilt at most this often
    rec_list_size: int = Field(50, gt=0)             # items kept in each user's ready list
    affinity_boost: float = 1.0  # weight of the user's category affinity in the popular fallback
    weights: EventWeights = Field(default_factory=EventWeights)  # RECSYS_WEIGHT_VIEW / _PURCHASE / _REVIEW_PER_STAR

    # --- ranking: item transitions and the blend (docs/architecture.md, "Item transitions") -------------------
    transitions_max_successors: int = Field(100, gt=0)  # successors kept per item and partition (memory bound)
    blend_als_weight: float = Field(1.0, ge=0)          # weight of the z-scored ALS scores
    blend_transitions_weight: float = Field(0.75, ge=0)  # weight of the z-scored transition scores (0: off)
    ann_min_items: int = Field(50_000, gt=0)   # catalogues this large are ranked on HNSW candidates (ranking/ann.py)
    ann_ef_search: int = Field(128, gt=0)      # HNSW search breadth: recall against speed (bench --scale measures both)

    # --- online metrics: which served answers users took (docs/architecture.md, "Online metrics") -------------
    online_tracking: bool = True       # every answer served is recorded on recsys-served and folded into its user's profile
    attribution_window_s: float = Field(86_400.0, gt=0)  # an interaction this long after an answer can be its hit
    online_answers_kept: int = Field(5, gt=0)   # answers remembered per user (the profile grows by about 150 bytes each)
    online_items_kept: int = Field(10, gt=0)    # items remembered per answer (the head of the list)
    online_metrics_s: float = Field(60.0, gt=0)  # how often a worker posts its online figures to amazon-model-metrics
    ab_variants: str = ""              # A/B test: name=spec[:weight],... (spec: blend, als, popular or A/T weights); empty: none

    metrics_snapshot_s: float = 60.0   # how often a worker posts its counters to amazon-system-metrics
    drift_window_s: float = Field(300.0, gt=0)      # tumbling window (processing time) of the drift detector
    drift_min_events: int = Field(500, gt=0)        # per feature and window per worker; smaller windows are not judged
    drift_threshold: float = Field(0.2, gt=0)       # population stability index above which an alert is published
    drift_max_buckets: int = Field(30, gt=0)        # buckets kept per feature (categories beyond are "(other)")
    drift_ks_threshold: float = Field(0.1, gt=0, le=1)  # KS statistic D (numeric features) above which an alert goes out ...
    drift_ks_alpha: float = Field(0.01, gt=0, lt=1)     # ... when its p-value is also below this
    drift_sample_size: int = Field(2000, gt=0)      # numeric values (and distinct users) kept per feature and window
    # --- retraining on its own: `recsys-faust retrain --watch` (docs/architecture.md, "Retraining on its own") ---
    retrain_drift_features: str = "catalogue"      # drift alerts on these (comma-separated; empty: none) start a retrain
    retrain_min_hit_rate: float = Field(0.0, ge=0, le=1)  # the served model's cluster hit rate below this starts one (0: off)
    retrain_min_answers: int = Field(1_000, gt=0)  # ... once it has served at least this many answers
    retrain_cooldown_s: float = Field(3_600.0, ge=0)  # at most one retrain per this many seconds
    retrain_gate: float = Field(0.8, ge=0)         # publish only at NDCG@10 >= this x the served model's (0: always)
    gc_gen0_threshold: int = Field(200_000, gt=0)   # surviving allocations between young GC passes (Python's default: 700)
    gc_sweep_interval_s: float = Field(60.0, gt=0)  # full collection of what micro-batches froze (worker/collector.py)
    scoring: str = "process"           # where a micro-batch's ALS maths runs: process, thread or inline
    scoring_nice: int = Field(10, ge=0, le=19)  # the scoring process's niceness above the worker's (0: the same)
    state_cache_keys: int = Field(50_000, ge=0)  # stored item entries and histories kept decoded, per table (0: none)
    profile_cache_keys: int = Field(20_000, ge=0)  # stored user profiles kept decoded (about 4.5 KB each; 0: none)
    gil_switch_interval_s: float = Field(0.0005, gt=0)  # how soon a thread waiting for the GIL gets it (Python: 0.005)
    loop_watch_interval_s: float = Field(0.025, ge=0)  # event-loop lag probe (recsys_event_loop_lag_seconds); 0: off
    loop_stall_log_s: float = Field(0.05, gt=0)        # a loop stuck this long gets its stack logged

    # --- PostgreSQL sink ---------------------------------------------------------------------------
    sink_batch_size: int = 1_000       # records per sink transaction
    sink_batch_within: float = 0.2     # seconds to wait filling a sink batch
    db_pool_min: int = 1  # PostgreSQL connections kept open
    db_pool_max: int = 4  # PostgreSQL connections at most
    db_max_backoff_s: float = 5.0      # cap of the retry backoff while PostgreSQL is down
    db_migrate: bool = True            # workers migrate the schema at start; false: they wait for `db init` (a worker role without DDL)
    db_worker_password: Optional[SecretStr] = None  # `db init --worker-role NAME` sets this password on the role

    # --- ALS (implicit) ---------------------------------------------------------------------------
    als_factors: int = 128  # ALS latent factors (train)
    als_regularization: float = 1.0  # ALS L2 regularization
    als_alpha: float = 10.0  # ALS confidence scale: c = 1 + alpha * weight
    als_iterations: int = 15  # ALS iterations
    als_seed: int = 42  # ALS random seed (reproducible training)
    max_model_bytes: int = 64 * 1024 * 1024  # largest model message on amazon-model-updates
    # auto: the artifact inline while the message fits max_model_bytes, else by reference to its
    # directory under models_dir (which workers must then share: a volume); inline; reference.
    model_shipping: str = "auto"

    # --- RocksDB (per table partition) -----------------------------------------------------------
    rocksdb_write_buffer_size: int = 16 * 1024 * 1024  # bytes per memtable
    rocksdb_max_write_buffer_number: int = 3  # memtables per store
    rocksdb_target_file_size_base: int = 32 * 1024 * 1024  # bytes per SST file
    rocksdb_block_cache_size: int = 32 * 1024 * 1024  # bytes of block cache per store
    rocksdb_bloom_filter_size: int = 10  # bloom filter bits per key
    rocksdb_max_open_files: int = 256  # open SST files per store
    # RocksDB's own write-ahead log: off, the changelog topics are the log (kafka/store.py)
    rocksdb_wal: bool = False

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", frozen=True, extra="ignore", env_ignore_empty=True, populate_by_name=True,
        validate_default=False,
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings(...)`` is exactly its arguments (tests, tools); ``from_env`` adds the
        environment over the ``.env`` file (real environment variables win, as with docker and
        systemd)."""
        environ = _ENVIRON.get()
        if environ is None:
            return (init_settings,)
        return (init_settings, _MappingEnv(settings_cls, environ[0]), dotenv_settings)

    @model_validator(mode="before")
    @classmethod
    def _weights_from_their_variables(cls, data: Any) -> Any:
        """RECSYS_WEIGHT_VIEW / _PURCHASE / _REVIEW_PER_STAR build ``weights``."""
        both = _ENVIRON.get()
        if both is None or not isinstance(data, dict) or "weights" in data:
            return data
        environ = both[1]
        given = {name: float(environ[f"RECSYS_WEIGHT_{name.upper()}"])
                 for name in ("view", "purchase", "review_per_star") if environ.get(f"RECSYS_WEIGHT_{name.upper()}")}
        return {**data, "weights": EventWeights(**given)} if given else data

    @field_validator("encrypted_fields")
    @classmethod
    def _field_list(cls, value: str) -> str:
        from .events.protect import parse_fields

        parse_fields(value)
        return value

    @field_validator("ab_variants")
    @classmethod
    def _variants(cls, value: str) -> str:
        from .ranking.variants import parse_variants

        parse_variants(value)
        return value

    @property
    def variants(self) -> tuple:
        """The parsed ``ab_variants`` (ranking/variants.py)."""
        from .ranking.variants import parse_variants

        return parse_variants(self.ab_variants)

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

    @field_validator("scoring", "model_shipping")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        allowed = {"scoring": SCORING_MODES, "model_shipping": MODEL_SHIPPING}[info.field_name]
        if value not in allowed:
            raise ValueError(f"RECSYS_{info.field_name.upper()}={value!r}: expected one of {', '.join(allowed)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.hopping_window_s % self.hopping_step_s:
            raise ValueError("RECSYS_HOPPING_WINDOW_S must be a multiple of RECSYS_HOPPING_STEP_S")
        if not self.broker_urls:
            raise ValueError("KAFKA_BROKER is empty")
        return self

    @property
    def broker_urls(self) -> list[str]:
        return [u.strip() for u in self.broker.replace(";", ",").split(",") if u.strip()]

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port list for plain Kafka clients (the faust URL scheme stripped)."""
        out = []
        for url in self.broker_urls:
            out.append(url.split("://", 1)[1] if "://" in url else url)
        return out

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def persistence_enabled(self) -> bool:
        return bool(self.database_url)

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

    def with_overrides(self, **changes: Any) -> "Settings":
        return self.model_copy(update=changes)

    def secret(self, name: str) -> Optional[str]:
        """The plain value of a ``SecretStr`` setting (``api_token``, ``kafka_sasl_password``)."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    @classmethod
    def from_env(
        cls, environ: Optional[Mapping[str, str]] = None, dotenv: Optional[Path] = None
    ) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) over a ``.env`` file: the one
        ``dotenv`` names, else the one ``RECSYS_ENV_FILE`` names (set empty: none; the test suite
        sets it so that a developer's ./.env never reaches the processes it starts), else
        ``./.env``."""
        source = os.environ if environ is None else environ
        if dotenv is None:
            named = source.get("RECSYS_ENV_FILE")
            dotenv = Path(named) if named else (None if named == "" else Path.cwd() / ".env")
        env_file = dotenv if dotenv is not None and dotenv.is_file() else None
        from dotenv import dotenv_values

        merged = {**(dotenv_values(env_file) if env_file else {}), **source}
        token = _ENVIRON.set((source, {k: v for k, v in merged.items() if v is not None}))
        try:
            return cls(_env_file=env_file)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        finally:
            _ENVIRON.reset(token)


def _describe(exc: ValidationError) -> str:
    """The errors with the variables to set, not pydantic's field paths."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        info = Settings.model_fields.get(field)
        alias = getattr(info, "validation_alias", None) if info is not None else None
        names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else \
            ([f"RECSYS_{field.upper()}"] if field and not field.isupper() else ([field] if field else []))
        message = str(err["msg"]).removeprefix("Value error, ")
        given = f", got {err['input']!r}" if names and "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"{' / '.join(names)} ({field}): {message}{given}" if names else message)
    return "; ".join(parts)


def default(name: str) -> Any:
    """The documented default of a setting: the one place the domain configs (``ProfileConfig``,
    ``DriftConfig``, ``ALSParams``, the validator's limits) take theirs from."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def env_names(field: str) -> list[str]:
    """The environment variables that set ``field``, the documented one first."""
    if field == "weights":
        return [f"RECSYS_WEIGHT_{n.upper()}" for n in ("view", "purchase", "review_per_star")]
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices]
    return [f"RECSYS_{field.upper()}"]


def all_env_names() -> dict[str, str]:
    """Every variable the code reads -> its field (the deployment tests check compose against it)."""
    return {name: field for field in Settings.model_fields for name in env_names(field)}
