"""One typed, frozen settings object (pydantic-settings), built from the environment and a
``.env`` file, composed of one section per component (``sections.py``).

Every size, window, timeout and weight that shapes behaviour lives in a section with a
documented default, so operators tune a deployment without reading code and tests build exact,
isolated configurations. Nothing else in the package reads ``os.environ``. Each field is
reachable as ``RECSYS_<FIELD NAME IN CAPITALS>``; the wiring ones also by their documented
names (``KAFKA_BROKER``, ``DATABASE_URL``, ``WEB_PORT``, ``KAFKA_SASL_PASSWORD``, ...). Values are
checked where they are declared (``gt=0`` and friends), and an error names the variable.
Passwords and tokens are ``SecretStr``: never printed, not even in a repr.

``Settings(batch_size=10)`` and ``settings.with_overrides(batch_size=10)`` take fields by their
own names wherever their section is; code reads them through the section
(``settings.ingest.batch_size``).
"""

from __future__ import annotations

import json
import os
import typing
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import AliasChoices, BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .sections import (
    FIELD_SECTION, PACKAGE_DIR, SECTIONS, BrokerSecuritySettings, DriftSettings, IngestSettings, KafkaSettings,
    OnlineSettings, PopularitySettings, ProcessSettings, ProfileSettings, RankingSettings, RetrainSettings,
    ScoringSettings, Section, SecuritySettings, SinkSettings, StorageSettings, TrainingSettings, WebSettings,
)
from .values import DRIFT_FEATURES, MODEL_SHIPPING, SCORING_MODES, EventWeights, SettingsError, Variant, \
    drift_features, parse_fields, parse_variants, weak_secret

__all__ = [
    "DRIFT_FEATURES", "MODEL_SHIPPING", "PACKAGE_DIR", "SCORING_MODES", "SECTIONS", "EventWeights", "Section",
    "Settings", "SettingsError", "Variant", "all_env_names", "default", "drift_features", "env_names",
    "parse_fields", "parse_variants",
]

#: What ``Settings.from_env`` reads: the environment over the .env file's values. None: a plain
#: ``Settings(...)`` reads nothing.
_ENVIRON: ContextVar[Optional[Mapping[str, str]]] = ContextVar("recsys_environ", default=None)
_WEIGHTS = ("view", "purchase", "review_per_star")


class _SectionsEnv(PydanticBaseSettingsSource):
    """Each section's fields from their variables (case-insensitive, an empty value: the default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = {k.upper(): v for k, v in environ.items() if v not in ("", None)}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for section, model in SECTIONS.items():
            for name, info in model.model_fields.items():
                value = self._value(name, info)
                if value is not None:
                    out.setdefault(section, {})[name] = value
        return out

    def _value(self, name: str, info: Any) -> Any:
        if name == "weights":
            given = {w: float(self._environ[f"RECSYS_WEIGHT_{w.upper()}"]) for w in _WEIGHTS
                     if f"RECSYS_WEIGHT_{w.upper()}" in self._environ}
            return EventWeights(**given) if given else None
        for env in env_names(name):
            if env.upper() in self._environ:
                raw = self._environ[env.upper()]
                return json.loads(raw) if typing.get_origin(info.annotation) is dict else raw
        return None


class Settings(BaseSettings):
    """Everything configurable, with defaults fit for Apache Kafka and one machine, one section
    per component.

    Broker timeouts default to what Kafka accepts out of the box (docs/brokers.md); the dev
    stack and the tests set faster ones against the broker they start.
    """

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    broker_security: BrokerSecuritySettings = Field(default_factory=BrokerSecuritySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    popularity: PopularitySettings = Field(default_factory=PopularitySettings)
    ranking: RankingSettings = Field(default_factory=RankingSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    online: OnlineSettings = Field(default_factory=OnlineSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    process: ProcessSettings = Field(default_factory=ProcessSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=False)

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
        return (init_settings, _SectionsEnv(settings_cls, environ))

    @model_validator(mode="before")
    @classmethod
    def _fields_into_sections(cls, data: Any) -> Any:
        """Fields given by their own names (``Settings(batch_size=10)``) go into their section."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            section = key if key in SECTIONS and not (key == "scoring" and isinstance(value, str)) else None
            if section is not None:
                out[section] = {**out.get(section, {}), **_as_dict(value)}
                continue
            section = "scoring" if key == "scoring" else FIELD_SECTION.get(key)
            if section is None:
                raise ValueError(f"unknown setting {key!r}")
            out.setdefault(section, {})["mode" if key == "scoring" else key] = value
        return out

    @model_validator(mode="after")
    def _production_secrets(self) -> "Settings":
        if self.process.production:
            problems = production_problems(self)
            if problems:
                raise ValueError("RECSYS_PRODUCTION is on and " + "; ".join(problems))
        return self

    def with_overrides(self, **changes: Any) -> "Settings":
        """A copy with fields changed by their own names (or whole sections), not validated again."""
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if key in SECTIONS and not (key == "scoring" and isinstance(value, str)):
                by_section.setdefault(key, {}).update(_as_dict(value))
                continue
            section = "scoring" if key == "scoring" else FIELD_SECTION.get(key)
            if section is None:
                raise ValueError(f"unknown setting {key!r}")
            by_section.setdefault(section, {})["mode" if key == "scoring" else key] = value
        return self.model_copy(update={name: getattr(self, name).model_copy(update=fields)
                                       for name, fields in by_section.items()})

    def secret(self, name: str) -> Optional[str]:
        """The plain value of a ``SecretStr`` setting (``api_token``, ``kafka_sasl_password``)."""
        return getattr(self, FIELD_SECTION[name]).secret(name)

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
        token = _ENVIRON.set({k: v for k, v in merged.items() if v is not None})
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        finally:
            _ENVIRON.reset(token)


