"""topics.yaml: the declared topics, and ``topics apply`` (create missing, report mismatches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ..events.model import INPUT_TOPICS, TOPIC_DEAD_LETTERS
from ..settings import Settings, SettingsError
from .clients import client_kwargs


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    per_user: bool = False
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicPlan:
    topics: tuple[TopicSpec, ...]

    def __getitem__(self, name: str) -> TopicSpec:
        for t in self.topics:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def user_partitions(self) -> int:
        """The partition count every per-user topic and table shares."""
        return self[INPUT_TOPICS[0]].partitions


def load_topics(
    path: Path,
    *,
    partitions: Optional[int] = None,
    replication_factor: Optional[int] = None,
) -> TopicPlan:
    """Read topics.yaml; ``partitions`` overrides the per-user topics' count (dev/test)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    defaults = data.get("defaults", {})
    specs = []
    for name, raw in (data.get("topics") or {}).items():
        raw = raw or {}
        per_user = bool(raw.get("per_user", False))
        n = int(raw.get("partitions", defaults.get("partitions", 1)))
        if per_user and partitions:
            n = partitions
        rf = int(replication_factor or raw.get("replication_factor", defaults.get("replication_factor", 1)))
        config = {str(k): str(v) for k, v in (raw.get("config") or {}).items()}
        if rf < 2:
            config.pop("min.insync.replicas", None)
        specs.append(TopicSpec(name, n, rf, per_user, config))
    plan = TopicPlan(tuple(specs))
    user_counts = {t.name: t.partitions for t in plan.topics if t.per_user}
    if len(set(user_counts.values())) > 1:
        raise SettingsError(f"per-user topics must share one partition count, got {user_counts}")
    for required in (*INPUT_TOPICS, TOPIC_DEAD_LETTERS):
        plan[required]  # raises KeyError when topics.yaml lacks a contract topic
    return plan


def plan_from_settings(settings: Settings) -> TopicPlan:
    return load_topics(
        settings.kafka.resolved_topics_file(),
        partitions=settings.kafka.user_partitions or None,
        replication_factor=settings.kafka.replication_factor or None,
    )


class TopicsRefused(RuntimeError):
    """The broker refused to create topics; the message carries Kafka's reason for each."""


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # what could not be compared, and why

    def lines(self) -> list[str]:
        out = [f"created  {n}" for n in self.created]
        out += [f"ok       {n}" for n in self.ok]
        out += [f"MISMATCH {m}" for m in self.mismatches]
        out += [f"UNCHECKED {u}" for u in self.unchecked]
        return out


def create_errors(response: object) -> dict[str, str]:
    """topic -> Kafka's error (name and message) from a CreateTopics response; topics created
    (or already there, which another ``apply`` running at once may cause) are left out."""
    from aiokafka.errors import for_code

    out: dict[str, str] = {}
    for entry in getattr(response, "topic_errors", None) or getattr(response, "topics", None) or []:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 and isinstance(entry[2], str) else ""
        if code in (0, 36):  # NONE, TOPIC_ALREADY_EXISTS
            continue
        out[name] = f"{for_code(code).__name__}: {message or 'no message'}"
    return out


async def apply_topics(settings: Settings, plan: TopicPlan, *, dry_run: bool = False) -> ApplyReport:
    """Create missing topics; compare existing ones' partitions and configs. Idempotent."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    report = ApplyReport()
    try:
        existing = await _describe_partitions(admin)
        missing = [t for t in plan.topics if t.name not in existing]
        if missing and not dry_run:
            response = await admin.create_topics(
                [NewTopic(t.name, t.partitions, t.replication_factor, topic_configs=t.config) for t in missing]
            )
            refused = create_errors(response)
            if refused:
                raise TopicsRefused("the broker refused to create " + "; ".join(
                    f"{name} ({reason})" for name, reason in sorted(refused.items())))
        report.created = [t.name + (" (dry run)" if dry_run else "") for t in missing]
        present = [t for t in plan.topics if t.name in existing]
        configs, why = await describe_topic_configs(admin, [t.name for t in present])
        if why:
            report.unchecked.append(f"topic configs ({why})")
        for t in present:
            problems = []
            partitions, replicas = existing[t.name]
            if partitions != t.partitions:
                problems.append(f"partitions {partitions} != {t.partitions} declared")
            if replicas != t.replication_factor:
                problems.append(f"replication factor {replicas} != {t.replication_factor} declared")
            for key, want in t.config.items():
                have = configs.get(t.name, {}).get(key)
                if have is not None and have != want:
                    problems.append(f"{key}={have} != {want} declared")
            if problems:
                report.mismatches.append(f"{t.name}: " + "; ".join(problems))
            else:
                report.ok.append(t.name)
    finally:
        await admin.close()
    return report


async def _describe_partitions(admin: AIOKafkaAdminClient) -> dict[str, tuple[int, int]]:
    """topic -> (partitions, replicas of its first partition)."""
    names = await admin.list_topics()
    if not names:
        return {}
    out: dict[str, tuple[int, int]] = {}
    for desc in await admin.describe_topics(list(names)):
        if isinstance(desc, dict):
            parts = desc.get("partitions") or []
            out[desc["topic"]] = (len(parts), len(parts[0].get("replicas") or []) if parts else 0)
    return out


async def describe_topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> tuple[dict[str, dict[str, str]], str]:
    """topic -> its configs, and why some could not be read ("" when all were)."""
    if not names:
        return {}, ""
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    except Exception as exc:  # noqa: BLE001 - reported to the operator, partitions still checked
        return {}, f"DescribeConfigs failed: {type(exc).__name__}: {exc}"
    out: dict[str, dict[str, str]] = {}
    errors = []
    for resp in responses:
        for res in getattr(resp, "resources", []):
            # (error_code, error_message, resource_type, resource_name, config_entries)
            if res[0]:
                errors.append(f"{res[3]}: error {res[0]} {res[1] or ''}".strip())
                continue
            out[res[3]] = {entry[0]: entry[1] for entry in res[4]}
    return out, "; ".join(errors)