#: The secrets production mode checks (each token of a list on its own).
_SECRETS = ("api_token", "read_tokens", "ingest_tokens", "metrics_token", "forward_secret", "kafka_sasl_password",
            "db_worker_password", "db_reader_password")


def production_problems(settings: "Settings") -> list[str]:
    """What production mode refuses in ``settings`` (empty: nothing)."""
    problems = []
    for name in _SECRETS:
        for value in (v.strip() for v in (settings.secret(name) or "").split(",") if v.strip()):
            why = weak_secret(value)
            if why is not None:
                problems.append(f"{env_names(name)[0]} {why}")
                break
    url = settings.sink.dsn or ""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        why = weak_secret(url.split("@", 1)[0].split("//", 1)[-1].split(":", 1)[1])
        if why is not None:
            problems.append(f"the password in DATABASE_URL {why}")
    if not settings.security.model_verify_key:
        problems.append("RECSYS_MODEL_VERIFY_KEY is not set (workers would fold unsigned models; "
                        "`recsys-faust keys models` makes a pair)")
    return problems


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    return dict(value)


def _describe(exc: ValidationError) -> str:
    """The errors with the variables to set, not pydantic's field paths."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[1] if len(loc) > 1 and loc[0] in SECTIONS else (loc[0] if loc else "")
        names = env_names(field) if field in FIELD_SECTION else []
        message = str(err["msg"]).removeprefix("Value error, ")
        given = f", got {err['input']!r}" if names and "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"{' / '.join(names)} ({field}): {message}{given}" if names else message)
    return "; ".join(parts)


def _field(name: str) -> Any:
    return SECTIONS[FIELD_SECTION[name]].model_fields[name]


def default(name: str) -> Any:
    """The documented default of a setting: the one place the domain configs (``ProfileConfig``,
    ``ALSParams``, the validator's limits) take theirs from."""
    return _field(name).get_default(call_default_factory=True)


def env_names(field: str) -> list[str]:
    """The environment variables that set ``field``, the documented one first."""
    if field == "weights":
        return [f"RECSYS_WEIGHT_{n.upper()}" for n in _WEIGHTS]
    alias = _field(field).validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices]
    return [f"RECSYS_{field.upper()}"]


def all_env_names() -> dict[str, str]:
    """Every variable the code reads -> its field (the deployment tests check compose against it)."""
    return {name: field for field in FIELD_SECTION for name in env_names(field)}
